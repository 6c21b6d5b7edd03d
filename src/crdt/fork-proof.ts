import { canonicalDecode, canonicalEncode } from '../log/cbor.js'
import { WeftError } from '../log/errors.js'
import { openEnvelope, type SignedEvent, type Verifier } from '../log/event.js'
import { authorName } from '../log/author.js'

/**
 * Two validly signed events by one author with one seq: the author signed both, so the pair
 * proves equivocation to anyone, with no trust in whoever relays it.
 */
export interface ForkProof {
  readonly authorHex: string
  readonly seq: number
  /** The two events, ordered by id so every replica builds the same proof. */
  readonly a: SignedEvent
  readonly b: SignedEvent
}

export function makeForkProof (x: SignedEvent, y: SignedEvent): ForkProof {
  if (x.authorHex !== y.authorHex || x.fields.seq !== y.fields.seq || x.idHex === y.idHex) {
    throw new WeftError('ERR_BAD_FORK_PROOF', 'a fork proof needs two different events with the same author and seq')
  }
  const [a, b] = x.idHex < y.idHex ? [x, y] : [y, x]
  return { authorHex: a.authorHex, seq: a.fields.seq, a, b }
}

export function encodeForkProof (p: ForkProof): Uint8Array {
  return canonicalEncode([p.a.envelope, p.b.envelope])
}

export function decodeForkProof (bytes: Uint8Array, net: Uint8Array, verifier: Verifier): ForkProof {
  const v = canonicalDecode(bytes)
  if (!Array.isArray(v) || v.length !== 2 || !(v[0] instanceof Uint8Array) || !(v[1] instanceof Uint8Array)) {
    throw new WeftError('ERR_BAD_FORK_PROOF', 'a fork proof is a CBOR array of two event envelopes')
  }
  return makeForkProof(openEnvelope(v[0], net, verifier), openEnvelope(v[1], net, verifier))
}

export function describeForkProof (p: ForkProof): string {
  return `author ${authorName(p.a.fields.author)} signed two events at seq ${p.seq}: ${p.a.idHex.slice(0, 12)} and ${p.b.idHex.slice(0, 12)}`
}
