import { describe, expect, it } from 'vitest'
import { FoldEngine } from '../../src/crdt/fold.js'
import { compareEvents, type SignedEvent } from '../../src/log/event.js'
import { IDS, foldReducers, joinBody, mk, rng, shuffle, stateJson } from './helpers.js'

/**
 * Events for the fold only (the engine does not validate): seq-1 events of several authors at
 * chosen lamports, of the membership types, so both the order-sensitive trace and the members
 * reducer see real changes.
 */
function events (n: number, seed = 1): SignedEvent[] {
  const r = rng(seed)
  const out: SignedEvent[] = []
  for (let i = 0; i < n; i++) {
    const who = IDS[Math.floor(r() * 5)] as typeof IDS[0]
    const lamport = 1 + Math.floor(r() * n)
    const k = r()
    const target = IDS[Math.floor(r() * 5)] as typeof IDS[0]
    const e = k < 0.45
      ? mk(who, { lamport, type: 'node.join', body: joinBody(`h${i}`, i % 2 === 0 ? 'default' : 'edge'), time: i })
      : k < 0.6
        ? mk(who, { lamport, type: 'node.leave', body: { reason: `r${i}` }, time: i })
        : k < 0.8
          ? mk(who, { lamport, type: 'role.claim', body: { cluster: 'default', role: 'master' }, time: i })
          : mk(who, { lamport, type: 'node.evict', body: { peer: target.publicKey, reason: `e${i}` }, time: i })
    out.push(e)
  }
  return out
}

function fresh (evs: readonly SignedEvent[]): FoldEngine<typeof foldReducers> {
  const f = new FoldEngine(foldReducers)
  f.insert(evs)
  return f
}

const json = (f: FoldEngine<typeof foldReducers>): string => stateJson(f.states())

