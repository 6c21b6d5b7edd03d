import { createHash } from 'node:crypto'
import { z } from 'zod'
import { decode } from 'cborg'
import { canonicalDecode, canonicalEncode } from './cbor.js'
import { bodySchemas, isEventType, LIMITS, type BodyOf, type EventType } from './bodies.js'
import { compareBytes, concatBytes, equalBytes, toHex, utf8 } from './bytes.js'
import { WeftError } from './errors.js'
import { authorName } from './author.js'
import { checkCosignature } from './auth.js'
import { Ed25519Verifier } from './identity.js'

export const EVENT_VERSION = 1
/** Separates Weft event signatures from any other use of the same key. */
export const DOMAIN_TAG = utf8.encode('weft/event/v1\0')

/** The signed fields of an event, narrowed by `type`. */
export type EventFields = {
  [T in EventType]: {
    v: 1
    net: Uint8Array
    author: Uint8Array
    seq: number
    prev: Uint8Array | null
    deps: Uint8Array[]
    lamport: number
    time: number
    type: T
    body: BodyOf<T>
  }
}[EventType]

/** An event whose signature and shape have been checked, with its derived id. */
export interface SignedEvent {
  readonly fields: EventFields
  /** Canonical CBOR of `fields`. */
  readonly bytes: Uint8Array
  readonly sig: Uint8Array
  /** sha256(DOMAIN_TAG || net || bytes): the bytes the signature covers. */
  readonly id: Uint8Array
  readonly idHex: string
  readonly authorHex: string
  /** Wire form: canonical CBOR `[bytes, sig]`. */
  readonly envelope: Uint8Array
}

export interface Signer {
  readonly publicKey: Uint8Array
  sign (data: Uint8Array): Uint8Array
}

export interface Verifier {
  verify (publicKey: Uint8Array, data: Uint8Array, sig: Uint8Array): boolean
}

const Bytes = (len: number): z.ZodType<Uint8Array> =>
  z.custom<Uint8Array>((v) => v instanceof Uint8Array && v.byteLength === len, { message: `expected ${len} bytes` })
const SafeUint = z.int().min(0).max(Number.MAX_SAFE_INTEGER)

const Header = z.strictObject({
  v: z.literal(EVENT_VERSION),
  net: Bytes(8),
  author: Bytes(32),
  seq: SafeUint.min(1),
  prev: Bytes(32).nullable(),
  deps: z.array(Bytes(32)),
  lamport: SafeUint.min(1),
  time: SafeUint,
  type: z.string().max(64),
  body: z.unknown()
})

export function signingInput (net: Uint8Array, bytes: Uint8Array): Uint8Array {
  return concatBytes(DOMAIN_TAG, net, bytes)
}

export function eventId (net: Uint8Array, bytes: Uint8Array): Uint8Array {
  const d = createHash('sha256').update(signingInput(net, bytes)).digest()
  // A plain Uint8Array view of the digest's own memory (tests and callers compare with Uint8Arrays).
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength)
}

/**
 * `bytes` and `sig` as views into ONE private copy of the envelope, instead of the separate
 * copies the CBOR decoder made: an event held in memory costs one buffer, not three. The
 * envelope is canonical CBOR [bytes, sig] (checked before this is called), so sig is its last
 * 64 bytes and bytes ends right before sig's 2-byte header.
 */
function sharedViews (envelope: Uint8Array, bytes: Uint8Array, sig: Uint8Array): { envelope: Uint8Array, bytes: Uint8Array, sig: Uint8Array } {
  // A copy, also when the store hands us a Buffer (whose slice() is a view into its pool).
  const own = Uint8Array.prototype.slice.call(envelope)
  const sigStart = own.byteLength - 64
  const bytesStart = sigStart - 2 - bytes.byteLength
  // Not the canonical layout (a damaged store read by openTrusted): keep the decoder's copies.
  if (sig.byteLength !== 64 || bytesStart < 1 || own[sigStart - 2] !== 0x58 || own[sigStart - 1] !== 0x40) return { envelope: own, bytes, sig }
  return { envelope: own, bytes: own.subarray(bytesStart, sigStart - 2), sig: own.subarray(sigStart) }
}

const cosignatureVerifier = new Ed25519Verifier(64)

/** Build and sign an event. Throws if the fields would not pass validation. */
export function signEvent (fields: EventFields, signer: Signer): SignedEvent {
  if (!equalBytes(fields.author, signer.publicKey)) {
    throw new WeftError('ERR_BAD_FIELD', 'event author is not the signing key')
  }
  const body = parseBody(fields.type, fields.body)
  const normal = { ...fields, body, deps: [...fields.deps].sort(compareBytes) } as EventFields
  // The same header check openEnvelope makes, so nothing signed here is refused by a peer.
  const h = Header.safeParse(normal)
  if (!h.success) {
    throw new WeftError('ERR_BAD_FIELD', `malformed event header: ${formatZodIssues(h.error)}`)
  }
  checkHeaderRules(normal)
  checkCosignature(normal, cosignatureVerifier)
  const bytes = canonicalEncode(normal)
  const sig = signer.sign(signingInput(normal.net, bytes))
  const envelope = canonicalEncode([bytes, sig])
  if (envelope.byteLength > LIMITS.maxEventBytes) {
    throw new WeftError('ERR_EVENT_TOO_LARGE', `event is ${envelope.byteLength} bytes, the limit is ${LIMITS.maxEventBytes}`)
  }
  const id = eventId(normal.net, bytes)
  return { fields: normal, bytes, sig, id, idHex: toHex(id), authorHex: toHex(normal.author), envelope }
}

