/**
 * Issue 16.2: the replica keeps a fold checkpoint in its store and a restart folds only what
 * came after it. A checkpoint is used only for the log it names (src/crdt/fold-checkpoint.ts);
 * any other (a stale one, one of another log, a damaged or forged one) is refused and the log
 * is refolded, and the state is always the state of a fold of everything.
 */
import { describe, expect, it } from 'vitest'
import { Replica, type ReplicaOptions } from '../src/adapters/replica.js'
import { replicaReducers, type ReplicaReducers } from '../src/projections/reducers.js'
import { signEvent, type EventFields, type SignedEvent } from '../src/log/event.js'
import { EventStore, type EventDb } from '../src/log/store.js'
import { decodeCheckpoint, encodeCheckpoint, makeCheckpoint } from '../src/crdt/fold-checkpoint.js'
import { encodeState } from '../src/projections/state-codec.js'
import { encode as cbor } from 'cborg'
import { memoryDb, NET } from './support/fixtures.js'
import { LogBuilder, join, IDS } from './projections/support.js'
import { stateJson } from './crdt/helpers.js'

type Opts = Partial<ReplicaOptions<ReturnType<ReturnType<typeof replicaReducers>>>>

async function open (db: EventDb, opts: Opts = {}): Promise<Replica<ReplicaReducers>> {
  if (db.status === 'closed') await db.open()
  return await Replica.open({ db, net: NET, reducers: replicaReducers(), sync: false, checkpoint: { min: 1 }, ...opts })
}

/** A log of a few members in two clusters, with claims, routes and a settings change. */
function network (rounds = 6): LogBuilder {
  const b = new LogBuilder(4)
  for (let a = 0; a < 4; a++) b.append(a, 'node.join', join(`h${a}`, a % 2 === 0 ? 'alpha' : 'beta'), { seesAll: true })
  for (let r = 0; r < rounds; r++) {
    for (let a = 0; a < 4; a++) b.append(a, 'ip.claim', { addr: `10.1.${r}.${a + 1}` }, { seesAll: true })
    b.append(r % 4, 'route.advertise', { cidr: `192.168.${r}.0/24` }, { seesAll: true })
  }
  b.setting(0, 'minNodes', 2, { seesAll: true })
  return b
}

/** The state of a replica that folded everything, with no checkpoint at all. */
async function refolded (events: readonly SignedEvent[]): Promise<string> {
  const r = await open(memoryDb(), { checkpoint: false })
  await r.ingest(events)
  const s = stateJson(r.states())
  await r.close()
  return s
}

async function storedCheckpoint (db: EventDb): Promise<Uint8Array> {
  if (db.status === 'closed') await db.open()
  const b = await new EventStore(db).getCheckpoint()
  if (b === undefined) throw new Error('no checkpoint stored')
  return b
}