describe('FoldEngine', () => {
  const all = events(120)
  const sorted = [...all].sort(compareEvents)

  it('folds in the total order, whatever the insertion order', () => {
    const f = fresh(shuffle(all, rng(5)))
    expect(f.events().map((e) => e.idHex)).toEqual(sorted.map((e) => e.idHex))
    expect(f.states().trace.seen).toEqual(sorted.map((e, i) => `${i}:${e.idHex.slice(0, 16)}`))
    expect(f.states().members.active.size).toBeGreaterThan(0)
  })

  it('incremental appends equal a full refold and never refold', () => {
    const f = new FoldEngine(foldReducers, { checkpointEvery: 8 })
    for (let i = 0; i < sorted.length; i += 3) f.insert(sorted.slice(i, i + 3))
    expect(f.stats.refolds).toBe(0)
    expect(f.stats.checkpoints).toBeGreaterThan(0)
    expect(json(f)).toBe(json(fresh(all)))
  })

  it('an earlier event refolds from the nearest checkpoint and equals a fresh fold', () => {
    const late = sorted[70] as SignedEvent
    const rest = sorted.filter((e) => e !== late)
    // Room for every checkpoint (15), so none is thinned: the nearest one is 8 back at most.
    const f = new FoldEngine(foldReducers, { checkpointEvery: 8, maxCheckpoints: 16 })
    f.insert(rest)
    expect(f.stats.refolds).toBe(0)
    f.insert([late])
    expect(f.stats.refolds).toBe(1)
    // Position 70 has a checkpoint at or below it no further than 8 back: at most 8 + 50 events refolded.
    expect(f.stats.refoldedEvents).toBeLessThanOrEqual(120 - 64)
    expect(f.stats.refoldedEvents).toBeGreaterThanOrEqual(120 - 70)
    expect(json(f)).toBe(json(fresh(all)))
    // An event at the very start refolds from nothing.
    const first = sorted[0] as SignedEvent
    const g = new FoldEngine(foldReducers, { checkpointEvery: 8 })
    g.insert(sorted.slice(1))
    g.insert([first])
    expect(g.stats.refoldedEvents).toBe(120)
    expect(json(g)).toBe(json(fresh(all)))
  })

  it('remove() drops events and equals a fresh fold of the rest', () => {
    const who = IDS[2] as typeof IDS[0]
    const drop = (e: SignedEvent): boolean => e.authorHex === who.authorHex && e.fields.lamport >= 40
    const f = new FoldEngine(foldReducers, { checkpointEvery: 4 })
    f.insert(all)
    const expected = all.filter((e) => !drop(e))
    const removed = f.remove(drop)
    expect(removed).toBe(all.length - expected.length)
    expect(removed).toBeGreaterThan(0)
    expect(f.length).toBe(expected.length)
    expect(json(f)).toBe(json(fresh(expected)))
    expect(f.remove(drop)).toBe(0)
    expect(json(f)).toBe(json(fresh(expected)))
  })

  it('statesAfter(n) equals a fresh fold of the first n, and leaves the live state alone', () => {
    const f = new FoldEngine(foldReducers, { checkpointEvery: 4, maxCheckpoints: 6 })
    f.insert(all)
    const live = json(f)
    for (let n = 0; n <= sorted.length; n += 7) {
      expect(stateJson(f.statesAfter(n))).toBe(json(fresh(sorted.slice(0, n))))
    }
    expect(stateJson(f.statesAfter(sorted.length))).toBe(live)
    expect(stateJson(f.statesAfter(10_000))).toBe(live)
    expect(stateJson(f.statesAfter(-3))).toBe(json(fresh([])))
    expect(json(f)).toBe(live)
    // Mutating a returned state must not leak into the engine.
    f.statesAfter(50).members.active.clear()
    expect(stateJson(f.statesAfter(50))).toBe(json(fresh(sorted.slice(0, 50))))
  })

  it('countThrough and countAtLamport locate positions in the view', () => {
    const f = fresh(all)
    expect(f.countThrough((sorted[9] as SignedEvent).idHex)).toBe(10)
    expect(f.countThrough('nope')).toBe(-1)
    const l = (sorted[60] as SignedEvent).fields.lamport
    expect(f.countAtLamport(l)).toBe(sorted.filter((e) => e.fields.lamport <= l).length)
    expect(f.countAtLamport(0)).toBe(0)
  })

  it('checkpoint thinning keeps the count bounded and the results equal', () => {
    const f = new FoldEngine(foldReducers, { checkpointEvery: 2, maxCheckpoints: 4 })
    const r = rng(11)
    const order = shuffle(all, r)
    let inView: SignedEvent[] = []
    for (let i = 0; i < order.length;) {
      const k = 1 + Math.floor(r() * 6)
      const batch = order.slice(i, i + k)
      i += k
      f.insert(batch)
      inView.push(...batch)
      expect(f.stats.checkpoints).toBeLessThanOrEqual(4)
      if (r() < 0.15) {
        const victim = IDS[Math.floor(r() * 5)] as typeof IDS[0]
        const cut = Math.floor(r() * 120)
        const drop = (e: SignedEvent): boolean => e.authorHex === victim.authorHex && e.fields.lamport > cut
        f.remove(drop)
        inView = inView.filter((e) => !drop(e))
      }
      expect(json(f)).toBe(json(fresh(inView)))
      const n = Math.floor(r() * (inView.length + 1))
      expect(stateJson(f.statesAfter(n))).toBe(json(fresh([...inView].sort(compareEvents).slice(0, n))))
    }
    expect(f.stats.refolds).toBeGreaterThan(0)
  })

  it('a late event near the end refolds from a recent checkpoint, however long the log; the count stays bounded', () => {
    const every = 4
    const f = new FoldEngine(foldReducers, { checkpointEvery: every })
    const log: SignedEvent[] = []
    const r = rng(5)
    for (let i = 0; i < 600; i++) {
      const who = IDS[i % 5] as typeof IDS[0]
      log.push(mk(who, { lamport: 2 * (i + 1), type: 'node.join', body: joinBody(`n${i}`, 'default'), time: i }))
    }
    for (let i = 0; i < log.length;) {
      const k = 1 + Math.floor(r() * 9)
      f.insert(log.slice(i, i + k))
      i += k
      expect(f.stats.checkpoints).toBeLessThanOrEqual(6)
    }
    // Sorts between the last two events: an event from a concurrent author, the usual late one.
    const late = mk(IDS[6] as typeof IDS[0], { lamport: 2 * 600 - 1, type: 'node.join', body: joinBody('late', 'default'), time: 601 })
    const before = f.stats.refoldedEvents
    f.insert([late])
    // From the newest checkpoints, not from a spacing grown with the log (it used to double).
    expect(f.stats.refoldedEvents - before).toBeLessThanOrEqual(3 * every + 2)
    expect(json(f)).toBe(json(fresh([...log, late])))
    // One that sorts far back still folds right, from an older checkpoint.
    const old = mk(IDS[7] as typeof IDS[0], { lamport: 41, type: 'node.join', body: joinBody('old', 'edge'), time: 602 })
    f.insert([old])
    expect(json(f)).toBe(json(fresh([...log, late, old])))
    expect(f.stats.checkpoints).toBeLessThanOrEqual(6)
  })

  it('maxCheckpoints 1 keeps one checkpoint (shrunk from the fold property: inserts, then a removal)', () => {
    const f = new FoldEngine(foldReducers, { checkpointEvery: 1, maxCheckpoints: 1 })
    const evs = sorted.slice(0, 3)
    f.insert(evs.slice(0, 2))
    f.insert(evs.slice(2))
    expect(f.stats.checkpoints).toBeLessThanOrEqual(1)
    const who = (evs[0] as SignedEvent).authorHex
    f.remove((e) => e.authorHex === who)
    expect(f.stats.checkpoints).toBeLessThanOrEqual(1)
    expect(json(f)).toBe(json(fresh(evs.filter((e) => e.authorHex !== who))))
  })
})
