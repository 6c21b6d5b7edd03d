import { decode, encode } from 'cborg'
import { WeftError } from '../log/errors.js'
import { LIMITS } from '../log/bodies.js'

/**
 * The anti-entropy wire messages, one CBOR array per length-prefixed frame:
 *   Hello [1, frontier, wants]          initiator → responder: what I hold, ids I wait for
 *   Reply [2, frontier, events, more]   responder → initiator: what I hold, what you lack
 *   Push  [3, events, more]             initiator → responder: what you lack
 * `frontier` is the encoded Frontier (crdt/frontier.ts), `events` are envelopes, `more` says
 * the sender had more than one batch for the other side. A Reply's frontier is empty when it
 * equals the Hello's (the encoding is canonical, so equal frontiers are equal bytes): peers in
 * sync send one frontier between them, not two.
 */
export interface Hello { kind: 'hello', frontier: Uint8Array, wants: Uint8Array[] }
export interface Reply { kind: 'reply', frontier: Uint8Array, events: Uint8Array[], more: boolean }
export interface Push { kind: 'push', events: Uint8Array[], more: boolean }
export type SyncMessage = Hello | Reply | Push

export const SYNC_LIMITS = {
  /** Events in one batch. */
  batchEvents: 512,
  /** Bytes of events in one batch (an event alone may still be up to 64 KiB). */
  batchBytes: 1024 * 1024,
  /** Ids in one Hello's wants. */
  wants: 256,
  /** One frame: a batch, or a frontier of ~200,000 authors. */
  frameBytes: 16 * 1024 * 1024,
  /** Rounds in one session before it stops and waits for the next trigger. */
  rounds: 1_000
} as const

const DECODE = { strict: true, allowUndefined: false, allowBigInt: false, useMaps: false } as const

export function encodeSyncMessage (m: SyncMessage): Uint8Array {
  switch (m.kind) {
    case 'hello': return encode([1, m.frontier, m.wants])
    case 'reply': return encode([2, m.frontier, m.events, m.more])
    case 'push': return encode([3, m.events, m.more])
  }
}

const bad = (what: string): WeftError => new WeftError('ERR_SYNC_PROTOCOL', `malformed sync message: ${what}`)

const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array

function eventList (v: unknown): Uint8Array[] {
  if (!Array.isArray(v) || v.length > SYNC_LIMITS.batchEvents) throw bad(`events must be a list of at most ${SYNC_LIMITS.batchEvents} envelopes`)
  for (const e of v) {
    if (!isBytes(e) || e.byteLength > LIMITS.maxEventBytes) throw bad(`an event must be a byte string of at most ${LIMITS.maxEventBytes} bytes`)
  }
  return v as Uint8Array[]
}

export function decodeSyncMessage (bytes: Uint8Array): SyncMessage {
  let raw: unknown
  try {
    raw = decode(bytes, DECODE)
  } catch (err) {
    throw bad(`not CBOR (${(err as Error).message})`)
  }
  if (!Array.isArray(raw) || raw.length < 3) throw bad('expected an array [kind, ...]')
  switch (raw[0]) {
    case 1: {
      const [, frontier, wants] = raw as unknown[]
      if (raw.length !== 3 || !isBytes(frontier)) throw bad('Hello is [1, frontier, wants]')
      if (!Array.isArray(wants) || wants.length > SYNC_LIMITS.wants || !wants.every((w) => isBytes(w) && w.byteLength === 32)) {
        throw bad(`wants must be at most ${SYNC_LIMITS.wants} event ids of 32 bytes`)
      }
      return { kind: 'hello', frontier, wants: wants as Uint8Array[] }
    }
    case 2: {
      const [, frontier, events, more] = raw as unknown[]
      if (raw.length !== 4 || !isBytes(frontier) || typeof more !== 'boolean') throw bad('Reply is [2, frontier, events, more]')
      return { kind: 'reply', frontier, events: eventList(events), more }
    }
    case 3: {
      const [, events, more] = raw as unknown[]
      if (raw.length !== 3 || typeof more !== 'boolean') throw bad('Push is [3, events, more]')
      return { kind: 'push', events: eventList(events), more }
    }
    default:
      throw bad(`unknown kind ${String(raw[0])}`)
  }
}

/** Take envelopes from the front of `events` until a count or byte bound is reached. */
export function takeBatch (envelopes: readonly Uint8Array[]): { batch: Uint8Array[], more: boolean } {
  const batch: Uint8Array[] = []
  let bytes = 0
  for (const e of envelopes) {
    if (batch.length >= SYNC_LIMITS.batchEvents || (batch.length > 0 && bytes + e.byteLength > SYNC_LIMITS.batchBytes)) {
      return { batch, more: true }
    }
    batch.push(e)
    bytes += e.byteLength
  }
  return { batch, more: false }
}
