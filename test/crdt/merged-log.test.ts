import { describe, expect, it } from 'vitest'
import { decodeFrontier, encodeFrontier } from '../../src/crdt/frontier.js'
import type { SignedEvent } from '../../src/log/event.js'
import { IDS, chain, envelopes, frontierHex, idSet, mk, newLog, nextEvent, joinBody, shuffle, rng, syncPair } from './helpers.js'

const [A, B, C] = IDS as [typeof IDS[0], typeof IDS[0], typeof IDS[0]]

describe('MergedLog pending buffer', () => {
  it('parks a child that arrives before its parent and releases it, parents first', () => {
    const [e1, e2, e3] = chain(A, 3) as [SignedEvent, SignedEvent, SignedEvent]
    const log = newLog()
    const r1 = log.ingest([e3.envelope])
    expect(r1).toMatchObject({ added: [], parked: 1, duplicates: 0, dropped: 0, rejected: [] })
    expect(log.size).toBe(0)
    expect(log.pendingCount).toBe(1)
    expect(log.has(e3.idHex)).toBe(false)
    expect(log.wantedParents()).toEqual([e2.idHex])
    expect(log.frontier().size).toBe(0)

    const r2 = log.ingest([e2.envelope])
    expect(r2.parked).toBe(1)
    expect(log.wantedParents()).toEqual([e1.idHex])

    const r3 = log.ingest([e1.envelope])
    expect(r3.added.map((e) => e.idHex)).toEqual([e1.idHex, e2.idHex, e3.idHex])
    expect(log.pendingCount).toBe(0)
    expect(log.wantedParents()).toEqual([])
    expect(log.frontier().get(A.authorHex)).toEqual({ seq: 3, head: e3.idHex, forks: [] })
  })

  it('orders a reversed batch with cross-author deps parents first', () => {
    const a = chain(A, 4)
    const b1 = mk(B, { deps: [a[3] as SignedEvent] })
    const b2 = mk(B, { prev: b1, deps: [] })
    const all = [...a, b1, b2]
    const log = newLog()
    const res = log.ingest(envelopes([...all].reverse()))
    expect(res.rejected).toEqual([])
    expect(res.added).toHaveLength(all.length)
    const pos = new Map(res.added.map((e, i) => [e.idHex, i]))
    for (const e of res.added) {
      for (const p of [e.fields.prev, ...e.fields.deps]) {
        if (p === null) continue
        const pid = Buffer.from(p).toString('hex')
        expect(pos.get(pid)).toBeLessThan(pos.get(e.idHex) as number)
      }
    }
    expect(log.pendingCount).toBe(0)
  })

  it('bounds the pending buffer, evicting the oldest parked events and counting them', () => {
    // Five orphans of five different feeds, each missing its own parent.
    const parents: SignedEvent[] = []
    const orphans: SignedEvent[] = []
    for (let i = 0; i < 5; i++) {
      const [p, c] = chain(IDS[i] as typeof A, 2) as [SignedEvent, SignedEvent]
      parents.push(p)
      orphans.push(c)
    }
    const log = newLog({ maxPending: 3 })
    const res = log.ingest(envelopes(orphans))
    expect(res.parked).toBe(5)
    expect(res.dropped).toBe(2)
    expect(log.pendingCount).toBe(3)
    // Only parents of events still parked are wanted: the index of missing parents is bounded too.
    expect(log.wantedParents().sort()).toEqual(parents.slice(2).map((p) => p.idHex).sort())

    const back = log.ingest(envelopes(parents))
    // The two oldest orphans were evicted: their parents come in alone; the three newest follow theirs.
    expect(back.added.map((e) => e.idHex).sort()).toEqual([...parents, ...orphans.slice(2)].map((e) => e.idHex).sort())
    expect(log.pendingCount).toBe(0)
    for (const o of orphans.slice(0, 2)) expect(log.has(o.idHex)).toBe(false)
    // An evicted event is not remembered as seen: sent again, it is accepted.
    expect(log.ingest(envelopes(orphans.slice(0, 2))).added).toHaveLength(2)
  })

  it('keeps the missing-parent index bounded when a peer floods orphans', () => {
    const log = newLog({ maxPending: 4 })
    for (let i = 0; i < 50; i++) {
      const [, c] = chain(IDS[i % 8] as typeof A, 2, null, 'x'.repeat(i + 1)) as [SignedEvent, SignedEvent]
      log.ingest([c.envelope])
    }
    expect(log.pendingCount).toBe(4)
    expect(log.wantedParents(10_000).length).toBeLessThanOrEqual(4)
  })

  it('rejects every parked descendant of an event that turns out invalid', () => {
    const base = mk(A, {})
    const bad = mk(A, { prev: base, lamport: 7 }) // should be 2
    const child = mk(A, { prev: bad })
    const grandchild = mk(A, { prev: child })
    const other = mk(B, { deps: [bad] })
    const otherNext = mk(B, { prev: other })
    const log = newLog()
    expect(log.ingest(envelopes([grandchild, otherNext, child, other])).parked).toBe(4)
    const res = log.ingest(envelopes([base, bad]))
    expect(res.added.map((e) => e.idHex)).toEqual([base.idHex])
    const byId = new Map(res.rejected.map((r) => [r.id, r.code]))
    expect(byId.get(bad.idHex)).toBe('ERR_BAD_LAMPORT')
    for (const d of [child, grandchild, other, otherNext]) expect(byId.get(d.idHex)).toBe('ERR_BAD_DEP')
    expect(res.rejected).toHaveLength(5)
    expect(log.pendingCount).toBe(0)
    expect(log.wantedParents()).toEqual([])
    expect(log.size).toBe(1)
    expect(log.frontier().has(B.authorHex)).toBe(false)
  })
})

