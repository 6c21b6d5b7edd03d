/**
 * Issue 16.2: a replica keeps only event headers in memory; bytes and bodies stay in the store
 * (src/adapters/event-shelf.ts), and a start reads the order index, not the envelopes. What a
 * damaged store breaks is still found: a body whose bytes no longer match its id or its indexed
 * header is an ERR_STORE when read, never a silently different event.
 */
import { describe, expect, it } from 'vitest'
import { Replica } from '../src/adapters/replica.js'
import { replicaReducers, type ReplicaReducers } from '../src/projections/reducers.js'
import { EventStore, type EventDb } from '../src/log/store.js'
import { StoredEvent } from '../src/log/stored-event.js'
import { isWeftError } from '../src/log/errors.js'
import { memoryDb, NET } from './support/fixtures.js'
import { LogBuilder, join } from './projections/support.js'
import { stateJson } from './crdt/helpers.js'

async function open (db: EventDb, checkpoint = false): Promise<Replica<ReplicaReducers>> {
  if (db.status === 'closed') await db.open()
  return await Replica.open({ db, net: NET, reducers: replicaReducers(), sync: false, checkpoint: checkpoint ? { min: 1 } : false })
}

function network (): LogBuilder {
  const b = new LogBuilder(3)
  for (let a = 0; a < 3; a++) b.append(a, 'node.join', join(`h${a}`, 'alpha'), { seesAll: true })
  for (let r = 0; r < 5; r++) for (let a = 0; a < 3; a++) b.append(a, 'ip.claim', { addr: `10.2.${r}.${a + 1}` }, { seesAll: true })
  return b
}

/** A store holding the network's events, written and closed; and the writer's state. */
async function written (): Promise<{ db: EventDb, events: ReturnType<typeof network>['events'], state: string }> {
  const events = network().events
  const db = memoryDb()
  const w = await open(db)
  await w.ingest(events)
  const state = stateJson(w.states())
  await w.close()
  return { db, events, state }
}

describe('events on the shelf', () => {
  it('accepted events are held as headers; their bytes and bodies read back equal the originals, and nothing stays held', async () => {
    const events = network().events
    const r = await open(memoryDb())
    await r.ingest(events)
    expect(r.shelf.heldCount).toBe(0)
    for (const e of events) {
      const kept = r.log.get(e.idHex)
      expect(kept).toBeInstanceOf(StoredEvent)
      expect(Buffer.from(kept!.envelope).equals(Buffer.from(e.envelope))).toBe(true)
      expect(Buffer.from(kept!.bytes).equals(Buffer.from(e.bytes))).toBe(true)
      expect(Buffer.from(kept!.sig).equals(Buffer.from(e.sig))).toBe(true)
      expect(kept!.fields.body).toEqual(e.fields.body)
      expect(kept!.fields.lamport).toBe(e.fields.lamport)
    }
    await r.close()
  })

  it('a restart reads headers from the order index and folds to the same state as the writer', async () => {
    const { db, events, state } = await written()
    const r = await open(db)
    expect(stateJson(r.states())).toBe(state)
    expect(r.log.size).toBe(events.length)
    await r.close()
  })

  it('events handed over from another replica (StoredEvents) stay readable after that replica closes', async () => {
    const events = network().events
    const a = await open(memoryDb())
    await a.ingest(events)
    const b = await open(memoryDb())
    await b.ingest(a.missingFor(new Map()))
    const state = stateJson(a.states())
    await a.close()
    expect(stateJson(b.states())).toBe(state)
    for (const e of events) expect(b.log.get(e.idHex)!.fields.body).toEqual(e.fields.body)
    await b.close()
  })

  it('decoded bodies are bounded: at most DECODED_EVENTS_KEPT, however many events are read', async () => {
    const { EventShelf } = await import('../src/adapters/event-shelf.js')
    const events = network().events
    const db = memoryDb()
    const w = await open(db)
    await w.ingest(events)
    const shelf = new EventShelf(new EventStore(db), NET, 4)
    for (const e of events) shelf.decoded(e.idHex, w.log.get(e.idHex)!.fields)
    expect(shelf.decodedCount).toBe(4)
    await w.close()
  })

  it('an older store (empty order index values) loads from its envelopes and gets the headers written once', async () => {
    const { db, state } = await written()
    await db.open()
    const keys: string[] = []
    for await (const k of db.keys({ gt: 'o!', lt: 'o"' })) keys.push(k as string)
    await db.batch(keys.map((key) => ({ type: 'put' as const, key, value: new Uint8Array(0) })))
    const r = await open(db)
    expect(stateJson(r.states())).toBe(state)
    await r.close()
    await db.open()
    for await (const v of db.values({ gt: 'o!', lt: 'o"' })) expect((v as Uint8Array).byteLength).toBeGreaterThan(0)
    await db.close()
  })

  it('an envelope swapped under another id, or an index header that lies, stops the start with ERR_STORE', async () => {
    const events = network().events
    const damaged = async (damage: (db: EventDb) => Promise<void>): Promise<unknown> => {
      const { db } = await written()
      await db.open()
      await damage(db)
      try { await open(db) } catch (e) { return e }
      return undefined
    }
    const [a, b] = events.slice(-2) as [typeof events[0], typeof events[0]]
    const swapped = await damaged(async (db) => {
      await db.batch([{ type: 'put', key: `e!${a.idHex}`, value: b.envelope }, { type: 'put', key: `e!${b.idHex}`, value: a.envelope }])
    })
    expect(isWeftError(swapped, 'ERR_STORE')).toBe(true)
    expect((swapped as Error).message).toMatch(/hashes to something else/)
    // The index names the right id, but its header says another time than the bytes.
    const lying = await damaged(async (db) => {
      const key = EventStore.keyOf(a).order
      const { canonicalEncode } = await import('../src/log/cbor.js')
      await db.put(key, canonicalEncode([a.fields.prev, a.fields.deps, a.fields.time + 1, a.fields.type]))
    })
    expect(isWeftError(lying, 'ERR_STORE')).toBe(true)
    expect((lying as Error).message).toMatch(/differ from its bytes/)
  })
})
