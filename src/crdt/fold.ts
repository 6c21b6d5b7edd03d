import { compareEvents, type SignedEvent } from '../log/event.js'

/** Where an event sits in the fold, for reducers that need it. */
export interface FoldContext {
  /** Position of the event in the ordered view (0-based). */
  readonly index: number
}

/**
 * A projection: a pure reducer over events in the log's total order. `apply` mutates the state
 * it is given (folding 100,000 events must stay well under a second); `clone` makes the copies
 * the engine keeps as checkpoints.
 */
export interface Reducer<S> {
  initial (): S
  apply (state: S, event: SignedEvent, ctx: FoldContext): void
  clone (state: S): S
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type ReducerMap = Record<string, Reducer<any>>
export type StatesOf<R extends ReducerMap> = { [K in keyof R]: R[K] extends Reducer<infer S> ? S : never }

interface Checkpoint<R extends ReducerMap> { index: number, states: StatesOf<R> }

export interface FoldEngineOptions {
  /** Events between checkpoints (default 4,096). */
  checkpointEvery?: number
  /**
   * Checkpoints kept (default 6). Each is a whole copy of the projection state (~2 MB at 100,000
   * bench events), so this bounds the fold's memory: at 64, a flood of 100,000 events left 24
   * copies, ~29 MB of heap that a restart (one restored checkpoint) did not have.
   */
  maxCheckpoints?: number
}

/**
 * Checkpoints kept at full density behind the end of the view. An event that arrives late sorts
 * near the end (its lamport is about the others'), so it refolds at most this many spacings;
 * older checkpoints are thinned, each thinning keeping every other one, so an event that sorts
 * far back (an author back from a long partition) refolds more, and is rare.
 */
const RECENT_CHECKPOINTS = 3

export interface FoldStats { events: number, checkpoints: number, refolds: number, refoldedEvents: number }

/**
 * Folds reducers over the ordered view of the log. Appends at the end fold incrementally; an
 * event that sorts earlier, or an event removed from the view (an author frozen by a fork),
 * refolds from the nearest checkpoint before it.
 */
export class FoldEngine<R extends ReducerMap> {
  private view: SignedEvent[] = []
  private current: StatesOf<R>
  private checkpoints: Array<Checkpoint<R>> = []
  private readonly every: number
  private readonly maxCheckpoints: number
  readonly stats: FoldStats = { events: 0, checkpoints: 0, refolds: 0, refoldedEvents: 0 }

  constructor (private readonly reducers: R, opts: FoldEngineOptions = {}) {
    this.every = opts.checkpointEvery ?? 4096
    this.maxCheckpoints = Math.max(1, opts.maxCheckpoints ?? 6)
    this.current = this.initial()
  }

  private initial (): StatesOf<R> {
    const s: Record<string, unknown> = {}
    for (const [k, r] of Object.entries(this.reducers)) s[k] = r.initial()
    return s as StatesOf<R>
  }

  private cloneStates (states: StatesOf<R>): StatesOf<R> {
    const s: Record<string, unknown> = {}
    for (const [k, r] of Object.entries(this.reducers)) s[k] = r.clone(states[k])
    return s as StatesOf<R>
  }

  get length (): number { return this.view.length }
  /** The ordered view (do not mutate). */
  events (): readonly SignedEvent[] { return this.view }
  states (): StatesOf<R> { return this.current }

  /** Add events (any order, any position); refolds only from where the view changed. */
  insert (events: readonly SignedEvent[]): void {
    if (events.length === 0) return
    const sorted = [...events].sort(compareEvents)
    const last = this.view[this.view.length - 1]
    if (last === undefined || compareEvents(sorted[0] as SignedEvent, last) > 0) {
      const from = this.view.length
      this.view.push(...sorted)
      this.foldFrom(from, this.current)
      return
    }
    // Merge the two sorted lists; the first changed position is where the smallest new one lands.
    const firstChanged = lowerBound(this.view, sorted[0] as SignedEvent)
    const merged: SignedEvent[] = this.view.slice(0, firstChanged)
    let i = firstChanged
    let j = 0
    while (i < this.view.length || j < sorted.length) {
      if (j >= sorted.length || (i < this.view.length && compareEvents(this.view[i] as SignedEvent, sorted[j] as SignedEvent) < 0)) {
        merged.push(this.view[i++] as SignedEvent)
      } else {
        merged.push(sorted[j++] as SignedEvent)
      }
    }
    this.view = merged
    this.refoldFrom(firstChanged)
  }

