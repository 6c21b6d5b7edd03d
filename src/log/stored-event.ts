import { decode } from 'cborg'
import type { EventFields, SignedEvent } from './event.js'
import { WeftError } from './errors.js'
import { equalBytes } from './bytes.js'

/**
 * Where a stored event's bytes are read back from, synchronously: the replica's store (LevelDB
 * answers `getSync` from its cache or the page cache in microseconds), or the events accepted
 * and not yet written. Pure interface; the adapter is src/adapters/event-shelf.ts.
 */
export interface EnvelopeSource {
  /** The envelope of an event this source holds; ERR_STORE when it has none (a damaged store). */
  envelope (idHex: string): Uint8Array
  /**
   * The event's decoded fields (the source may keep a bounded number of them decoded). When it
   * decodes, the bytes must match `header` (what the log holds of the event) or it throws ERR_STORE.
   */
  decoded (idHex: string, header: EventHeader): EventFields
}

/** The header of an event: what ordering, causality and sync read of every event, kept in memory. */
export interface EventHeader {
  readonly net: Uint8Array
  readonly author: Uint8Array
  readonly seq: number
  readonly prev: Uint8Array | null
  readonly deps: Uint8Array[]
  readonly lamport: number
  readonly time: number
  readonly type: EventFields['type']
}

/**
 * The fields of a stored event: the header in memory, the body read through the source when a
 * reducer or a reader asks for it. Most of an event's memory is its body and its bytes
 * (issue 16: 100,000 events held ~230 MB as full objects), and after the fold nothing needs them
 * but sync (which sends the bytes) and the API (which shows one event at a time).
 */
class StoredFields {
  readonly v = 1 as const
  readonly net: Uint8Array
  readonly author: Uint8Array
  readonly seq: number
  readonly prev: Uint8Array | null
  readonly deps: Uint8Array[]
  readonly lamport: number
  readonly time: number
  readonly type: EventFields['type']
  readonly #idHex: string
  readonly #source: EnvelopeSource

  constructor (h: EventHeader, idHex: string, source: EnvelopeSource) {
    this.net = h.net
    this.author = h.author
    this.seq = h.seq
    this.prev = h.prev
    this.deps = h.deps
    this.lamport = h.lamport
    this.time = h.time
    this.type = h.type
    this.#idHex = idHex
    this.#source = source
  }

  get body (): EventFields['body'] { return this.#source.decoded(this.#idHex, this).body }

  /** Own enumerable fields, body included, for code that copies fields (`{ ...e.fields }`) or prints them. */
  toJSON (): EventFields {
    return { v: 1, net: this.net, author: this.author, seq: this.seq, prev: this.prev, deps: this.deps, lamport: this.lamport, time: this.time, type: this.type, body: this.body } as EventFields
  }
}

/** A SignedEvent whose bytes and body live in the store (see StoredFields). */
export class StoredEvent implements SignedEvent {
  readonly fields: EventFields
  readonly id: Uint8Array
  readonly idHex: string
  readonly authorHex: string
  readonly #source: EnvelopeSource

  constructor (h: EventHeader, id: Uint8Array, idHex: string, authorHex: string, source: EnvelopeSource) {
    this.fields = new StoredFields(h, idHex, source) as unknown as EventFields
    this.id = id
    this.idHex = idHex
    this.authorHex = authorHex
    this.#source = source
  }

  get envelope (): Uint8Array { return this.#source.envelope(this.idHex) }
  get bytes (): Uint8Array { return splitEnvelope(this.envelope).bytes }
  get sig (): Uint8Array { return splitEnvelope(this.envelope).sig }
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
