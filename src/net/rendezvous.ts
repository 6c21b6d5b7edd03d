import { setMaxListeners } from 'node:events'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import type { PeerId } from '@libp2p/interface'
import { RENDEZVOUS_EPOCH_SECONDS, rendezvousKeys, type NetworkToken } from '../log/token.js'
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
/** How far apart two members' clocks may be for rendezvous to find them at the edges of an hour. */
export const RENDEZVOUS_CLOCK_SKEW_MS = 10 * 60_000
/**
 * Connected, the previous key is looked up this long into the hour: a member announces the new
 * key at its first round of the hour, up to RENDEZVOUS_MAX_INTERVAL_MS late, by a clock up to
 * RENDEZVOUS_CLOCK_SKEW_MS behind ours (and 5 minutes to spare).
 */
export const RENDEZVOUS_PREVIOUS_KEY_MS = RENDEZVOUS_MAX_INTERVAL_MS + RENDEZVOUS_CLOCK_SKEW_MS + 5 * 60_000
/** Connected, the next key is looked up this long before the hour ends: a member whose clock is ahead may already announce it. */
export const RENDEZVOUS_NEXT_KEY_MS = RENDEZVOUS_CLOCK_SKEW_MS

/** What one round does: the keys it looks up, and whether it announces the current one. */
export interface RoundPlan {
  lookups: Array<'previous' | 'current' | 'next'>
  announce: boolean
}

/**
 * A connected node's rounds find nobody new almost always, and each look-up and announce is a
 * walk of the DHTs (docs/operations.md, "Idle traffic"): so, connected, it announces a key once
 * (again when its addresses changed, or after an announce made while alone or starting, when the
 * DHT held few peers), and looks up the neighbouring keys only near the hour's edges. Alone or
 * starting, every round does everything: finding one member is all that matters then.
 * `announced`: the epoch of the last announce made while connected (null: none, or a re-announce is due).
 */
export function roundPlan (mode: RendezvousMode, nowMs: number, epoch: number, announced: number | null): RoundPlan {
  if (mode !== 'connected') return { lookups: ['previous', 'current', 'next'], announce: true }
  const intoHour = nowMs - epoch * RENDEZVOUS_EPOCH_SECONDS * 1000
  const lookups: RoundPlan['lookups'] = []
  if (intoHour < RENDEZVOUS_PREVIOUS_KEY_MS) lookups.push('previous')
  lookups.push('current')
  if (RENDEZVOUS_EPOCH_SECONDS * 1000 - intoHour <= RENDEZVOUS_NEXT_KEY_MS) lookups.push('next')
  return { lookups, announce: announced !== epoch }
}

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
 * and looks up the previous, current and next ones (connected: the current one, the others near
 * the hour's edges, and it announces once per key, see roundPlan), dialling the providers it is
 * not connected to. A node that knows one bootstrap peer thus finds the rest, and keeps them when
 * that peer goes away. Keys rotate so a DHT observer cannot link a network's announcements across
 * hours by the key (the providers' PeerIds stay the same, see docs/mesh.md); the grace window
 * covers clock skew.
 */
export class Rendezvous {
  private timer: NodeJS.Timeout | undefined
  private running = false
  private again = false
  private last = Number.NEGATIVE_INFINITY
  private readonly pace: RendezvousPace
  /** Providers found in earlier rounds (bounded: MAX_SEEN_PROVIDERS). */
  private readonly seen = new Set<string>()
  /** The epoch of the last announce made while connected; null when none is, or one is due again (kick). */
  private announced: number | null = null
  /** Kicks so far: an announce that a kick overtook does not count as the one it asked for. */
  private kicks = 0

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

  /** A round now (our addresses changed); one more after the running one, if any. Settles when the round it started ends. */
  async kick (): Promise<void> {
    this.kicks++
    this.announced = null
    if (this.running) { this.again = true; return }
    await this.round()
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
      const now = this.opts.now()
      const keys = rendezvousKeys(this.opts.token, now)
      const mode = this.mode()
      const plan = roundPlan(mode, now, keys.epoch, this.announced)
      // An announce made while alone or starting reached a DHT of few peers: announce again once connected.
      if (mode !== 'connected') this.announced = null
      const kicks = this.kicks
      // Alone (or in the fast start), a round that hangs in a DHT lookup (a peer it dials does not
      // answer) would keep the next one from running: seen in the simulated internet, 20 s before
      // a NATted node found its network. Short rounds, then, repeated at the alone pace.
      const signal = AbortSignal.timeout(mode !== 'connected' ? (this.opts.roundMs?.alone ?? RENDEZVOUS_ALONE_ROUND_MS) : (this.opts.roundMs?.connected ?? RENDEZVOUS_ROUND_MS))
      // One signal for the announce and the look-ups, each of which listens on it many times
      // over (kad-dht does the same for its own): not a leak, so no MaxListenersExceededWarning.
      setMaxListeners(Infinity, signal)
      const announced = !plan.announce
        ? Promise.resolve()
        : host.contentRouting.provide(await rendezvousCid(keys.current), { signal }).then(() => {
          if (mode === 'connected' && this.kicks === kicks) this.announced = keys.epoch
        }, (err: unknown) => {
          log.debug({ err: (err as Error).message }, 'rendezvous announce failed')
        })
      await Promise.all(plan.lookups.map((which) => keys[which]).map(async (key) => {
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
