import { createHash } from 'node:crypto'
import { z } from 'zod'
import { decode, encode } from 'cborg'
import type { SignedEvent } from '../log/event.js'
import { toHex } from '../log/bytes.js'
import { WeftError } from '../log/errors.js'

/**
 * A fold checkpoint as kept in the store (issue 16.2): the projection state after the first
 * `count` events of the ordered view, so a restart folds only what came after. It names what it
 * was folded from, and is used only when all of it matches the log being loaded:
 * - `digest`: sha256 over the ids of those `count` events in order. Any event added, removed
 *   (frozen by a fork) or reordered inside that prefix changes it;
 * - `freeze`: every author's fork freeze point then (a freeze changes what its author's last
 *   visible event does, even when that event is inside the prefix);
 * - `owner`: the key authority was judged by;
 * - `code`: a hash of the projection code that folded it (another version may fold differently);
 * - `sum`: sha256 of `states`, so a damaged checkpoint is refused instead of misread.
 * The state bytes are opaque here (the projections' codec makes them).
 */
export interface FoldCheckpoint {
  v: 1
  code: string
  owner: string | null
  count: number
  digest: string
  freeze: Array<[string, number]>
  sum: string
  states: Uint8Array
}

const Hex = z.string().regex(/^[0-9a-f]*$/)
const Schema = z.strictObject({
  v: z.literal(1),
  code: z.string().max(512),
  owner: Hex.nullable(),
  count: z.int().min(0),
  digest: Hex.length(64),
  freeze: z.array(z.tuple([Hex.length(64), z.int().min(1)])),
  sum: Hex.length(64),
  states: z.custom<Uint8Array>((x) => x instanceof Uint8Array, { message: 'expected bytes' })
})

/** sha256 over the ids of the first `count` events of `view`, in order. */
export function viewDigest (view: readonly SignedEvent[], count: number): string {
  const h = createHash('sha256')
  // The hex id: the same bytes hashed, without making each id's bytes (a StoredEvent keeps only its hex).
  for (let i = 0; i < count; i++) h.update((view[i] as SignedEvent).idHex, 'hex')
  return h.digest('hex')
}

function sha256Hex (b: Uint8Array): string { return createHash('sha256').update(b).digest('hex') }

function freezeList (freeze: ReadonlyMap<string, number>): Array<[string, number]> {
  return [...freeze].sort((a, b) => (a[0] < b[0] ? -1 : 1))
}

export interface CheckpointInput {
  code: string
  owner: Uint8Array | undefined
  view: readonly SignedEvent[]
  freeze: ReadonlyMap<string, number>
  states: Uint8Array
}

export function makeCheckpoint (i: CheckpointInput): FoldCheckpoint {
  return {
    v: 1,
    code: i.code,
    owner: i.owner === undefined ? null : toHex(i.owner),
    count: i.view.length,
    digest: viewDigest(i.view, i.view.length),
    freeze: freezeList(i.freeze),
    sum: sha256Hex(i.states),
    states: i.states
  }
}

export function encodeCheckpoint (c: FoldCheckpoint): Uint8Array {
  return encode(c)
}

export function decodeCheckpoint (bytes: Uint8Array): FoldCheckpoint {
  let raw: unknown
  try {
    raw = decode(bytes)
  } catch (err) {
    throw new WeftError('ERR_CHECKPOINT', `the fold checkpoint is not CBOR: ${(err as Error).message}`, { cause: err })
  }
  const r = Schema.safeParse(raw)
  if (!r.success) throw new WeftError('ERR_CHECKPOINT', `the fold checkpoint is malformed: ${r.error.issues[0]?.message ?? 'unknown'}`)
  return r.data as FoldCheckpoint
}

/**
 * Why `c` cannot resume a fold of `view` (the log's visible events in total order), or
 * undefined when it can: it was folded by this code, with this owner and these freezes, over
 * exactly the first `c.count` events of `view`, and its state bytes are intact.
 */
export function checkpointMismatch (c: FoldCheckpoint, expect: Omit<CheckpointInput, 'states'>): string | undefined {
  if (c.code !== expect.code) return 'it was folded by other projection code (another version of weft)'
  if (c.owner !== (expect.owner === undefined ? null : toHex(expect.owner))) return 'it was folded for another owner key'
  if (c.count > expect.view.length) return `it claims ${c.count} events but the log has ${expect.view.length} visible`
  if (JSON.stringify(c.freeze) !== JSON.stringify(freezeList(expect.freeze))) return 'the log\'s fork proofs changed since it was written'
  if (viewDigest(expect.view, c.count) !== c.digest) return `its ${c.count} events are not the first ${c.count} of the log`
  if (sha256Hex(c.states) !== c.sum) return 'its state bytes are damaged (checksum mismatch)'
  return undefined
}
