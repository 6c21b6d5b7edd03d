import type { AbstractLevel } from 'abstract-level'
import { WeftError } from './errors.js'
import { openEnvelope, openTrusted, type EventFields, type SignedEvent, type Verifier } from './event.js'
import { canonicalEncode } from './cbor.js'
import { decode } from 'cborg'
import { isEventType } from './bodies.js'
import { fromHex, toHex } from './bytes.js'

/**
 * The durable event store, over any abstract-level database (LevelDB on disk in the daemon,
 * memory-level in tests). Keys:
 *   e!<id>                          → envelope
 *   s!<author>!<seq:13 hex>!<id>    → ''   (author, seq) index; two ids at one seq = a fork
 *   o!<lamport:13 hex>!<author>!<seq:13 hex>!<id> → CBOR [prev|null, [deps], time, type]
 *                                   total-order index; its value is the rest of the event's
 *                                   header, so a start reads no envelope (issue 16.2). Stores
 *                                   written before have '' there: read from the envelope.
 *   f!<author>                      → frontier entry (JSON)
 *   c!fold                          → fold checkpoint (CBOR, src/crdt/fold-checkpoint.ts)
 *   c!index                         → index snapshot: the order index's headers in one binary
 *                                     value, read in one get at start (src/log/index-snapshot.ts)
 * Every write is one atomic batch, synced, so an acknowledged event survives kill -9.
 */
export type EventDb = AbstractLevel<string | Uint8Array, string, Uint8Array>

const pad = (n: number): string => n.toString(16).padStart(13, '0')
/** Parses what `keyOf(e).order` writes. */
const ORDER_KEY = /^o!([0-9a-f]{13})!([0-9a-f]{64})!([0-9a-f]{13})!([0-9a-f]{64})$/

function orderKey (raw: string | Uint8Array): { key: string, row?: { id: string, author: string, seq: number, lamport: number } } {
  const key = typeof raw === 'string' ? raw : new TextDecoder().decode(raw)
  const m = ORDER_KEY.exec(key)
  if (m === null) return { key }
  const [, lamport, author, seq, id] = m as unknown as [string, string, string, string, string]
  return { key, row: { id, author, seq: Number.parseInt(seq, 16), lamport: Number.parseInt(lamport, 16) } }
}

export type OrderIndexEntry =
  | {
    id: string
    author: string
    seq: number
    lamport: number
    envelope: Uint8Array | undefined
    /** The header the index holds ('none' in a store written before it did; 'unreadable': damaged). */
    header: Pick<IndexedHeader, 'prev' | 'deps' | 'time' | 'type'> | 'none' | 'unreadable'
    malformed?: undefined
  }
  | { malformed: string }

export interface StoredFrontierEntry { seq: number, head: string, forks: string[] }

/** One row of the order index: an event's header without reading its envelope. */
export interface IndexedHeader {
  id: string
  author: string
  seq: number
  lamport: number
  prev: Uint8Array | null
  deps: Uint8Array[]
  time: number
  type: EventFields['type']
}

function indexValue (e: SignedEvent): Uint8Array {
  const f = e.fields
  return canonicalEncode([f.prev, f.deps, f.time, f.type])
}

const isId = (x: unknown): x is Uint8Array => x instanceof Uint8Array && x.byteLength === 32

/** The order index value, or undefined when it is empty (an older store) or not what put writes. */
function parseIndexValue (v: Uint8Array): Pick<IndexedHeader, 'prev' | 'deps' | 'time' | 'type'> | undefined {
  if (v.byteLength === 0) return undefined
  let x: unknown
  try { x = decode(v) } catch { return undefined }
  if (!Array.isArray(x) || x.length !== 4) return undefined
  const [prev, deps, time, type] = x as [unknown, unknown, unknown, unknown]
  if (!(prev === null || isId(prev)) || !Array.isArray(deps) || !deps.every(isId) || typeof time !== 'number' || typeof type !== 'string' || !isEventType(type)) return undefined
  return { prev, deps, time, type }
}

export class EventStore {
  constructor (private readonly db: EventDb, private readonly opts: { sync?: boolean } = {}) {}

