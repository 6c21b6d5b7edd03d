import { describe, expect, it } from 'vitest'
import { compareEvents, type SignedEvent } from '../../src/log/event.js'
import { IDS, NET, chain, frontierHex, idSet, mk, newLog } from './helpers.js'
import { decodeIndexSnapshot, encodeIndexSnapshot, snapshotEvents } from '../../src/log/index-snapshot.js'
import type { StoredEvent } from '../../src/log/stored-event.js'

/**
 * MergedLog.restore: what a replica reads back from its own store (parents first) gives the same
 * log as validated ingest, forks included, and a store that lost a parent is refused.
 */
describe('MergedLog.restore', () => {
  const a = IDS[0] as typeof IDS[0]
  const b = IDS[1] as typeof IDS[1]
  const feedA = chain(a, 5)
  const feedB = chain(b, 3, null, 'b')
  const joined = mk(b, { prev: feedB[2] as SignedEvent, deps: [feedA[4] as SignedEvent] })
  // A twin of a's last event: a fork at seq 5.
  const twin = mk(a, { prev: feedA[3] as SignedEvent, time: 42 })
  const all = [...feedA, ...feedB, joined, twin].sort(compareEvents)

  it('equals ingest: same events, frontier and fork proofs', () => {
    const ingested = newLog()
    const res = ingested.ingest(all)
    expect(res.rejected).toEqual([])
    const restored = newLog()
    const forks = restored.restore(all)
    expect(idSet(restored)).toEqual(idSet(ingested))
    expect(frontierHex(restored)).toBe(frontierHex(ingested))
    expect(forks.map((f) => f.authorHex)).toEqual([a.authorHex])
    expect(restored.freezeSeq(a.authorHex)).toBe(5)
    // The last event of the total order's lamport, kept as events arrive (GET /state's "at").
    expect(restored.maxLamport).toBe(Math.max(...all.map((e) => e.fields.lamport)))
    expect(ingested.maxLamport).toBe(restored.maxLamport)
    expect(newLog().maxLamport).toBe(0)
    // Idempotent, like ingest.
    restored.restore(all)
    expect(restored.size).toBe(all.length)
  })

  it('refuses a store that lost a parent (ERR_STORE), naming the event', () => {
    const damaged = all.filter((e) => e.idHex !== (feedA[2] as SignedEvent).idHex)
    expect(() => newLog().restore(damaged)).toThrow(expect.objectContaining({ code: 'ERR_STORE', message: expect.stringMatching(/not stored before it/) }))
  })
})

/** MergedLog.restoreStored: headers already linked (an index snapshot) give the log restore gives. */
describe('MergedLog.restoreStored', () => {
  const a = IDS[0] as typeof IDS[0]
  const b = IDS[1] as typeof IDS[1]
  const feedA = chain(a, 4)
  const twin = mk(a, { prev: feedA[2] as SignedEvent, time: 42 })
  const joined = mk(b, { deps: [feedA[3] as SignedEvent] })
  const all = [...feedA, twin, joined].sort(compareEvents)
  const source = { net: NET, envelope: (): never => { throw new Error('not read') }, decoded: (): never => { throw new Error('not read') } }
  const linked = (): StoredEvent[] => snapshotEvents(decodeIndexSnapshot(encodeIndexSnapshot(all, NET)), source)

  it('equals restore: same events, frontier and fork proofs', () => {
    const restored = newLog()
    restored.restore(all)
    const fromSnapshot = newLog()
    const forks = fromSnapshot.restoreStored(linked())
    expect(idSet(fromSnapshot)).toEqual(idSet(restored))
    expect(frontierHex(fromSnapshot)).toBe(frontierHex(restored))
    expect(forks.map((f) => f.authorHex)).toEqual([a.authorHex])
    expect(fromSnapshot.maxLamport).toBe(restored.maxLamport)
  })

  it('refuses events whose parent object is not held, or one restored twice (ERR_STORE)', () => {
    const events = linked()
    expect(() => newLog().restoreStored(events.slice(1))).toThrow(expect.objectContaining({ code: 'ERR_STORE', message: expect.stringMatching(/parent that is not held/) }))
    const log = newLog()
    log.restoreStored(events)
    expect(() => log.restoreStored(events.slice(0, 1))).toThrow(expect.objectContaining({ code: 'ERR_STORE', message: expect.stringMatching(/restored twice/) }))
  })
})
