import type { SignedEvent } from '../log/event.js'
import { toHex } from '../log/bytes.js'

/** Id → (author, seq) of every folded event; shared, append-only, safe across checkpoints. */
export type EventLocator = Map<string, { author: string, seq: number }>

/**
 * `observeFollowers` returns whether any target gained a follower: stability can only change
 * then (or when membership changes), so the roles projection settles only on those events.
 *
 * For a few watched events, the first seq of each author's feed that is or causally follows
 * it. A feed is a chain, so once an author's event follows a target all its later ones do:
 * one number per author answers "has this node seen it?". Events are observed in the log's
 * total order, which is topological, so parents are always known first.
 */
export type Followers = Map<string /* target id */, Map<string /* author */, number>>

export function watch (f: Followers, target: SignedEvent): void {
  if (!f.has(target.idHex)) f.set(target.idHex, new Map([[target.authorHex, target.fields.seq]]))
}

/** How observeFollowers finds a parent: (author, seq) of a folded event, or undefined. */
export interface Locate { get (id: string): { author: string, seq: number } | undefined }

export function observeFollowers (f: Followers, e: SignedEvent, locate: Locate): boolean {
  if (f.size === 0) return false
  let changed = false
  for (const [target, first] of f) {
    if (first.has(e.authorHex)) continue
    for (const d of e.fields.deps) {
      const id = toHex(d)
      const at = id === target ? { author: '', seq: 0 } : locate.get(id)
      if (at === undefined) continue
      const s = id === target ? 0 : first.get(at.author)
      if (s !== undefined && s <= at.seq) {
        first.set(e.authorHex, e.fields.seq)
        changed = true
        break
      }
    }
  }
  return changed
}

export function cloneFollowers (f: Followers): Followers {
  const out: Followers = new Map()
  for (const [k, v] of f) out.set(k, new Map(v))
  return out
}

/** How many of `authors` have seen the target. */
export function countFollowing (f: Followers, target: string, authors: Iterable<string>): number {
  const first = f.get(target)
  if (first === undefined) return 0
  let n = 0
  for (const a of authors) if (first.has(a)) n++
  return n
}
