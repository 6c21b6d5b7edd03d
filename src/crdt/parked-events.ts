import type { SignedEvent } from '../log/event.js'

/**
 * Events that arrived before their parents, parked until those come (bounded: the oldest goes
 * first), and the index from a missing parent to the events waiting for it. The index holds
 * only what a parked event still needs, so it stays as bounded as the events.
 */
export class ParkedEvents {
  private readonly events = new Map<string, SignedEvent>()
  /** missing parent id → ids of parked events waiting for it */
  private readonly waiting = new Map<string, Set<string>>()

  constructor (private readonly max: number, private readonly missingParents: (ev: SignedEvent) => string[]) {}

  get size (): number { return this.events.size }
  has (id: string): boolean { return this.events.has(id) }

  /** Park `ev`, waiting for `missing`; true when the oldest parked event was dropped for it. */
  park (ev: SignedEvent, missing: readonly string[]): boolean {
    let dropped = false
    if (this.events.size >= this.max) {
      // Oldest first: a parked event that waited longest is the least likely to complete soon.
      this.unpark(this.events.keys().next().value as string)
      dropped = true
    }
    this.events.set(ev.idHex, ev)
    for (const m of missing) {
      let s = this.waiting.get(m)
      if (s === undefined) { s = new Set(); this.waiting.set(m, s) }
      s.add(ev.idHex)
    }
    return dropped
  }

  /** `parent` was accepted: the parked events that waited for it and now miss nothing, taken out. */
  completedBy (parent: string): SignedEvent[] {
    const waiters = this.waiting.get(parent)
    if (waiters === undefined) return []
    this.waiting.delete(parent)
    const out: SignedEvent[] = []
    for (const wid of waiters) {
      const w = this.events.get(wid)
      if (w === undefined || this.missingParents(w).length > 0) continue
      this.events.delete(wid)
      out.push(w)
    }
    return out
  }

  /** `parent` was rejected: the ids of every parked event that descends from it, taken out. */
  descendantsOf (parent: string): Array<{ id: string, parent: string }> {
    const out: Array<{ id: string, parent: string }> = []
    const stack = [parent]
    while (stack.length > 0) {
      const id = stack.pop() as string
      const waiters = this.waiting.get(id)
      if (waiters === undefined) continue
      this.waiting.delete(id)
      for (const wid of waiters) {
        if (!this.unpark(wid)) continue
        out.push({ id: wid, parent: id })
        stack.push(wid)
      }
    }
    return out
  }

  /** Ids parked events wait for that are neither parked nor `known`: what to ask peers for. */
  wanted (max: number, known: (id: string) => boolean): string[] {
    const out: string[] = []
    for (const id of this.waiting.keys()) {
      if (!this.events.has(id) && !known(id)) out.push(id)
      if (out.length >= max) break
    }
    return out
  }

  private unpark (id: string): boolean {
    const ev = this.events.get(id)
    if (ev === undefined) return false
    this.events.delete(id)
    for (const m of this.missingParents(ev)) {
      const s = this.waiting.get(m)
      if (s === undefined) continue
      s.delete(id)
      if (s.size === 0) this.waiting.delete(m)
    }
    return true
  }
}
