import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { isPrivate } from '@libp2p/utils'
import type { Connection, PeerId } from '@libp2p/interface'
import { isDirect } from './address-filter.js'
import { isPlainConnection } from './transport-protector.js'
import type { WeftHost } from './host.js'
import type { MeshLogger } from './mesh-logger.js'

/** The circuit relay v2 hop protocol: a peer that serves it relays for others. */
export const HOP_PROTOCOL = '/libp2p/circuit/relay/0.2.0/hop'
/** Member relays a node keeps a slot on, besides its slots on public relays. */
export const MEMBER_RELAY_SLOTS = 2
/** Dials through a member relay at once (each waits at most DIAL_TIMEOUT_MS). */
const MAX_PENDING_DIALS = 8
const DIAL_TIMEOUT_MS = 10_000
/** After a failed dial through member relays, a peer is not tried again for this long. */
const RETRY_AFTER_MS = 30_000
/** Peers remembered with a failed attempt (bounded: forgotten oldest first). */
const MAX_FAILURES = 1_024

export interface MemberRelayOptions {
  host: WeftHost
  /** Whether a peer is (or may be) a member: only a member's relay carries the network's protocols. */
  isMember: (peerId: string) => boolean
  log: MeshLogger
  now: () => number
}

/**
 * Member relays (docs/mesh.md, "Beyond the LAN"): a Weft member with a public address relays for
 * members without limits. Two things use them:
 * - `reserve`: a node that reached such a member directly reserves a slot on it, so it is
 *   reachable through it at `<member>/p2p-circuit/p2p/<us>` (announced like any listen address);
 * - `upgrade`: two members behind NATs usually meet first through a public relay, whose
 *   connection is *limited* (2 min, 128 KiB): it carries only identify, ping and hole punching.
 *   While every connection to a member is limited (or there is none), it is dialled through one
 *   of its member relays, which gives an unlimited, protected connection that sync, gossip,
 *   presence, the VPN and tunnels then take.
 */
export class MemberRelays {
  private readonly reserved = new Set<string>()
  private readonly pending = new Set<string>()
  private readonly failedAt = new Map<string, number>()

  constructor (private readonly opts: MemberRelayOptions) {}

  /**
   * A member we reached directly at a public address (after --public-ranges) that serves the hop
   * protocol: take a slot on it (at most MEMBER_RELAY_SLOTS). A member reached at a private
   * address is no use as a relay: whoever can reach it there is on the same private network and
   * reaches us directly, and its circuit address would only swell our address list (every
   * identify and private DHT record carries it: issue 16, idle traffic).
   */
  async reserve (peer: PeerId, c: Connection, protocols: readonly string[]): Promise<void> {
    const id = peer.toString()
    if (!protocols.includes(HOP_PROTOCOL) || c.direction !== 'outbound' || !isDirect(c) || isPlainConnection(c) || isPrivate(c.remoteAddr)) return
    if (this.reserved.has(id) || this.reserved.size >= MEMBER_RELAY_SLOTS) return
    this.reserved.add(id)
    // libp2p has no public call to listen on one more address of a running node.
    const transports = (this.opts.host as unknown as { components: { transportManager: { listen: (a: Multiaddr[]) => Promise<void> } } }).components.transportManager
    try {
      await transports.listen([multiaddr(`${c.remoteAddr.toString()}/p2p-circuit`)])
      this.opts.log.info({ relay: id }, 'reserved a relay slot on a member with a public address')
    } catch (err) {
      this.reserved.delete(id)
      this.opts.log.debug({ relay: id, err: (err as Error).message }, 'cannot reserve a relay slot on a member')
    }
  }

