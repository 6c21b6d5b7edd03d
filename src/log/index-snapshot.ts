import { createHash } from 'node:crypto'
import { WeftError } from './errors.js'
import { isEventType, type EventType } from './bodies.js'
import { toHex } from './bytes.js'
import type { SignedEvent } from './event.js'
import { StoredEvent, type EnvelopeSource } from './stored-event.js'

/**
 * The order index as one binary value (issue 16.2): every event's header in total order, so a
 * start reads one value instead of 100,000 index entries (LevelDB iteration, a CBOR value and
 * hex ids per entry, and the garbage of all of it: ~1.9 s of a 3.5 s start). Parents are
 * positions in the snapshot, so no id is looked up to link an event to them.
 *
 * Layout, little-endian, every section 8-byte aligned:
 *   header (64 bytes): magic "WIX1", nEvents, nAuthors, nTypes, nDeps, metaLen (u32 each),
 *                      0 (u32), sha256 of everything after the header (32 bytes)
 *   seq, lamport, time           f64 × nEvents each
 *   prev                         i32 × nEvents (position of the prev, -1: none)
 *   depEnd                       u32 × nEvents (deps of event i: deps[depEnd[i-1] .. depEnd[i]])
 *   author                       u32 × nEvents (position in the author table)
 *   deps                         u32 × nDeps (positions)
 *   type                         u8  × nEvents (position in the type table)
 *   authors                      32 bytes × nAuthors
 *   ids                          32 bytes × nEvents
 *   meta                         JSON { net: hex, types: [names] }
 *
 * ~77 bytes per event (7.7 MB for 100,000). The checksum makes damage a refusal, not a misread;
 * whether the snapshot is the store's (and complete) is the replica's check (src/adapters/replica.ts).
 */
const MAGIC = 0x31584957 // "WIX1" little-endian
const HEADER = 64

/** A decoded snapshot, its columns as typed arrays over one aligned copy of the bytes. */
export interface IndexSnapshot {
  count: number
  net: string
  seq: Float64Array
  lamport: Float64Array
  time: Float64Array
  prev: Int32Array
  depEnd: Uint32Array
  author: Uint32Array
  deps: Uint32Array
  type: Uint8Array
  authors: Uint8Array[]
  types: EventType[]
  ids: Uint8Array
}

interface Layout { seq: number, lamport: number, time: number, prev: number, depEnd: number, author: number, deps: number, type: number, authors: number, ids: number, meta: number, end: number }

const align = (n: number): number => (n + 7) & ~7

function layout (n: number, nAuthors: number, nDeps: number, metaLen: number): Layout {
  const seq = HEADER
  const lamport = seq + 8 * n
  const time = lamport + 8 * n
  const prev = time + 8 * n
  const depEnd = align(prev + 4 * n)
  const author = align(depEnd + 4 * n)
  const deps = align(author + 4 * n)
  const type = align(deps + 4 * nDeps)
  const authors = align(type + n)
  const ids = authors + 32 * nAuthors
  const meta = ids + 32 * n
  return { seq, lamport, time, prev, depEnd, author, deps, type, authors, ids, meta, end: meta + metaLen }
}

/** How many deps an event names (a StoredEvent links objects: no bytes made). */
const depCount = (e: SignedEvent): number => e instanceof StoredEvent ? e.depEvents.length : e.fields.deps.length

/** The hex id of an event's prev (null: none) and of its k-th dep, without making bytes for a StoredEvent. */
function prevId (e: SignedEvent): string | null {
  if (e instanceof StoredEvent) return e.parent?.idHex ?? null
  return e.fields.prev === null ? null : toHex(e.fields.prev)
}
function depId (e: SignedEvent, k: number): string {
  return e instanceof StoredEvent ? (e.depEvents[k] as { idHex: string }).idHex : toHex(e.fields.deps[k] as Uint8Array)
}