  /**
   * Start over from `states`, folded elsewhere over the first `count` events of `view` (a
   * checkpoint the caller has matched against this view), and fold the rest. `view` must be in
   * the log's total order. The restored states stay as the first checkpoint, so an event that
   * later sorts after them refolds from there; one that sorts before them refolds from the start.
   */
  resume (view: readonly SignedEvent[], count: number, states: StatesOf<R>): void {
    if (count < 0 || count > view.length) throw new RangeError(`a checkpoint of ${count} events cannot resume a view of ${view.length}`)
    this.view = [...view]
    this.checkpoints = count > 0 ? [{ index: count, states: this.cloneStates(states) }] : []
    this.current = states
    this.foldFrom(count, this.current)
  }

  /** Drop events from the view (a fork froze their author) and refold from the first one dropped. */
  remove (drop: (e: SignedEvent) => boolean): number {
    const first = this.view.findIndex(drop)
    if (first < 0) return 0
    const before = this.view.length
    this.view = this.view.slice(0, first).concat(this.view.slice(first).filter((e) => !drop(e)))
    this.refoldFrom(first)
    return before - this.view.length
  }

  /** Refold from the first view event matching `first` (a reducer input outside the log changed there). */
  refoldAt (first: (e: SignedEvent) => boolean): boolean {
    const i = this.view.findIndex(first)
    if (i < 0) return false
    this.refoldFrom(i)
    return true
  }

  private refoldFrom (position: number): void {
    this.checkpoints = this.checkpoints.filter((c) => c.index <= position)
    const base = this.checkpoints[this.checkpoints.length - 1]
    const start = base?.index ?? 0
    this.stats.refolds++
    this.stats.refoldedEvents += this.view.length - start
    this.current = base === undefined ? this.initial() : this.cloneStates(base.states)
    this.foldFrom(start, this.current)
  }

  private foldFrom (start: number, states: StatesOf<R>): void {
    const entries = Object.entries(this.reducers)
    for (let i = start; i < this.view.length; i++) {
      if (i > 0 && i % this.every === 0 && (this.checkpoints[this.checkpoints.length - 1]?.index ?? 0) < i) {
        this.checkpoints.push({ index: i, states: this.cloneStates(states) })
        if (this.checkpoints.length > this.maxCheckpoints) this.thin()
      }
      const ev = this.view[i] as SignedEvent
      const ctx = { index: i }
      for (const [k, r] of entries) r.apply(states[k], ev, ctx)
    }
    this.stats.events = this.view.length
    this.stats.checkpoints = this.checkpoints.length
  }

  /** The newest checkpoints stay; of the older ones every other goes, the oldest kept. */
  private thin (): void {
    const recent = Math.min(RECENT_CHECKPOINTS, this.maxCheckpoints - 1)
    const older = this.checkpoints.slice(0, this.checkpoints.length - recent).filter((_, i) => i % 2 === 0)
    this.checkpoints = older.concat(this.checkpoints.slice(this.checkpoints.length - recent))
  }

  /** The states after the first `count` events of the view, without touching the live state. */
  statesAfter (count: number): StatesOf<R> {
    const n = Math.max(0, Math.min(count, this.view.length))
    if (n === this.view.length) return this.cloneStates(this.current)
    let base: Checkpoint<R> | undefined
    for (const c of this.checkpoints) if (c.index <= n) base = c
    const states = base === undefined ? this.initial() : this.cloneStates(base.states)
    const entries = Object.entries(this.reducers)
    for (let i = base?.index ?? 0; i < n; i++) {
      const ev = this.view[i] as SignedEvent
      for (const [k, r] of entries) r.apply(states[k], ev, { index: i })
    }
    return states
  }

  /** Number of view events up to and including the event with this id (or -1). */
  countThrough (id: string): number {
    const i = this.view.findIndex((e) => e.idHex === id)
    return i < 0 ? -1 : i + 1
  }

  /** Number of view events with lamport <= `lamport`. */
  countAtLamport (lamport: number): number {
    let lo = 0
    let hi = this.view.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.view[mid] as SignedEvent).fields.lamport <= lamport) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

function lowerBound (arr: readonly SignedEvent[], x: SignedEvent): number {
  let lo = 0
  let hi = arr.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (compareEvents(arr[mid] as SignedEvent, x) < 0) lo = mid + 1
    else hi = mid
  }
  return lo
}