describe('Replica fold checkpoint', () => {
  it('a restart restores the stored state instead of refolding, and it equals a refold', async () => {
    const events = network().events
    const db = memoryDb()
    const r = await open(db)
    await r.ingest(events)
    const before = stateJson(r.states())
    await r.close()
    const again = await open(db)
    expect(again.checkpointStatus).toEqual({ restored: events.length })
    expect(again.fold.stats.refoldedEvents).toBe(0)
    expect(stateJson(again.states())).toBe(before)
    expect(before).toBe(await refolded(events))
    // It keeps working: a new event of its own folds on top of the restored state.
    await again.close()
    const writer = await open(db, { signer: IDS[0] })
    await writer.append('ip.claim', { addr: '10.1.99.1' }, 1_700_100_000)
    expect([...writer.states().network.ipam.leases.keys()]).toContain('10.1.99.1')
    await writer.close()
  })

  it('events stored after the checkpoint that sort after it are folded on top of it', async () => {
    const b = network(3)
    const db = memoryDb()
    const r = await open(db, { checkpoint: { min: Number.MAX_SAFE_INTEGER } })
    await r.ingest(b.events)
    expect(await r.checkpoint()).toBe(true)
    const k = b.events.length
    // Everybody has seen everything: these sort after every checkpointed event.
    for (let a = 0; a < 4; a++) b.append(a, 'ip.claim', { addr: `10.1.50.${a + 1}` }, { seesAll: true })
    await r.ingest(b.events.slice(k))
    await r.close() // below `min`: no new checkpoint, like a kill -9 after the last write
    const again = await open(db)
    expect(again.checkpointStatus).toEqual({ restored: k })
    expect(stateJson(again.states())).toBe(await refolded(b.events))
    await again.close()
  })

  it('events that sort inside the checkpointed prefix make it refold (the prefix is not the log\'s)', async () => {
    const b = network(3)
    const db = memoryDb()
    const r = await open(db, { checkpoint: { min: Number.MAX_SAFE_INTEGER } })
    await r.ingest(b.events)
    await r.checkpoint()
    // A partitioned fifth author that saw nothing: lamport 1 and 2 sort before almost everything.
    const p = new LogBuilder(5)
    const late = [p.append(4, 'node.join', join('late', 'alpha')), p.append(4, 'ip.claim', { addr: '10.1.0.77' })]
    await r.ingest(late)
    await r.close()
    const again = await open(db)
    expect(again.checkpointStatus.restored).toBe(0)
    expect(again.checkpointStatus.refused).toMatch(/are not the first/)
    expect(stateJson(again.states())).toBe(await refolded([...b.events, ...late]))
    await again.close()
  })

  it('a fork proof found after the checkpoint makes it refold (a freeze changes the prefix\'s meaning)', async () => {
    const b = network(2)
    const db = memoryDb()
    const r = await open(db)
    await r.ingest(b.events)
    await r.close()
    // Author 3 appends past the checkpoint, and signs that event again with another time: a
    // twin at the same seq. The checkpointed prefix is unchanged, but author 3 is now frozen
    // and departs after its last event before the fork, which is inside the prefix.
    const x = b.append(3, 'ip.claim', { addr: '10.1.60.1' }, { seesAll: true })
    const twin = signEvent({ ...x.fields, time: x.fields.time + 1 } as EventFields, IDS[3] as typeof IDS[0])
    const mid = await open(db, { checkpoint: { min: Number.MAX_SAFE_INTEGER } })
    expect(mid.checkpointStatus.restored).toBe(b.events.length - 1)
    const res = await mid.ingest([x, twin])
    expect(res.forks).toHaveLength(1)
    expect(stateJson(mid.states())).toBe(await refolded([...b.events, twin]))
    await mid.close()
    const again = await open(db)
    expect(again.checkpointStatus.restored).toBe(0)
    expect(again.checkpointStatus.refused).toMatch(/fork proofs changed/)
    expect(stateJson(again.states())).toBe(await refolded([...b.events, twin]))
    await again.close()
  })

  describe('a checkpoint that does not match the log it claims is refused (adversarial)', () => {
    async function withStored (bytes: Uint8Array, events: readonly SignedEvent[], opts: Opts = {}): Promise<Replica<ReplicaReducers>> {
      const db = memoryDb()
      const r = await open(db, { checkpoint: false })
      await r.ingest(events)
      await r.close()
      await db.open()
      await new EventStore(db).putCheckpoint(bytes)
      return await open(db, opts)
    }

    it('one taken from another log (same length, other events) is refused, and the state is the refold', async () => {
      const mine = network(3).events
      const other = new LogBuilder(4)
      for (let i = 0; i < mine.length; i++) other.append(i % 4, 'ip.claim', { addr: `10.9.0.${(i % 200) + 1}` }, { seesAll: true })
      const odb = memoryDb()
      const o = await open(odb)
      await o.ingest(other.events)
      await o.close()
      const r = await withStored(await storedCheckpoint(odb), mine)
      expect(r.checkpointStatus.restored).toBe(0)
      expect(r.checkpointStatus.refused).toMatch(/are not the first/)
      expect(stateJson(r.states())).toBe(await refolded(mine))
      await r.close()
    })

    it('one that claims more events than the log holds, another owner, or other code is refused', async () => {
      const events = network(2).events
      const db = memoryDb()
      const r = await open(db)
      await r.ingest(events)
      await r.close()
      const good = decodeCheckpoint(await storedCheckpoint(db))
      const forged = [
        { ...good, count: good.count + 5 },
        { ...good, owner: 'ab'.repeat(32) },
        { ...good, code: `${good.code}x` }
      ]
      const reasons = []
      for (const c of forged) {
        const x = await withStored(encodeCheckpoint(c), events)
        expect(x.checkpointStatus.restored).toBe(0)
        expect(stateJson(x.states())).toBe(await refolded(events))
        reasons.push(x.checkpointStatus.refused)
        await x.close()
      }
      expect(reasons[0]).toMatch(/claims \d+ events but the log has \d+/)
      expect(reasons[1]).toMatch(/another owner key/)
      expect(reasons[2]).toMatch(/other projection code/)
    })

    it('a state swapped under an intact header is refused by its checksum; garbage is refused; the node still opens', async () => {
      const events = network(2).events
      const db = memoryDb()
      const r = await open(db)
      await r.ingest(events)
      const empty = await open(memoryDb(), { checkpoint: false })
      const emptyStates = encodeState(empty.states())
      await empty.close()
      await r.close()
      const good = decodeCheckpoint(await storedCheckpoint(db))
      // An empty network's state under the header of this log: claims the log, holds a lie.
      const swapped = await withStored(encodeCheckpoint({ ...good, states: emptyStates }), events)
      expect(swapped.checkpointStatus.refused).toMatch(/checksum/)
      expect(stateJson(swapped.states())).toBe(await refolded(events))
      await swapped.close()
      // Checkpoints of the empty prefix (they match any log) whose state does not decode: not
      // CBOR, and an Automerge document that does not load. Refused, never a failed start.
      const emptyPrefix = (states: Uint8Array): Uint8Array => encodeCheckpoint(makeCheckpoint({ code: good.code, owner: undefined, view: [], freeze: new Map(), states }))
      const junks = [new Uint8Array([1, 2, 3]), new Uint8Array(0), emptyPrefix(new Uint8Array([0xff, 0x00])), emptyPrefix(cbor({ network: { '\u0000a': new Uint8Array([1, 2, 3]) } }))]
      for (const junk of junks) {
        const x = await withStored(junk, events)
        expect(x.checkpointStatus.restored).toBe(0)
        expect(x.checkpointStatus.refused).toMatch(junk.byteLength > 16 ? /does not decode/ : /not CBOR|malformed/)
        expect(stateJson(x.states())).toBe(await refolded(events))
        await x.close()
      }
    })
  })

  it('checkpoint: false neither reads nor writes one', async () => {
    const events = network(1).events
    const db = memoryDb()
    const r = await open(db, { checkpoint: false })
    await r.ingest(events)
    expect(await r.checkpoint()).toBe(false)
    await r.close()
    await db.open()
    expect(await new EventStore(db).getCheckpoint()).toBeUndefined()
    await db.close()
  })
})
