import { setMaxListeners } from 'node:events'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import type { PeerId } from '@libp2p/interface'
import { rendezvousKeys, type NetworkToken } from '../log/token.js'
import type { WeftHost } from './host.js'
import type { MeshLogger } from './mesh-logger.js'
import { RendezvousPace, type RendezvousMode } from './rendezvous-pace.js'

/** How often a node announces itself and looks for others under the rendezvous keys. */
export const RENDEZVOUS_INTERVAL_MS = 60_000
/** The period while no member is connected (a new node, or one cut off): finding one is all that matters. */
export const RENDEZVOUS_ALONE_INTERVAL_MS = 5_000
/** Longest round (announce and look-ups), connected / alone. */
export const RENDEZVOUS_ROUND_MS = 20_000
export const RENDEZVOUS_ALONE_ROUND_MS = 6_000
/** With backoff: the longest period while connected (rendezvous-pace.ts), well under the key's hour. */
export const RENDEZVOUS_MAX_INTERVAL_MS = 15 * 60_000
/** With backoff: the longest period while alone. */
export const RENDEZVOUS_ALONE_MAX_INTERVAL_MS = 60_000
/** Providers remembered as seen (a round finding only these is quiet); oldest forgotten first. */
const MAX_SEEN_PROVIDERS = 4_096

export async function rendezvousCid (key: string): Promise<CID> {
  return CID.create(1, raw.code, await sha256.digest(new TextEncoder().encode(`weft/rendezvous/${key}`)))
}

export interface RendezvousOptions {
  host: WeftHost
  token: NetworkToken
  now: () => number
  log: MeshLogger
  intervalMs?: number
  /** Told of every provider found under the keys before it is dialled (a member candidate). */
  onProvider?: (peer: PeerId) => Promise<void>
  /** Whether no member is connected: then rounds run every RENDEZVOUS_ALONE_INTERVAL_MS (with backoff: up to RENDEZVOUS_ALONE_MAX_INTERVAL_MS). */
  alone?: () => boolean
  /** Longest round (default RENDEZVOUS_ROUND_MS; RENDEZVOUS_ALONE_ROUND_MS alone or in the fast start). */
  roundMs?: { connected: number, alone: number }
  /** Whether the node is in its fast start: rounds every RENDEZVOUS_ALONE_INTERVAL_MS, no backoff. */
  fast?: () => boolean
  /**
   * Back off while rounds find no new provider (rendezvous-pace.ts): up to
   * RENDEZVOUS_MAX_INTERVAL_MS while connected, RENDEZVOUS_ALONE_MAX_INTERVAL_MS while alone.
   */
  backoff?: boolean
}

/**
 * Discovery through the DHTs (the network's private one and, with public discovery, the public
 * one): every node provides the current rendezvous key (derived from the token, rotating hourly)
 * and looks up the previous, current and next ones, dialling the providers it is not connected
 * to. A node that knows one bootstrap peer thus finds the rest, and keeps them when that peer goes
 * away. Keys rotate so a DHT observer cannot link a network's announcements across hours by the
 * key (the providers' PeerIds stay the same, see docs/mesh.md); the grace window covers clock skew.
 */
export class Rendezvous {
  private timer: NodeJS.Timeout | undefined
  private running = false
  private again = false
  private last = Number.NEGATIVE_INFINITY
  private readonly pace: RendezvousPace
  /** Providers found in earlier rounds (bounded: MAX_SEEN_PROVIDERS). */
  private readonly seen = new Set<string>()

  constructor (private readonly opts: RendezvousOptions) {
    const intervalMs = opts.intervalMs ?? RENDEZVOUS_INTERVAL_MS
    this.pace = new RendezvousPace({
      intervalMs,
      aloneIntervalMs: Math.min(intervalMs, RENDEZVOUS_ALONE_INTERVAL_MS),
      backoff: opts.backoff === true,
      maxIntervalMs: Math.max(intervalMs, RENDEZVOUS_MAX_INTERVAL_MS),
      aloneMaxIntervalMs: Math.min(intervalMs, RENDEZVOUS_ALONE_MAX_INTERVAL_MS)
    })
  }