  /**
   * Relayed connections to a peer we also reach directly: closed (returns how many). On a LAN
   * every member is a relay and announces circuit addresses through other members, so dials
   * racing at start leave some pairs with a relayed connection beside the direct one; whatever
   * took it (sync, gossip) then costs the relay its bytes too (issue 16, idle traffic). Traffic
   * prefers the direct one anyway (address-filter.ts bestConnection).
   */
  async closeRedundant (peer: PeerId): Promise<number> {
    const open = this.opts.host.getConnections(peer).filter((c) => c.status === 'open')
    if (!open.some((c) => isDirect(c))) return 0
    const relayed = open.filter((c) => c.remoteAddr.toString().includes('/p2p-circuit'))
    await Promise.all(relayed.map(async (c) => { await c.close().catch(() => { c.abort(new Error('a direct connection replaces it')) }) }))
    if (relayed.length > 0) this.opts.log.debug({ peer: peer.toString(), closed: relayed.length }, 'closed relayed connections to a peer reached directly')
    return relayed.length
  }

  /** Whether every open connection to the peer is limited (a public relay's), and there is at least one. */
  onlyLimited (peer: PeerId): boolean {
    const open = this.opts.host.getConnections(peer).filter((c) => c.status === 'open')
    return open.length > 0 && open.every((c) => c.limits !== undefined)
  }

  /**
   * The peer's circuit addresses through a member relay (not a public one), those through a relay
   * we are connected to without limits first: a dial through them needs no new connection.
   */
  async memberRelayAddrs (peer: PeerId): Promise<Multiaddr[]> {
    const { host, isMember } = this.opts
    const known = await host.peerStore.get(peer).then((p) => p.addresses.map((a) => a.multiaddr), () => [])
    const self = host.peerId.toString()
    const out: Array<{ ma: Multiaddr, rank: number }> = []
    for (const ma of known) {
      const text = ma.toString()
      const at = text.indexOf('/p2p-circuit')
      if (at < 0 || text.indexOf('/p2p-circuit', at + 1) >= 0) continue
      const relay = multiaddr(text.slice(0, at)).getComponents().findLast((c) => c.name === 'p2p')?.value
      if (relay === undefined || relay === self || relay === peer.toString() || !isMember(relay)) continue
      const linked = host.getConnections().some((c) => c.remotePeer.toString() === relay && c.status === 'open' && c.limits === undefined && !isPlainConnection(c))
      const full = text.endsWith(`/p2p/${peer.toString()}`) ? ma : ma.encapsulate(`/p2p/${peer.toString()}`)
      out.push({ ma: full, rank: linked ? 0 : 1 })
    }
    return out.sort((a, b) => a.rank - b.rank).map((x) => x.ma)
  }

  /**
   * A member reached only through limited connections: dial it through its member relays. Returns
   * whether an unlimited connection now exists. At most one attempt per peer at a time; after a
   * failure the peer waits RETRY_AFTER_MS.
   */
  async upgrade (peer: PeerId): Promise<boolean> {
    const id = peer.toString()
    if (!this.onlyLimited(peer) || this.pending.has(id) || this.pending.size >= MAX_PENDING_DIALS) return false
    const failed = this.failedAt.get(id)
    if (failed !== undefined && this.opts.now() - failed < RETRY_AFTER_MS) return false
    const addrs = await this.memberRelayAddrs(peer)
    if (addrs.length === 0) return false
    this.pending.add(id)
    try {
      for (const ma of addrs) {
        try {
          const c = await this.opts.host.dial(ma, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
          if (c.limits === undefined && c.status === 'open') {
            this.failedAt.delete(id)
            this.opts.log.info({ peer: id, via: ma.toString() }, 'connected to a member through a member relay (unlimited)')
            return true
          }
        } catch (err) {
          this.opts.log.debug({ peer: id, via: ma.toString(), err: (err as Error).message }, 'cannot dial a member through a member relay')
        }
      }
      this.failedAt.delete(id)
      this.failedAt.set(id, this.opts.now())
      if (this.failedAt.size > MAX_FAILURES) this.failedAt.delete(this.failedAt.keys().next().value as string)
      return false
    } finally {
      this.pending.delete(id)
    }
  }
}