  static keyOf (e: SignedEvent): { id: string, seq: string, order: string } {
    const f = e.fields
    return {
      id: `e!${e.idHex}`,
      seq: `s!${e.authorHex}!${pad(f.seq)}!${e.idHex}`,
      order: `o!${pad(f.lamport)}!${e.authorHex}!${pad(f.seq)}!${e.idHex}`
    }
  }

  async put (events: readonly SignedEvent[], frontier: ReadonlyMap<string, StoredFrontierEntry>): Promise<void> {
    if (events.length === 0) return
    const ops: Array<{ type: 'put', key: string, value: Uint8Array }> = []
    const empty = new Uint8Array(0)
    const authors = new Set<string>()
    for (const e of events) {
      const k = EventStore.keyOf(e)
      ops.push({ type: 'put', key: k.id, value: e.envelope })
      ops.push({ type: 'put', key: k.seq, value: empty })
      ops.push({ type: 'put', key: k.order, value: indexValue(e) })
      authors.add(e.authorHex)
    }
    for (const a of authors) {
      const entry = frontier.get(a)
      if (entry !== undefined) ops.push({ type: 'put', key: `f!${a}`, value: new TextEncoder().encode(JSON.stringify(entry)) })
    }
    try {
      await this.db.batch(ops, { sync: this.opts.sync ?? true } as never)
    } catch (err) {
      throw new WeftError('ERR_STORE', `could not write ${events.length} events: ${(err as Error).message}`, { cause: err })
    }
  }

  async getEnvelope (id: string): Promise<Uint8Array | undefined> {
    return await this.db.get(`e!${id}`)
  }

  /** The same, synchronously (LevelDB and memory-level both answer `getSync`): the fold reads bodies through this. */
  getEnvelopeSync (id: string): Uint8Array | undefined {
    try {
      return this.db.getSync(`e!${id}`)
    } catch (err) {
      throw new WeftError('ERR_STORE', `could not read event ${id.slice(0, 12)}: ${(err as Error).message}`, { cause: err })
    }
  }

  /** Every stored envelope in total order, read 1,000 at a time with getMany. */
  async * envelopesInOrder (): AsyncGenerator<{ id: string, envelope: Uint8Array }> {
    let ids: string[] = []
    for await (const key of this.db.keys({ gt: 'o!', lt: 'o"' })) {
      const k = typeof key === 'string' ? key : new TextDecoder().decode(key)
      ids.push(k.slice(k.lastIndexOf('!') + 1))
      if (ids.length >= 1000) { yield * await this.envelopesOf(ids); ids = [] }
    }
    yield * await this.envelopesOf(ids)
  }

  private async envelopesOf (ids: string[]): Promise<Array<{ id: string, envelope: Uint8Array }>> {
    if (ids.length === 0) return []
    const values = await this.db.getMany(ids.map((id) => `e!${id}`))
    return ids.map((id, i) => {
      const envelope = values[i]
      if (envelope === undefined) throw new WeftError('ERR_STORE', `order index names ${id} but the event is missing: the store is damaged`)
      return { id, envelope }
    })
  }

  /**
   * Event headers in total order (after the order key `after`, when given) from the order index alone (no envelope read), or, for a row
   * without a header (an older store, damage), `{ id, envelope }` to decode instead. Throws
   * ERR_STORE at a malformed key.
   */
  async * headersInOrder (after = 'o!'): AsyncGenerator<IndexedHeader | { id: string, envelope: Uint8Array }> {
    for await (const [raw, value] of this.db.iterator({ gt: after, lt: 'o"' })) {
      const { key, row } = orderKey(raw)
      if (row === undefined) throw new WeftError('ERR_STORE', `malformed order index key ${key.slice(0, 40)}: the store is damaged; run "weft log verify"`)
      const rest = parseIndexValue(value)
      // A flat copy of the id: the regex's groups are slices that would keep the whole key alive
      // for as long as the log holds the id.
      const id = toHex(fromHex(row.id))
      if (rest !== undefined) {
        yield { ...row, id, ...rest }
        continue
      }
      const envelope = await this.db.get(`e!${id}`)
      if (envelope === undefined) throw new WeftError('ERR_STORE', `order index names ${id} but the event is missing: the store is damaged; run "weft log verify"`)
      yield { id, envelope }
    }
  }

