/**
 * Issue 16.2: the replica keeps an index snapshot (every event's header in one binary value,
 * src/log/index-snapshot.ts) beside its fold checkpoint, and a start reads it in one get plus the
 * order index after its last entry. A start with one must load the log and state a start
 * without one loads; a stale, damaged, foreign or forged one is refused with the reason and the
 * order index is read whole, as before.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join as joinPath } from 'node:path'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { Replica, type ReplicaOptions } from '../src/adapters/replica.js'
import { openLevel } from '../src/adapters/level-db.js'
import { replicaReducers, type ReplicaReducers } from '../src/projections/reducers.js'
import { compareEvents, signEvent, type EventFields, type SignedEvent } from '../src/log/event.js'
import { EventStore, type EventDb } from '../src/log/store.js'
import { encodeIndexSnapshot } from '../src/log/index-snapshot.js'
import { StoredEvent } from '../src/log/stored-event.js'
import { networkIdBytes } from '../src/log/token.js'
import { toHex } from '../src/log/bytes.js'
import { snapshotProblems } from '../src/cli/log-verify.js'
import { memoryDb, NET } from './support/fixtures.js'
import { LogBuilder, join, IDS } from './projections/support.js'
import { stateJson } from './crdt/helpers.js'

type Opts = Partial<ReplicaOptions<ReturnType<ReturnType<typeof replicaReducers>>>>

async function open (db: EventDb, opts: Opts = {}): Promise<Replica<ReplicaReducers>> {
  if (db.status === 'closed') await db.open()
  return await Replica.open({ db, net: NET, reducers: replicaReducers(), sync: false, checkpoint: { min: 1, every: Number.MAX_SAFE_INTEGER }, ...opts })
}

/** Everything a start must rebuild of the log: each event's header, the tips, the fork proofs. */
function logShape (r: Replica<ReplicaReducers>): string {
  const events = [...r.log.events()].sort(compareEvents).map((e) => {
    const f = e.fields
    return [e.idHex, e.authorHex, f.seq, f.lamport, f.time, f.type, f.prev === null ? null : toHex(f.prev), f.deps.map(toHex), r.log.isVisible(e)]
  })
  const forks = [...r.log.forks()].map(([a, p]) => [a, p.seq]).sort()
  return JSON.stringify({ events, frontier: [...r.log.frontier()].sort(), forks })
}

/** Log and state of a replica that never had a snapshot or a checkpoint. */
async function reference (events: readonly SignedEvent[]): Promise<{ log: string, state: string }> {
  const r = await open(memoryDb(), { checkpoint: false })
  const res = await r.ingest(events)
  expect(res.rejected).toEqual([])
  const out = { log: logShape(r), state: stateJson(r.states()) }
  await r.close()
  return out
}

/** A twin of `e`: same author and seq, other bytes (a fork). */
function twinOf (e: SignedEvent, author: number): SignedEvent {
  return signEvent({ ...e.fields, time: e.fields.time + 1 } as EventFields, IDS[author] as typeof IDS[0])
}

function network (): LogBuilder {
  const b = new LogBuilder(4)
  for (let a = 0; a < 4; a++) b.append(a, 'node.join', join(`h${a}`, 'alpha'), { seesAll: true })
  for (let r = 0; r < 3; r++) for (let a = 0; a < 4; a++) b.append(a, 'ip.claim', { addr: `10.1.${r}.${a + 1}` }, { seesAll: true })
  return b
}

/** A store holding network() after a clean stop (so its snapshot is complete), closed. */
async function storedNetwork (): Promise<{ b: LogBuilder, db: EventDb }> {
  const b = network()
  const db = memoryDb()
  const r = await open(db)
  await r.ingest(b.events)
  await r.close()
  return { b, db }
}

async function storedSnapshot (db: EventDb): Promise<Uint8Array> {
  const b = await new EventStore(db).getIndexSnapshot()
  if (b === undefined) throw new Error('no index snapshot stored')
  return b
}