describe('MergedLog causal rules', () => {
  function expectRejected (log: ReturnType<typeof newLog>, ev: SignedEvent, code: string): void {
    const before = frontierHex(log)
    const size = log.size
    const res = log.ingest([ev.envelope])
    expect(res.added).toEqual([])
    expect(res.rejected).toEqual([expect.objectContaining({ index: 0, id: ev.idHex, code })])
    expect(log.has(ev.idHex)).toBe(false)
    expect(log.size).toBe(size)
    expect(frontierHex(log)).toBe(before)
    expect(log.pendingCount).toBe(0)
    // Rejection is stable: sending it again gives the same answer, not "duplicate".
    expect(log.ingest([ev.envelope]).rejected.map((r) => r.code)).toEqual([code])
  }

  it('ERR_BAD_PREV: prev by another author', () => {
    const a1 = mk(A, {})
    const b1 = mk(B, {})
    const log = newLog()
    log.ingest(envelopes([a1, b1]))
    expectRejected(log, mk(A, { seq: 2, prev: b1 }), 'ERR_BAD_PREV')
  })

  it('ERR_BAD_PREV: prev is the own event but not at seq - 1', () => {
    const [a1, a2] = chain(A, 2) as [SignedEvent, SignedEvent]
    const log = newLog()
    log.ingest(envelopes([a1, a2]))
    expectRejected(log, mk(A, { seq: 4, prev: a2, lamport: 4 }), 'ERR_BAD_PREV')
    expectRejected(log, mk(A, { seq: 3, prev: a1, lamport: 3 }), 'ERR_BAD_PREV')
  })

  it('ERR_BAD_DEP: a dep naming the own feed', () => {
    const [a1, a2] = chain(A, 2) as [SignedEvent, SignedEvent]
    const log = newLog()
    log.ingest(envelopes([a1, a2]))
    expectRejected(log, mk(A, { prev: a2, deps: [a1] }), 'ERR_BAD_DEP')
  })

  it('ERR_BAD_LAMPORT: inflated, and too low for a dep', () => {
    const b = chain(B, 5)
    const a1 = mk(A, {})
    const log = newLog()
    log.ingest(envelopes([...b, a1]))
    expectRejected(log, mk(A, { prev: a1, lamport: 3 }), 'ERR_BAD_LAMPORT')
    expectRejected(log, mk(A, { prev: a1, lamport: 1_000_000 }), 'ERR_BAD_LAMPORT')
    // Right for prev (2) but b[4] has lamport 5: must be 6.
    expectRejected(log, mk(A, { prev: a1, deps: [b[4] as SignedEvent], lamport: 5 }), 'ERR_BAD_LAMPORT')
    expectRejected(log, mk(A, { deps: [b[4] as SignedEvent], lamport: 2 }), 'ERR_BAD_LAMPORT')
    const ok = mk(A, { prev: a1, deps: [b[4] as SignedEvent] })
    expect(ok.fields.lamport).toBe(6)
    expect(log.ingest([ok.envelope]).added).toHaveLength(1)
  })

  it('a rejected causal check found after parking is reported with its own code', () => {
    const a1 = mk(A, {})
    const inflated = mk(A, { prev: a1, lamport: 9 })
    const log = newLog()
    expect(log.ingest([inflated.envelope]).parked).toBe(1)
    const res = log.ingest([a1.envelope])
    expect(res.rejected).toEqual([expect.objectContaining({ id: inflated.idHex, code: 'ERR_BAD_LAMPORT' })])
    expect(log.has(inflated.idHex)).toBe(false)
    expect(log.pendingCount).toBe(0)
  })
})