/** `events`: the whole log in total order (compareEvents), every parent before its child. */
export function encodeIndexSnapshot (events: readonly SignedEvent[], net: Uint8Array): Uint8Array {
  const n = events.length
  const pos = new Map<string, number>()
  const authorPos = new Map<string, number>()
  const authors: Uint8Array[] = []
  const types: EventType[] = []
  let nDeps = 0
  for (const e of events) {
    nDeps += depCount(e)
    if (!authorPos.has(e.authorHex)) { authorPos.set(e.authorHex, authors.length); authors.push(e.fields.author) }
    if (!types.includes(e.fields.type)) types.push(e.fields.type)
  }
  const meta = Buffer.from(JSON.stringify({ net: toHex(net), types }))
  const L = layout(n, authors.length, nDeps, meta.byteLength)
  const buf = new ArrayBuffer(L.end)
  const bytes = Buffer.from(buf)
  const seq = new Float64Array(buf, L.seq, n)
  const lamport = new Float64Array(buf, L.lamport, n)
  const time = new Float64Array(buf, L.time, n)
  const prev = new Int32Array(buf, L.prev, n)
  const depEnd = new Uint32Array(buf, L.depEnd, n)
  const author = new Uint32Array(buf, L.author, n)
  const deps = new Uint32Array(buf, L.deps, nDeps)
  const type = new Uint8Array(buf, L.type, n)
  const typePos = new Map(types.map((t, i) => [t, i]))
  let d = 0
  for (let i = 0; i < n; i++) {
    const e = events[i] as SignedEvent
    const f = e.fields
    seq[i] = f.seq
    lamport[i] = f.lamport
    time[i] = f.time
    const p = prevId(e)
    const pp = p === null ? -1 : pos.get(p)
    if (pp === undefined) throw new WeftError('ERR_STORE', `cannot snapshot the index: event ${e.idHex.slice(0, 12)} comes before its prev`)
    prev[i] = pp
    for (let k = 0, nd = depCount(e); k < nd; k++) {
      const dp = pos.get(depId(e, k))
      if (dp === undefined) throw new WeftError('ERR_STORE', `cannot snapshot the index: event ${e.idHex.slice(0, 12)} comes before a dep`)
      deps[d++] = dp
    }
    depEnd[i] = d
    author[i] = authorPos.get(e.authorHex) as number
    type[i] = typePos.get(f.type) as number
    bytes.write(e.idHex, L.ids + 32 * i, 32, 'hex')
    pos.set(e.idHex, i)
  }
  authors.forEach((a, i) => { bytes.set(a, L.authors + 32 * i) })
  bytes.set(meta, L.meta)
  const head = new Uint32Array(buf, 0, 8)
  head.set([MAGIC, n, authors.length, types.length, nDeps, meta.byteLength, 0, 0])
  bytes.set(createHash('sha256').update(bytes.subarray(HEADER)).digest(), 32)
  return new Uint8Array(buf)
}

function refuse (why: string): never {
  throw new WeftError('ERR_CHECKPOINT', `the index snapshot ${why}`)
}

