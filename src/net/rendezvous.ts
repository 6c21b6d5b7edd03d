import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { rendezvousKeys, type NetworkToken } from '../log/token.js'
import type { WeftHost } from './host.js'
import type { MeshLogger } from './mesh-logger.js'

/** How often a node announces itself and looks for others under the rendezvous keys. */
export const RENDEZVOUS_INTERVAL_MS = 60_000

export async function rendezvousCid (key: string): Promise<CID> {
  return CID.create(1, raw.code, await sha256.digest(new TextEncoder().encode(`weft/rendezvous/${key}`)))
}

/**
 * Discovery through the network's private DHT: every node provides the current rendezvous key
 * (derived from the token, rotating hourly) and looks up the previous, current and next ones,
 * dialling the providers it is not connected to. A node that knows one bootstrap peer thus
 * finds the rest, and keeps them when that peer goes away. Keys rotate so a DHT observer cannot
 * link a network's announcements across hours; the grace window covers clock skew.
 */
export class Rendezvous {
  private timer: NodeJS.Timeout | undefined
  private running = false

  constructor (private readonly opts: { host: WeftHost, token: NetworkToken, now: () => number, log: MeshLogger, intervalMs?: number }) {}

  start (): void {
    this.timer = setInterval(() => { void this.round() }, this.opts.intervalMs ?? RENDEZVOUS_INTERVAL_MS)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
  }

  /** One announce-and-look-up pass; skipped while the previous one runs or with no peer. */
  async round (): Promise<void> {
    const { host, log } = this.opts
    if (this.running || host.getPeers().length === 0) return
    this.running = true
    try {
      const keys = rendezvousKeys(this.opts.token, this.opts.now())
      const signal = AbortSignal.timeout(20_000)
      await host.contentRouting.provide(await rendezvousCid(keys.current), { signal }).catch((err: unknown) => {
        log.debug({ err: (err as Error).message }, 'rendezvous announce failed')
      })
      for (const key of [keys.previous, keys.current, keys.next]) {
        try {
          for await (const p of host.contentRouting.findProviders(await rendezvousCid(key), { signal })) {
            if (p.id.equals(host.peerId) || host.getConnections(p.id).length > 0) continue
            await host.dial(p.id, { signal: AbortSignal.timeout(10_000) }).catch(() => {})
          }
        } catch (err) {
          log.debug({ err: (err as Error).message }, 'rendezvous lookup failed')
        }
      }
    } finally {
      this.running = false
    }
  }
}