  /** Write the header into order index rows written without one (an older store), once. */
  async indexHeaders (events: readonly SignedEvent[]): Promise<void> {
    if (events.length === 0) return
    await this.db.batch(events.map((e) => ({ type: 'put' as const, key: EventStore.keyOf(e).order, value: indexValue(e) })))
  }

  /**
   * The order index as stored, entry by entry, never stopping at damage: for `weft log verify`,
   * which must report every problem. `envelope` is undefined when the index names a missing event.
   */
  async * orderIndex (): AsyncGenerator<OrderIndexEntry> {
    for await (const [raw, value] of this.db.iterator({ gt: 'o!', lt: 'o"' })) {
      const { key, row } = orderKey(raw)
      if (row === undefined) { yield { malformed: key }; continue }
      const header = value.byteLength === 0 ? 'none' : (parseIndexValue(value) ?? 'unreadable')
      yield { ...row, envelope: await this.db.get(`e!${row.id}`), header }
    }
  }

  /**
   * Events as stored. `verify` re-checks signatures and schema (for `weft log verify`);
   * otherwise the store is trusted, since only validated events were written.
   */
  async * eventsInOrder (net: Uint8Array, verifier: Verifier | undefined): AsyncGenerator<SignedEvent> {
    for await (const { id, envelope } of this.envelopesInOrder()) {
      const e = verifier === undefined ? openTrusted(envelope, net) : openEnvelope(envelope, net, verifier)
      // The id is recomputed anyway: an envelope under the wrong key means a damaged store.
      if (e.idHex !== id) throw new WeftError('ERR_STORE', `event stored under ${id} hashes to ${e.idHex}: the store is damaged; run "weft log verify"`)
      yield e
    }
  }

  async frontier (): Promise<Map<string, StoredFrontierEntry>> {
    const out = new Map<string, StoredFrontierEntry>()
    for await (const [key, value] of this.db.iterator({ gt: 'f!', lt: 'f"' })) {
      const k = typeof key === 'string' ? key : new TextDecoder().decode(key)
      out.set(k.slice(2), JSON.parse(new TextDecoder().decode(value)) as StoredFrontierEntry)
    }
    return out
  }

  async count (): Promise<number> {
    let n = 0
    for await (const _ of this.db.keys({ gt: 'e!', lt: 'e"' })) n++
    return n
  }

  /** The fold checkpoint (src/crdt/fold-checkpoint.ts), one per store, replaced as a whole. */
  async getCheckpoint (): Promise<Uint8Array | undefined> {
    return await this.db.get('c!fold')
  }

  async putCheckpoint (bytes: Uint8Array): Promise<void> {
    await this.putValue('c!fold', bytes, 'the fold checkpoint')
  }

  private async putValue (key: string, bytes: Uint8Array, what: string): Promise<void> {
    try {
      await this.db.put(key, bytes, { sync: this.opts.sync ?? true } as never)
    } catch (err) {
      throw new WeftError('ERR_STORE', `could not write ${what}: ${(err as Error).message}`, { cause: err })
    }
  }

  /** The index snapshot (src/log/index-snapshot.ts), one per store, replaced as a whole. */
  async getIndexSnapshot (): Promise<Uint8Array | undefined> {
    return await this.db.get('c!index')
  }

  async putIndexSnapshot (bytes: Uint8Array): Promise<void> {
    await this.putValue('c!index', bytes, 'the index snapshot')
  }

  /** Whether the order index holds this key (what an index snapshot names as its last). */
  async hasOrderKey (key: string): Promise<boolean> {
    return (await this.db.get(key)) !== undefined
  }

  /** Settings this store belongs to (the network id), so a data dir is never mixed up. */
  async getMeta (key: string): Promise<string | undefined> {
    const v = await this.db.get(`m!${key}`)
    return v === undefined ? undefined : new TextDecoder().decode(v)
  }

  async setMeta (key: string, value: string): Promise<void> {
    await this.db.put(`m!${key}`, new TextEncoder().encode(value), { sync: true } as never)
  }
}