/** Decode and check the snapshot's own consistency; ERR_CHECKPOINT saying why it is refused. */
export function decodeIndexSnapshot (stored: Uint8Array): IndexSnapshot {
  if (stored.byteLength < HEADER) refuse(`is truncated (${stored.byteLength} bytes)`)
  // One aligned copy: the columns are typed arrays over it (LevelDB's buffer may be at any offset).
  const buf = new ArrayBuffer(stored.byteLength)
  const bytes = Buffer.from(buf)
  bytes.set(stored)
  const [magic, n, nAuthors, nTypes, nDeps, metaLen] = new Uint32Array(buf, 0, 6) as unknown as number[] as [number, number, number, number, number, number]
  if (magic !== MAGIC) refuse('is not one (wrong magic or version)')
  const L = layout(n, nAuthors, nDeps, metaLen)
  if (L.end !== stored.byteLength) refuse(`is ${stored.byteLength} bytes, its header says ${L.end} (truncated or damaged)`)
  if (!createHash('sha256').update(bytes.subarray(HEADER)).digest().equals(bytes.subarray(32, HEADER))) refuse('is damaged (checksum mismatch)')
  let meta: { net?: unknown, types?: unknown }
  try { meta = JSON.parse(bytes.toString('utf8', L.meta, L.end)) as typeof meta } catch { refuse('has unreadable metadata') }
  const types = meta.types
  if (typeof meta.net !== 'string' || !Array.isArray(types) || types.length !== nTypes || !types.every((t) => typeof t === 'string' && isEventType(t))) refuse('has malformed metadata')
  const authors: Uint8Array[] = []
  for (let i = 0; i < nAuthors; i++) authors.push(new Uint8Array(buf, L.authors + 32 * i, 32))
  return {
    count: n,
    net: meta.net,
    seq: new Float64Array(buf, L.seq, n),
    lamport: new Float64Array(buf, L.lamport, n),
    time: new Float64Array(buf, L.time, n),
    prev: new Int32Array(buf, L.prev, n),
    depEnd: new Uint32Array(buf, L.depEnd, n),
    author: new Uint32Array(buf, L.author, n),
    deps: new Uint32Array(buf, L.deps, nDeps),
    type: new Uint8Array(buf, L.type, n),
    authors,
    types: types as EventType[],
    ids: new Uint8Array(buf, L.ids, 32 * n)
  }
}

/**
 * The snapshot's events as the log keeps them (StoredEvent, parents linked by reference), in
 * its order. Refuses (ERR_CHECKPOINT) a snapshot that breaks what the store's order guarantees:
 * every parent before its child, the total order strictly increasing, every number an integer
 * in range. The author keys are shared, one copy each.
 */
export function snapshotEvents (s: IndexSnapshot, source: EnvelopeSource): StoredEvent[] {
  const n = s.count
  const out: StoredEvent[] = new Array<StoredEvent>(n)
  const authorHex = s.authors.map(toHex)
  const authorCopies = s.authors.map((a) => new Uint8Array(a))
  // One hex string of every id, each id a slice of it: no per-event conversion or copy.
  const hex = Buffer.from(s.ids.buffer, s.ids.byteOffset, s.ids.byteLength).toString('hex')
  let depStart = 0
  let last: StoredEvent | undefined
  for (let i = 0; i < n; i++) {
    const a = s.author[i] as number
    const t = s.type[i] as number
    const seq = s.seq[i] as number
    const lamport = s.lamport[i] as number
    const time = s.time[i] as number
    const p = s.prev[i] as number
    const depEnd = s.depEnd[i] as number
    if (a >= authorHex.length || t >= s.types.length || p >= i || p < -1 || depEnd < depStart || depEnd > s.deps.length ||
        !Number.isSafeInteger(seq) || seq < 1 || !Number.isSafeInteger(lamport) || lamport < 1 || !Number.isSafeInteger(time) || time < 0) {
      refuse(`has an impossible entry at position ${i}`)
    }
    let deps: StoredEvent[] = []
    if (depEnd > depStart) {
      deps = new Array<StoredEvent>(depEnd - depStart)
      for (let k = depStart; k < depEnd; k++) {
        const d = s.deps[k] as number
        if (d >= i) refuse(`names a dep after its child at position ${i}`)
        deps[k - depStart] = out[d] as StoredEvent
      }
    }
    depStart = depEnd
    const id = hex.slice(64 * i, 64 * i + 64)
    const aHex = authorHex[a] as string
    if (last !== undefined && !(last.lamport < lamport || (last.lamport === lamport &&
        (last.authorHex < aHex || (last.authorHex === aHex && (last.seq < seq || (last.seq === seq && last.idHex < id))))))) {
      refuse(`is not in the log's order at position ${i}`)
    }
    last = new StoredEvent({ author: authorCopies[a] as Uint8Array, seq, lamport, time, type: s.types[t] as EventType },
      { prev: p < 0 ? null : out[p] as StoredEvent, deps }, id, aHex, source)
    out[i] = last
  }
  return out
}