describe('MergedLog idempotence and order independence', () => {
  it('duplicate ingest changes nothing and is counted', () => {
    const a = chain(A, 3)
    const b = [mk(B, { deps: [a[2] as SignedEvent] })]
    const log = newLog()
    const first = log.ingest(envelopes([...a, ...b, a[0] as SignedEvent]))
    expect(first.added).toHaveLength(4)
    expect(first.duplicates).toBe(1)
    const fr = frontierHex(log)
    const again = log.ingest(envelopes([...b, ...a]))
    expect(again).toMatchObject({ added: [], duplicates: 4, parked: 0, rejected: [], forks: [] })
    expect(frontierHex(log)).toBe(fr)
    expect(log.size).toBe(4)
    // A parked event sent again is a duplicate too, not parked twice.
    const orphan = chain(C, 2)[1] as SignedEvent
    expect(log.ingest([orphan.envelope]).parked).toBe(1)
    expect(log.ingest([orphan.envelope])).toMatchObject({ parked: 0, duplicates: 1 })
    expect(log.pendingCount).toBe(1)
  })

  it('any delivery order gives the same log and frontier', () => {
    const log0 = newLog()
    for (let i = 0; i < 30; i++) {
      const who = IDS[i % 3] as typeof A
      log0.ingest([nextEvent(log0, who, 'node.join', joinBody(`h${i}`), i).envelope])
    }
    const all = [...log0.events()]
    for (let s = 1; s <= 5; s++) {
      const log = newLog()
      for (const e of shuffle(all, rng(s))) log.ingest([e.envelope])
      expect(idSet(log)).toEqual(idSet(log0))
      expect(frontierHex(log)).toBe(frontierHex(log0))
    }
  })
})

