import type { SignedEvent } from '../log/event.js'
import { toHex } from '../log/bytes.js'

/** Id → (author, seq) of every folded event; shared, append-only, safe across checkpoints. */
export type EventLocator = Map<string, { author: string, seq: number }>

/** How observeFollowers finds a parent: (author, seq) of a folded event, or undefined. */
export interface Locate { get (id: string): { author: string, seq: number } | undefined }

/**
 * For a few watched events, the first seq of each author's feed that is or causally follows
 * it. A feed is a chain, so once an author's event follows a target all its later ones do:
 * one number per author answers "has this node seen it?". Events are observed in the log's
 * total order, which is topological, so parents are always known first.
 *
 * Indexed both ways so that observing an event costs what is new to it, not the number of
 * watched targets (joins of nodes that never speak again stay watched, and scanning them on
 * every event dominated a 100,000-event refold):
 * - `byTarget`: target → author → first seq that follows it;
 * - `byAuthor`: author → the targets it follows, in the order it started to (so by
 *   nondecreasing seq: its events are folded in seq order), deleted targets skipped lazily;
 * - `absorbed`: reader → author → how much of that author's list the reader already follows.
 *   A parent (author P, seq q) makes its child follow the prefix of P's list with seq <= q;
 *   the reader resumes where it stopped last time.
 */
interface Entry { readonly target: string, readonly seq: number }

export class Followers {
  private readonly byTarget = new Map<string, Map<string, number>>()
  private readonly byAuthor = new Map<string, Entry[]>()
  private readonly absorbed = new Map<string, Map<string, number>>()
  private dead = 0

  get size (): number { return this.byTarget.size }
  keys (): IterableIterator<string> { return this.byTarget.keys() }
  has (target: string): boolean { return this.byTarget.has(target) }
  /** author → first seq that follows `target` (do not mutate). */
  get (target: string): ReadonlyMap<string, number> | undefined { return this.byTarget.get(target) }

  delete (target: string): boolean {
    const first = this.byTarget.get(target)
    if (first === undefined) return false
    this.byTarget.delete(target)
    this.dead += first.size
    if (this.dead > 1024 && this.dead > this.byTarget.size * 4) this.compact()
    return true
  }

  /** Drop the entries of deleted targets; readers start over (adding is idempotent). */
  private compact (): void {
    for (const [a, list] of this.byAuthor) {
      const live = list.filter((x) => this.byTarget.has(x.target))
      if (live.length === 0) this.byAuthor.delete(a)
      else this.byAuthor.set(a, live)
    }
    this.absorbed.clear()
    this.dead = 0
  }

  /** Record that `author` follows `target` from `seq` on (first time only); true if new. */
  add (target: string, author: string, seq: number): boolean {
    const first = this.byTarget.get(target)
    if (first === undefined || first.has(author)) return false
    first.set(author, seq)
    let list = this.byAuthor.get(author)
    if (list === undefined) { list = []; this.byAuthor.set(author, list) }
    list.push({ target, seq })
    return true
  }

  watch (target: SignedEvent): void {
    if (this.byTarget.has(target.idHex)) return
    this.byTarget.set(target.idHex, new Map())
    this.add(target.idHex, target.authorHex, target.fields.seq)
  }

  /**
   * Fold one event: its author follows every target that one of its parents follows. (A dep
   * on a target itself is covered: the target's author follows it from the target's seq.)
   * Returns whether any target gained a follower.
   */
  observe (e: SignedEvent, locate: Locate): boolean {
    if (this.byTarget.size === 0) return false
    const me = e.authorHex
    let changed = false
    for (const d of e.fields.deps) {
      const at = locate.get(toHex(d))
      if (at === undefined || at.author === me) continue
      const list = this.byAuthor.get(at.author)
      if (list === undefined) continue
      let marks = this.absorbed.get(me)
      let i = marks?.get(at.author) ?? 0
      for (; i < list.length; i++) {
        const x = list[i] as Entry
        if (x.seq > at.seq) break
        if (this.add(x.target, me, e.fields.seq)) changed = true
      }
      if (marks === undefined) { marks = new Map(); this.absorbed.set(me, marks) }
      marks.set(at.author, i)
    }
    return changed
  }

  clone (): Followers {
    const out = new Followers()
    for (const [k, v] of this.byTarget) out.byTarget.set(k, new Map(v))
    for (const [k, v] of this.byAuthor) out.byAuthor.set(k, [...v])
    for (const [k, v] of this.absorbed) out.absorbed.set(k, new Map(v))
    out.dead = this.dead
    return out
  }
}

/** How many of `authors` have seen the target. */
export function countFollowing (f: Followers, target: string, authors: Iterable<string>): number {
  const first = f.get(target)
  if (first === undefined) return 0
  let n = 0
  for (const a of authors) if (first.has(a)) n++
  return n
}
