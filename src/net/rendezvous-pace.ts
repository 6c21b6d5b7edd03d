/**
 * How often rendezvous rounds run (src/net/rendezvous.ts, docs/mesh.md "Rendezvous pace").
 *
 * A round announces us under the rendezvous key and looks up three keys: in a 10-node network on
 * a LAN that was ~40 kad-dht streams and most of a node's idle traffic every minute (issue 16),
 * although in a settled network it finds nobody new. So, with backoff on, every round that finds
 * no provider we had not seen before doubles the wait before the next one, up to a cap; a round
 * that finds a new provider, and any change of mode, starts again from the base period:
 *
 * | mode | when | base | cap |
 * |---|---|---|---|
 * | `fast` | the first minutes after start (members that started together find each other) | alone | no backoff |
 * | `alone` | no member is connected (a new node, or one cut off) | alone | `aloneMaxIntervalMs` |
 * | `connected` | otherwise | interval | `maxIntervalMs` |
 *
 * Backing off loses nothing that matters: discovery is symmetric (a member that starts, or is cut
 * off, looks at the fast or alone pace and dials the quiet ones, whose provider records stay in
 * the DHT for 48 hours), members we knew are redialled by the mesh without the DHT, and the cap
 * stays well under the hour the rendezvous key rotates on.
 */
export type RendezvousMode = 'fast' | 'alone' | 'connected'

export interface RendezvousPaceOptions {
  /** Base period while connected to a member. */
  intervalMs: number
  /** Base period while alone or in the fast start. */
  aloneIntervalMs: number
  /** Back off at all (off: the base periods, as without public discovery). */
  backoff: boolean
  /** Longest period while connected (with backoff). */
  maxIntervalMs: number
  /** Longest period while alone (with backoff). */
  aloneMaxIntervalMs: number
}

export class RendezvousPace {
  /** Rounds in a row that found nobody new, in the current mode. */
  private quiet = 0
  private mode: RendezvousMode | undefined

  constructor (private readonly opts: RendezvousPaceOptions) {}

  /** The wait between the start of the last round and the next one, in this mode. */
  periodMs (mode: RendezvousMode): number {
    // Modes are seen when asked (every timer tick): the first one seen is not a change.
    if (mode !== this.mode) {
      if (this.mode !== undefined) this.quiet = 0
      this.mode = mode
    }
    const { intervalMs, aloneIntervalMs, backoff, maxIntervalMs, aloneMaxIntervalMs } = this.opts
    if (mode === 'fast') return aloneIntervalMs
    const base = mode === 'alone' ? aloneIntervalMs : intervalMs
    if (!backoff) return base
    const cap = Math.max(base, mode === 'alone' ? aloneMaxIntervalMs : maxIntervalMs)
    // 2^quiet stays finite: quiet stops growing once the cap is reached (roundDone).
    return Math.min(cap, base * 2 ** this.quiet)
  }

  /** A round finished: whether it found a provider not seen before. */
  roundDone (foundNew: boolean): void {
    if (foundNew) { this.quiet = 0; return }
    if (this.quiet < 32) this.quiet++
  }
}