describe('Replica index snapshot', () => {
  it('a clean restart reads the whole log from the snapshot, and it is the log and state of a start without one', async () => {
    const { b, db } = await storedNetwork()
    const again = await open(db)
    expect(again.indexStatus).toEqual({ restored: b.events.length })
    const ref = await reference(b.events)
    expect(logShape(again)).toBe(ref.log)
    expect(stateJson(again.states())).toBe(ref.state)
    // What it restored is usable: bodies are read back through the store, and it appends.
    expect([...again.log.events()].every((e) => e.fields.body !== undefined)).toBe(true)
    await again.close()
    const writer = await open(db, { signer: IDS[0] })
    expect(writer.indexStatus.restored).toBe(b.events.length)
    await writer.append('ip.claim', { addr: '10.1.99.1' }, 1_700_100_000)
    expect([...writer.states().network.ipam.leases.keys()]).toContain('10.1.99.1')
    await writer.close()
  })

  it('a start on LevelDB (values at any offset, read synchronously) restores the same log', async () => {
    const dir = await mkdtemp(joinPath(tmpdir(), 'weft-index-snapshot-'))
    try {
      const b = network()
      let db = await openLevel(dir)
      const r = await open(db)
      await r.ingest(b.events)
      await r.close()
      db = await openLevel(dir)
      const again = await open(db)
      expect(again.indexStatus).toEqual({ restored: b.events.length })
      expect(logShape(again)).toBe((await reference(b.events)).log)
      await again.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('property: after any history of writes, snapshots and stops, a start gives the log and state of a start without a snapshot', async () => {
    // One step: an author appends after learning what some others have seen (a partitioned
    // author's events get low lamports: they sort inside an earlier snapshot), or forks.
    const seen = { refused: 0, restoredWithTail: 0 }
    const step = fc.record({ author: fc.nat(3), sees: fc.oneof(fc.constant([]), fc.subarray([0, 1, 2, 3])), fork: fc.boolean() })
    await fc.assert(fc.asyncProperty(
      fc.array(step, { minLength: 1, maxLength: 24 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.constantFrom('kill', 'clean', 'stale-snapshot'),
      async (steps, cut1, cut2, end) => {
        const b = new LogBuilder(4)
        const events: SignedEvent[] = []
        for (const s of steps) {
          // Author 3 is partitioned: it never learns anything, so its events keep low lamports.
          const sees = s.author === 3 ? [] : s.sees
          const joined = b.events.some((e) => e.authorHex === b.hex(s.author))
          const e = joined
            ? b.append(s.author, 'ip.claim', { addr: `10.2.${events.length}.${s.author + 1}` }, { sees })
            : b.append(s.author, 'node.join', join(`h${s.author}`, 'alpha'), { sees })
          events.push(e)
          if (s.fork && joined) events.push(twinOf(e, s.author))
        }
        const k1 = Math.floor(cut1 * events.length)
        const k2 = k1 + Math.floor(cut2 * (events.length - k1))
        const db = memoryDb()
        const r = await open(db)
        await r.ingest(events.slice(0, k1))
        expect(await r.checkpoint()).toBe(true)
        const first = await storedSnapshot(db)
        await r.ingest(events.slice(k1, k2))
        expect(await r.checkpoint()).toBe(true)
        await r.ingest(events.slice(k2))
        let snapshotted = events.slice(0, k2)
        if (end === 'clean') {
          await r.close()
          snapshotted = events
        } else if (end === 'stale-snapshot') {
          // A snapshot older than the fold checkpoint, then a kill -9.
          await new EventStore(db).putIndexSnapshot(first)
          snapshotted = events.slice(0, k1)
        }
        const again = await open(db)
        const ref = await reference(events)
        expect(logShape(again)).toBe(ref.log)
        expect(stateJson(again.states())).toBe(ref.state)
        // The snapshot is used exactly when every later event sorts after its last one.
        const last = [...snapshotted].sort(compareEvents).at(-1)
        const fits = last === undefined || events.slice(snapshotted.length).every((e) => compareEvents(e, last) > 0)
        if (!fits) seen.refused++
        else if (snapshotted.length > 0 && snapshotted.length < events.length) seen.restoredWithTail++
        if (fits) expect(again.indexStatus).toEqual({ restored: snapshotted.length })
        else expect(again.indexStatus).toMatchObject({ restored: 0, refused: expect.stringMatching(/sort inside it|does not fit it/) })
        await again.close()
        // That start wrote a fresh one at its stop: the next reads it whole.
        const third = await open(db)
        expect(third.indexStatus).toEqual({ restored: events.length })
        expect(logShape(third)).toBe(ref.log)
        await third.close()
      }), {
      numRuns: 60,
      // Both paths, whatever the seed: everybody in sync (the events after it sort after it),
      // and a partitioned author joining after it (lamport 1: inside it).
      examples: [
        [[0, 1, 2, 0, 1, 2].map((author) => ({ author, sees: [0, 1, 2, 3], fork: false })), 0.5, 0, 'kill'],
        [[0, 1, 0, 1, 3].map((author) => ({ author, sees: [0, 1, 2, 3], fork: false })), 0.8, 0, 'kill']
      ]
    })
    // The generator reaches both paths: a snapshot read with the index after it, and refused.
    expect(seen.refused).toBeGreaterThan(0)
    expect(seen.restoredWithTail).toBeGreaterThan(0)
  }, 120_000)

  describe('adversarial: a snapshot that is not the store\'s is refused, and the start is a start without it', () => {
    async function withSnapshot (edit: (bytes: Uint8Array, events: SignedEvent[]) => Uint8Array): Promise<{ again: Replica<ReplicaReducers>, events: SignedEvent[] }> {
      const { b, db } = await storedNetwork()
      await db.open()
      await new EventStore(db).putIndexSnapshot(edit(await storedSnapshot(db), b.events))
      const again = await open(db)
      expect(logShape(again)).toBe((await reference(b.events)).log)
      expect(stateJson(again.states())).toBe((await reference(b.events)).state)
      return { again, events: b.events }
    }

    const sorted = (events: SignedEvent[]): SignedEvent[] => [...events].sort(compareEvents)

    it('a flipped bit (checksum)', async () => {
      const { again } = await withSnapshot((bytes) => { const c = new Uint8Array(bytes); c[200] = (c[200] as number) ^ 1; return c })
      expect(again.indexStatus).toMatchObject({ restored: 0, refused: expect.stringMatching(/checksum/) })
    })

    it('a truncated value', async () => {
      const { again } = await withSnapshot((bytes) => bytes.subarray(0, bytes.byteLength - 40))
      expect(again.indexStatus.refused).toMatch(/truncated/)
      const { again: tiny } = await withSnapshot((bytes) => bytes.subarray(0, 10))
      expect(tiny.indexStatus.refused).toMatch(/truncated/)
    })

    it('garbage, and another network\'s snapshot', async () => {
      const { again } = await withSnapshot(() => new TextEncoder().encode('x'.repeat(100)))
      expect(again.indexStatus.refused).toMatch(/not one/)
      const other = networkIdBytes({ secret: new Uint8Array(32).fill(9) })
      const { again: foreign } = await withSnapshot((_, events) => encodeIndexSnapshot(sorted(events), other))
      expect(foreign.indexStatus.refused).toMatch(/another network/)
    })

    it('a forged one (valid checksum) naming an event the store does not hold', async () => {
      // A fork twin the store never saw, inside the order: the store's tips of its author differ.
      const { again } = await withSnapshot((_, events) => encodeIndexSnapshot(sorted([...events, twinOf(events[5] as SignedEvent, 1)]), NET))
      expect(again.indexStatus.refused).toMatch(/differs from the snapshot/)
      expect(again.log.size).toBe(network().events.length)
      // An extra event at its end: its last entry is not in the order index.
      const b = network()
      const extra = b.append(2, 'ip.claim', { addr: '10.1.77.1' }, { seesAll: true })
      const { again: longer } = await withSnapshot((_, events) => encodeIndexSnapshot(sorted([...events, extra]), NET))
      expect(longer.indexStatus.refused).toMatch(/last event the order index does not hold/)
    })

    it('a forged one missing events, or out of order', async () => {
      // The store's newest events left out: the index after it brings them back.
      const { again } = await withSnapshot((_, events) => encodeIndexSnapshot(sorted(events).slice(0, 6), NET))
      expect(again.indexStatus).toEqual({ restored: 6 })
      // Events left out in the middle (their children kept, their parents lost): refused.
      const { again: holes } = await withSnapshot((_, events) => {
        const s = sorted(events)
        const bytes = encodeIndexSnapshot(s, NET)
        // Re-encode with two neighbours swapped: parents after children, or the order broken.
        const swapped = [...s]
        ;[swapped[7], swapped[8]] = [swapped[8] as SignedEvent, swapped[7] as SignedEvent]
        try { return encodeIndexSnapshot(swapped, NET) } catch { return bytes.subarray(0, 0) }
      })
      expect(holes.indexStatus.refused).toMatch(/order|before|truncated/)
    })
  })

  it('a forged header inside a feed (checksum made to match) is caught when the bytes are read, and by weft log verify', async () => {
    const { b, db } = await storedNetwork()
    await db.open()
    const store = new EventStore(db)
    expect(await snapshotProblems(store, NET, b.events)).toEqual([])
    const victim = sorted2(b.events)[6] as SignedEvent
    const forged = sorted2(b.events).map((e) => e === victim ? { ...e, idHex: e.idHex, authorHex: e.authorHex, fields: { ...e.fields, time: e.fields.time + 5 } } as SignedEvent : e)
    await store.putIndexSnapshot(encodeIndexSnapshot(forged, NET))
    // Its tips are the store's: the start takes it, as it takes an order index entry that lies.
    const again = await open(db)
    expect(again.indexStatus.restored).toBe(b.events.length)
    const held = again.log.get(victim.idHex) as SignedEvent
    expect(() => held.fields.body).toThrow(/does not match|ERR_STORE|store/)
    await again.close()
    await db.open()
    const found = await snapshotProblems(new EventStore(db), NET, b.events)
    expect(found).toEqual([{ id: victim.idHex, code: 'ERR_STORE', message: expect.stringMatching(/holds another seq, lamport, time or type/) }])
    // A damaged one is reported too (it is harmless: a start refuses it).
    const bytes = new Uint8Array(encodeIndexSnapshot(sorted2(b.events), NET))
    bytes[100] = (bytes[100] as number) ^ 0xff
    await new EventStore(db).putIndexSnapshot(bytes)
    expect(await snapshotProblems(new EventStore(db), NET, b.events)).toMatchObject([{ id: null, message: expect.stringMatching(/checksum/) }])
    await db.close()
  })

  it('a snapshot of the log as held (StoredEvent headers) is the snapshot of the whole events', async () => {
    const b = network()
    const db = memoryDb()
    const r = await open(db)
    await r.ingest(b.events)
    const held = sorted2([...r.log.events()])
    expect(held.every((e) => e instanceof StoredEvent)).toBe(true)
    expect(encodeIndexSnapshot(held, NET)).toEqual(encodeIndexSnapshot(sorted2(b.events), NET))
    await r.close()
  })
})

function sorted2 (events: SignedEvent[]): SignedEvent[] { return [...events].sort(compareEvents) }
