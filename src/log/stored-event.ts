import { decode } from 'cborg'
import type { EventFields, SignedEvent } from './event.js'
import { WeftError } from './errors.js'
import { equalBytes, fromHex } from './bytes.js'

/**
 * Where a stored event's bytes are read back from, synchronously: the replica's store (LevelDB
 * answers `getSync` from its cache or the page cache in microseconds), or the events accepted
 * and not yet written. Pure interface; the adapter is src/adapters/event-shelf.ts.
 */
export interface EnvelopeSource {
  /** The network id every event held here carries. */
  readonly net: Uint8Array
  /** The envelope of an event this source holds; ERR_STORE when it has none (a damaged store). */
  envelope: (idHex: string) => Uint8Array
  /**
   * The event's decoded fields (the source may keep a bounded number of them decoded). When it
   * decodes, the bytes must match `header` (what the log holds of the event) or it throws ERR_STORE.
   */
  decoded: (idHex: string, header: EventHeader) => EventFields
}

/** The header of an event: what ordering, causality and sync read of every event. */
export interface EventHeader {
  readonly author: Uint8Array
  readonly seq: number
  readonly prev: Uint8Array | null
  readonly deps: readonly Uint8Array[]
  readonly lamport: number
  readonly time: number
  readonly type: EventFields['type']
}

/** A parent as a stored event names it: the event itself, already held (parents come first). */
export interface ParentEvent { readonly idHex: string, readonly id: Uint8Array }

const NO_PARENTS: readonly ParentEvent[] = Object.freeze([])

/**
 * A SignedEvent of which only the header is in memory, as compact as the log's index can be
 * (issue 16.2: 100,000 whole events held ~230 MB): one object per event, its parents as
 * references to the parents' own objects, its id as the hex string the log is keyed by. The
 * bytes and the body are read through the source when asked for (the fold, sync, the API), and
 * `fields` is the event itself. Byte fields (`id`, `prev`, `deps`) are made on each read.
 */
export class StoredEvent implements SignedEvent, EventHeader {
  readonly author: Uint8Array
  readonly seq: number
  readonly lamport: number
  readonly time: number
  readonly type: EventFields['type']
  readonly idHex: string
  readonly authorHex: string
  readonly parent: ParentEvent | null
  readonly depEvents: readonly ParentEvent[]
  readonly #source: EnvelopeSource

  constructor (h: Omit<EventHeader, 'prev' | 'deps'>, parents: { prev: ParentEvent | null, deps: readonly ParentEvent[] }, idHex: string, authorHex: string, source: EnvelopeSource) {
    this.author = h.author
    this.seq = h.seq
    this.lamport = h.lamport
    this.time = h.time
    this.type = h.type
    this.idHex = idHex
    this.authorHex = authorHex
    this.parent = parents.prev
    this.depEvents = parents.deps.length === 0 ? NO_PARENTS : parents.deps
    this.#source = source
  }

  get fields (): EventFields { return this as unknown as EventFields }
  get v (): 1 { return 1 }
  get net (): Uint8Array { return this.#source.net }
  get id (): Uint8Array { return fromHex(this.idHex) }
  get prev (): Uint8Array | null { return this.parent === null ? null : this.parent.id }
  get deps (): Uint8Array[] { return this.depEvents.map((d) => d.id) }
  get body (): EventFields['body'] { return this.#source.decoded(this.idHex, this).body }
  get envelope (): Uint8Array { return this.#source.envelope(this.idHex) }
  get bytes (): Uint8Array { return splitEnvelope(this.envelope).bytes }
  get sig (): Uint8Array { return splitEnvelope(this.envelope).sig }

  /** The fields as a plain object (what `JSON.stringify(e.fields)` shows). */
  toJSON (): EventFields {
    return { v: 1, net: this.net, author: this.author, seq: this.seq, prev: this.prev, deps: this.deps, lamport: this.lamport, time: this.time, type: this.type, body: this.body } as EventFields
  }
}

/** Why decoded fields are not the event the log indexed under that header (undefined: they are). */
export function headerMismatch (f: EventFields, h: EventHeader): string | undefined {
  if (f.seq !== h.seq || f.lamport !== h.lamport || f.time !== h.time || f.type !== h.type) return 'seq, lamport, time or type'
  if (!equalBytes(f.author, h.author)) return 'author'
  if ((f.prev === null) !== (h.prev === null) || (f.prev !== null && h.prev !== null && !equalBytes(f.prev, h.prev))) return 'prev'
  if (f.deps.length !== h.deps.length || f.deps.some((d, i) => !equalBytes(d, h.deps[i] as Uint8Array))) return 'deps'
  return undefined
}

/** `[bytes, sig]` of an envelope. */
export function splitEnvelope (envelope: Uint8Array): { bytes: Uint8Array, sig: Uint8Array } {
  try {
    const [bytes, sig] = decode(envelope) as [Uint8Array, Uint8Array]
    return { bytes, sig }
  } catch (err) {
    throw new WeftError('ERR_STORE', `a stored event does not decode (${(err as Error).message}); the store is damaged: run "weft log verify"`)
  }
}