  /** The pace's mode now: without `alone`/`fast` (no public discovery) always `connected`. */
  private mode (): RendezvousMode {
    if (this.opts.fast?.() === true) return 'fast'
    return this.opts.alone?.() === true ? 'alone' : 'connected'
  }

  start (): void {
    const interval = this.opts.intervalMs ?? RENDEZVOUS_INTERVAL_MS
    const tick = Math.min(interval, RENDEZVOUS_ALONE_INTERVAL_MS)
    this.timer = setInterval(() => {
      if (this.opts.now() - this.last >= this.periodMs()) void this.round()
    }, tick)
    this.timer.unref()
  }

  /** How long after the last round's start the next one is due, in the current mode. */
  periodMs (): number {
    return this.pace.periodMs(this.mode())
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
  }

  /** A round now (our addresses changed); one more after the running one, if any. */
  kick (): void {
    if (this.running) { this.again = true; return }
    void this.round()
  }

  /** Remember a provider; whether it was not seen before. */
  private see (id: string): boolean {
    if (this.seen.has(id)) return false
    this.seen.add(id)
    if (this.seen.size > MAX_SEEN_PROVIDERS) this.seen.delete(this.seen.values().next().value as string)
    return true
  }

  /** One announce-and-look-up pass; skipped while the previous one runs or with no peer. */
  async round (): Promise<void> {
    const { host, log } = this.opts
    if (this.running || host.getPeers().length === 0) return
    this.running = true
    this.last = this.opts.now()
    let foundNew = false
    try {
      const keys = rendezvousKeys(this.opts.token, this.opts.now())
      // Alone (or in the fast start), a round that hangs in a DHT lookup (a peer it dials does not
      // answer) would keep the next one from running: seen in the simulated internet, 20 s before
      // a NATted node found its network. Short rounds, then, repeated at the alone pace.
      const signal = AbortSignal.timeout(this.mode() !== 'connected' ? (this.opts.roundMs?.alone ?? RENDEZVOUS_ALONE_ROUND_MS) : (this.opts.roundMs?.connected ?? RENDEZVOUS_ROUND_MS))
      // One signal for the announce and three look-ups, each of which listens on it many times
      // over (kad-dht does the same for its own): not a leak, so no MaxListenersExceededWarning.
      setMaxListeners(Infinity, signal)
      const announced = host.contentRouting.provide(await rendezvousCid(keys.current), { signal }).catch((err: unknown) => {
        log.debug({ err: (err as Error).message }, 'rendezvous announce failed')
      })
      await Promise.all([keys.previous, keys.current, keys.next].map(async (key) => {
        try {
          for await (const p of host.contentRouting.findProviders(await rendezvousCid(key), { signal })) {
            if (p.id.equals(host.peerId)) continue
            foundNew = this.see(p.id.toString()) || foundNew
            await this.opts.onProvider?.(p.id)
            if (host.getConnections(p.id).length > 0) continue
            const target = p.multiaddrs.length > 0 ? p.multiaddrs.map((a) => a.getComponents().at(-1)?.name === 'p2p' ? a : a.encapsulate(`/p2p/${p.id.toString()}`)) : p.id
            void host.dial(target, { signal: AbortSignal.timeout(10_000) }).catch((err: unknown) => {
              log.debug({ peer: p.id.toString(), err: (err as Error).message }, 'cannot dial a rendezvous provider')
            })
          }
        } catch (err) {
          log.debug({ err: (err as Error).message }, 'rendezvous lookup failed')
        }
      }))
      await announced
    } finally {
      this.pace.roundDone(foundNew)
      this.running = false
      if (this.again) { this.again = false; void this.round() }
    }
  }
}