function parseBody (type: string, body: unknown): EventFields['body'] {
  if (!isEventType(type)) {
    throw new WeftError('ERR_UNKNOWN_TYPE', `unknown event type "${type}"`)
  }
  const r = bodySchemas[type].safeParse(body)
  if (!r.success) {
    throw new WeftError('ERR_BAD_BODY', `invalid ${type} body: ${formatZodIssues(r.error)}`)
  }
  return r.data as EventFields['body']
}

export function formatZodIssues (err: z.ZodError): string {
  return err.issues.slice(0, 3).map((i) => `${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ')
}

/** Rules on the header alone (no causal context). */
function checkHeaderRules (f: EventFields): void {
  if (f.deps.length > LIMITS.maxDeps) {
    throw new WeftError('ERR_TOO_MANY_DEPS', `event has ${f.deps.length} deps, the limit is ${LIMITS.maxDeps}`)
  }
  for (let i = 1; i < f.deps.length; i++) {
    if (compareBytes(f.deps[i - 1] as Uint8Array, f.deps[i] as Uint8Array) >= 0) {
      throw new WeftError('ERR_BAD_DEPS', 'deps must be sorted and free of duplicates')
    }
  }
  if ((f.seq === 1) !== (f.prev === null)) {
    throw new WeftError('ERR_BAD_CHAIN', f.seq === 1 ? 'the first event of a feed (seq 1) must have prev = null' : `event seq ${f.seq} must name its previous event in prev`)
  }
  // A cheap lower bound that every causally valid event meets (lamport grows by at least one
  // along prev, and any parent has lamport >= 1); the exact rule needs the parents (merged log).
  const minLamport = Math.max(f.seq, f.deps.length > 0 ? 2 : 1)
  if (f.lamport < minLamport) {
    throw new WeftError('ERR_BAD_LAMPORT', `lamport ${f.lamport} is lower than possible for seq ${f.seq} with ${f.deps.length} deps (at least ${minLamport})`)
  }
}

/**
 * Intrinsic validation: everything that can be checked from the envelope alone (size, canonical
 * encoding, header shape, network, body schema, signature). Causal rules (prev, deps, lamport)
 * need the parents and are checked by the merged log.
 */
export function openEnvelope (envelope: Uint8Array, net: Uint8Array, verifier: Verifier): SignedEvent {
  if (envelope.byteLength > LIMITS.maxEventBytes) {
    throw new WeftError('ERR_EVENT_TOO_LARGE', `event is ${envelope.byteLength} bytes, the limit is ${LIMITS.maxEventBytes}`)
  }
  const outer = canonicalDecode(envelope)
  if (!Array.isArray(outer) || outer.length !== 2 || !(outer[0] instanceof Uint8Array) || !(outer[1] instanceof Uint8Array) || outer[1].byteLength !== 64) {
    throw new WeftError('ERR_BAD_ENVELOPE', 'an event envelope is a CBOR array [event bytes, 64-byte signature]')
  }
  const bytes = outer[0]
  const sig = outer[1]
  const raw = canonicalDecode(bytes)
  if (typeof raw === 'object' && raw !== null && 'v' in raw && raw.v !== EVENT_VERSION) {
    throw new WeftError('ERR_BAD_VERSION', `event version ${String(raw.v)} is not supported (this node speaks v${EVENT_VERSION})`)
  }
  const h = Header.safeParse(raw)
  if (!h.success) {
    throw new WeftError('ERR_BAD_FIELD', `malformed event header: ${formatZodIssues(h.error)}`)
  }
  if (!equalBytes(h.data.net, net)) {
    throw new WeftError('ERR_WRONG_NETWORK', `event belongs to network ${toHex(h.data.net)}, not ${toHex(net)}`)
  }
  const body = parseBody(h.data.type, h.data.body)
  const fields = { ...h.data, body } as EventFields
  checkHeaderRules(fields)
  if (!verifier.verify(fields.author, signingInput(net, bytes), sig)) {
    throw new WeftError('ERR_BAD_SIGNATURE', `signature does not verify for author ${authorName(fields.author)}`)
  }
  checkCosignature(fields, verifier)
  const id = eventId(net, bytes)
  return { fields, ...sharedViews(envelope, bytes, sig), id, idHex: toHex(id), authorHex: toHex(fields.author) }
}

/** The total order of the log: (lamport, author, seq), then id so forked twins still order. */
export function compareEvents (a: SignedEvent, b: SignedEvent): number {
  return a.fields.lamport - b.fields.lamport ||
    (a.authorHex < b.authorHex ? -1 : a.authorHex > b.authorHex ? 1 : 0) ||
    a.fields.seq - b.fields.seq ||
    (a.idHex < b.idHex ? -1 : a.idHex > b.idHex ? 1 : 0)
}

/**
 * Decode an envelope that this node validated before storing it: no signature check, no
 * schema pass. Loading 100,000 events at start-up must not cost 100,000 verifications;
 * `weft log verify` re-checks everything with `openEnvelope`.
 */
export function openTrusted (envelope: Uint8Array, net: Uint8Array): SignedEvent {
  let bytes: Uint8Array
  let sig: Uint8Array
  let fields: EventFields
  try {
    [bytes, sig] = decode(envelope) as [Uint8Array, Uint8Array]
    fields = decode(bytes) as EventFields
  } catch (err) {
    throw new WeftError('ERR_STORE', `a stored event does not decode (${(err as Error).message}); the store is damaged: run "weft log verify"`)
  }
  const id = eventId(net, bytes)
  return { fields, ...sharedViews(envelope, bytes, sig), id, idHex: toHex(id), authorHex: toHex(fields.author) }
}
