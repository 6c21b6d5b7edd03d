import { peerIdFromString } from '@libp2p/peer-id'
import { API_PREFIX, PingRequestSchema, type PingResponse } from '../../adapters/api-types.js'
import { formatZodIssues } from '../../log/event.js'
import { hostLabel } from '../../projections/dns.js'
import { networkView, type MemberView } from '../../projections/view.js'
import type { ApiRoute, Feature, FeatureContext } from '../feature.js'

/** How long one ping waits for its answer. */
const PING_TIMEOUT_MS = 5_000
const apiError = (status: number, code: string, message: string): Error => Object.assign(new Error(message), { status, code })

/**
 * `weft ping` (POST /ping). Pings are libp2p pings over the mesh connection to the peer: the
 * same connection the VPN's packets take (docs/cli.md, "weft ping"). The round-trip times
 * `weft peers ls` shows come from presence heartbeats and the connection probe (src/net).
 */
export class PingFeature implements Feature {
  readonly name = 'ping'

  constructor (private readonly ctx: FeatureContext) {}

  routes (): ApiRoute[] {
    return [[`${API_PREFIX}/ping`, { POST: async (body) => await this.ping(body) }]]
  }

  async ping (body: unknown): Promise<PingResponse> {
    const req = PingRequestSchema.safeParse(body ?? {})
    if (!req.success) throw apiError(400, 'bad_request', formatZodIssues(req.error))
    const { ctx } = this
    const found = findMember(networkView(ctx.state()).members, req.data.node)
    if (found === undefined) throw apiError(404, 'not_found', `no member ${JSON.stringify(req.data.node)}: give a host name, DNS name, overlay address or peer id (weft node ls lists them)`)
    if (Array.isArray(found)) throw apiError(409, 'conflict', `${JSON.stringify(req.data.node)} names ${found.length} members (${found.map((m) => m.peerId).join(', ')}): give a peer id`)
    if (found.author === ctx.identity.authorHex) throw apiError(400, 'bad_request', `${JSON.stringify(req.data.node)} is this node`)
    const peer = peerIdFromString(found.peerId)
    const rttMs: number[] = []
    let lost = 0
    let error: string | undefined
    for (let i = 0; i < req.data.count; i++) {
      try {
        rttMs.push(await ctx.mesh.host.services.ping.ping(peer, { signal: AbortSignal.timeout(PING_TIMEOUT_MS) }))
      } catch (err) {
        lost++
        error = (err as Error).message
      }
    }
    const path = ctx.mesh.peers().find((p) => p.peerId === found.peerId)?.path
    return {
      peerId: found.peerId,
      hostname: found.hostname,
      ...(found.address !== undefined ? { address: found.address } : {}),
      ...(path !== undefined ? { path } : {}),
      rttMs,
      lost,
      ...(error !== undefined ? { error } : {})
    }
  }

  async stop (): Promise<void> {}
}

/**
 * The member `q` names: its peer id, author hex (8 digits or more), overlay address, DNS name,
 * host name or host label. Undefined when none does; the candidates when several do.
 */
export function findMember (members: readonly MemberView[], q: string): MemberView | MemberView[] | undefined {
  const want = q.trim().toLowerCase().replace(/\.$/, '')
  const tests: Array<(m: MemberView) => boolean> = [
    (m) => m.peerId === q.trim(),
    (m) => want.length >= 8 && /^[0-9a-f]+$/.test(want) && m.author.startsWith(want),
    (m) => m.address === want || m.address6 === want,
    (m) => m.dnsName !== undefined && m.dnsName.replace(/\.$/, '') === want,
    (m) => m.hostname.toLowerCase() === want,
    (m) => hostLabel(m.hostname) === want
  ]
  for (const t of tests) {
    const hits = members.filter(t)
    if (hits.length === 1) return hits[0]
    if (hits.length > 1) return hits
  }
  return undefined
}
