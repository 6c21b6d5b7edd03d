import { decode } from 'cborg'
import { WeftError } from '../log/errors.js'
import { eventId, type EventFields, type SignedEvent } from '../log/event.js'
import { toHex } from '../log/bytes.js'
import type { EventStore } from '../log/store.js'
import { headerMismatch, splitEnvelope, StoredEvent, type EventHeader } from '../log/stored-event.js'
import type { HeldEvents } from '../crdt/merged-log.js'

/** Decoded events kept at once (each ~1–2 KB): a fold step, a sync batch and an API page fit. */
export const DECODED_EVENTS_KEPT = 512

/**
 * Where the replica's events live once accepted (issue 16.2): their bytes in the store, read
 * back synchronously (`getSync`), and the newest few decoded. Between acceptance and the
 * store's write an event's bytes are held here (`hold`), so nothing accepted is ever unreadable;
 * `stored` lets them go once they are on disk.
 */
export class EventShelf implements HeldEvents {
  readonly #store: EventStore
  readonly #net: Uint8Array
  readonly #max: number
  /** Accepted, not yet written: bounded by one ingest batch (the replica writes before the next). */
  readonly #held = new Map<string, Uint8Array>()
  /** Least recently used first. */
  readonly #decoded = new Map<string, EventFields>()

  constructor (store: EventStore, net: Uint8Array, maxDecoded = DECODED_EVENTS_KEPT) {
    this.#store = store
    this.#net = net
    this.#max = Math.max(1, maxDecoded)
  }

  get net (): Uint8Array { return this.#net }
  get heldCount (): number { return this.#held.size }
  get decodedCount (): number { return this.#decoded.size }

  hold (ev: SignedEvent): void {
    this.#held.set(ev.idHex, ev.envelope)
    // Decoded already, unless it is another replica's StoredEvent (whose body reads from there).
    if (!(ev instanceof StoredEvent)) this.#remember(ev.idHex, ev.fields)
  }

  /** These events are on disk now: read them from there. */
  stored (events: Iterable<{ idHex: string }>): void {
    for (const e of events) this.#held.delete(e.idHex)
  }

  envelope (idHex: string): Uint8Array {
    const held = this.#held.get(idHex)
    if (held !== undefined) return held
    const env = this.#store.getEnvelopeSync(idHex)
    if (env === undefined) throw new WeftError('ERR_STORE', `event ${idHex.slice(0, 12)} is in the log's index but not in the store: the store is damaged; run "weft log verify"`)
    return env
  }

  decoded (idHex: string, header: EventHeader): EventFields {
    const hit = this.#decoded.get(idHex)
    if (hit !== undefined) {
      this.#decoded.delete(idHex)
      this.#decoded.set(idHex, hit)
      return hit
    }
    let fields: EventFields
    try {
      const { bytes } = splitEnvelope(this.envelope(idHex))
      // A start reads only the order index (trust.md): the bytes are checked against their id here.
      if (toHex(eventId(this.#net, bytes)) !== idHex) throw new WeftError('ERR_STORE', `event stored under ${idHex.slice(0, 12)} hashes to something else: the store is damaged; run "weft log verify"`)
      fields = decode(bytes) as EventFields
      const wrong = headerMismatch(fields, header)
      if (wrong !== undefined) throw new WeftError('ERR_STORE', `event ${idHex.slice(0, 12)}: its ${wrong} in the order index differ from its bytes: the store is damaged; run "weft log verify"`)
    } catch (err) {
      if (err instanceof WeftError) throw err
      throw new WeftError('ERR_STORE', `stored event ${idHex.slice(0, 12)} does not decode (${(err as Error).message}); run "weft log verify"`)
    }
    this.#remember(idHex, fields)
    return fields
  }

  #remember (idHex: string, fields: EventFields): void {
    this.#decoded.delete(idHex)
    this.#decoded.set(idHex, fields)
    if (this.#decoded.size > this.#max) this.#decoded.delete(this.#decoded.keys().next().value as string)
  }
}