describe('frontier and anti-entropy', () => {
  function busyLog (authors: number, perAuthor: number): ReturnType<typeof newLog> {
    const log = newLog()
    for (let i = 0; i < authors * perAuthor; i++) {
      log.ingest([nextEvent(log, IDS[i % authors] as typeof A, 'ip.claim', { addr: `10.9.${i % 250}.1` }, i).envelope])
    }
    return log
  }

  it('encodeFrontier/decodeFrontier round trip in < 100 bytes per author', () => {
    const log = busyLog(8, 5)
    const f = log.frontier()
    expect(f.size).toBe(8)
    const bytes = encodeFrontier(f)
    expect(decodeFrontier(bytes)).toEqual(f)
    expect(bytes.byteLength / f.size).toBeLessThan(100)
    // Forked entries round trip too.
    const withFork = new Map(f)
    const e = [...f.values()][0] as { seq: number, head: string, forks: string[] }
    withFork.set([...f.keys()][0] as string, { ...e, forks: ['ab'.repeat(32), 'cd'.repeat(32)] })
    expect(decodeFrontier(encodeFrontier(withFork))).toEqual(withFork)
  })

  it('decodeFrontier refuses malformed input', () => {
    for (const bad of [new Uint8Array([0xff]), encodeFrontier(new Map()).subarray(0, 0)]) {
      expect(() => decodeFrontier(bad)).toThrow()
    }
    const f = busyLog(2, 1).frontier()
    const enc = encodeFrontier(f)
    expect(() => decodeFrontier(enc, 1)).toThrow(expect.objectContaining({ code: 'ERR_BAD_INPUT' }))
  })

  it('missingFor is empty when in sync, both ways', () => {
    const a = busyLog(3, 10)
    const b = newLog()
    b.ingest(envelopes([...a.events()]))
    expect(a.missingFor(b.frontier())).toEqual([])
    expect(b.missingFor(a.frontier())).toEqual([])
    // The frontier is what crosses the wire: decoded, it still says "in sync".
    expect(a.missingFor(decodeFrontier(encodeFrontier(b.frontier())))).toEqual([])
  })

  it('missingFor with a limit yields parents-first batches the remote ingests with nothing parked', () => {
    const a = busyLog(4, 15)
    for (const head of [0, 7]) {
      const b = newLog()
      // b already holds the first `head` events of every feed.
      b.ingest(envelopes([...a.events()].filter((e) => e.fields.seq <= head)))
      let batches = 0
      for (;;) {
        const batch = a.missingFor(b.frontier(), 7)
        if (batch.length === 0) break
        expect(batch.length).toBeLessThanOrEqual(7)
        const res = b.ingest(envelopes(batch))
        expect(res).toMatchObject({ parked: 0, duplicates: 0, rejected: [] })
        expect(res.added).toHaveLength(batch.length)
        batches++
      }
      expect(batches).toBe(Math.ceil((60 - 4 * head) / 7))
      expect(idSet(b)).toEqual(idSet(a))
      expect(frontierHex(b)).toBe(frontierHex(a))
    }
  })

  it('wantedParents + getWithAncestors heal a gap', () => {
    const a = chain(A, 40)
    const full = newLog()
    full.ingest(envelopes(a))
    const gap = newLog()
    gap.ingest(envelopes(a.slice(0, 3)))
    // Gossip delivered only the newest event.
    expect(gap.ingest([(a[39] as SignedEvent).envelope]).parked).toBe(1)
    expect(gap.wantedParents()).toEqual([(a[38] as SignedEvent).idHex])

    const got = full.getWithAncestors([(a[38] as SignedEvent).idHex], 3)
    expect(got.map((e) => e.fields.seq)).toEqual([36, 37, 38, 39])
    expect(full.getWithAncestors([(a[38] as SignedEvent).idHex], 10, 4).map((e) => e.fields.seq)).toEqual([29, 30, 31, 32])

    let rounds = 0
    while (gap.wantedParents().length > 0) {
      gap.ingest(envelopes(full.getWithAncestors(gap.wantedParents(), 15)))
      rounds++
      expect(rounds).toBeLessThan(10)
    }
    expect(rounds).toBe(3) // 36 missing events, 16 per answer
    expect(gap.pendingCount).toBe(0)
    expect(idSet(gap)).toEqual(idSet(full))
  })

  it('syncPair converges two diverged logs and then one round suffices', () => {
    const a = newLog()
    const b = newLog()
    for (let i = 0; i < 20; i++) {
      a.ingest([nextEvent(a, A, 'ip.claim', { addr: `10.1.0.${i}` }).envelope])
      b.ingest([nextEvent(b, B, 'ip.claim', { addr: `10.2.0.${i}` }).envelope])
      if (i % 7 === 0) syncPair(a, b)
    }
    syncPair(a, b)
    expect(idSet(a)).toEqual(idSet(b))
    expect(syncPair(a, b)).toBe(1)
  })

  it('unknown event ids are simply absent from getWithAncestors', () => {
    const log = newLog()
    expect(log.getWithAncestors(['00'.repeat(32)], 5)).toEqual([])
  })
})
