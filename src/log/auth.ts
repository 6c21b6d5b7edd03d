import { canonicalEncode } from './cbor.js'
import { concatBytes, utf8 } from './bytes.js'
import { WeftError } from './errors.js'
import type { EventType } from './bodies.js'
import type { Signer, Verifier } from './event.js'

/** Separates cosignatures from event signatures made with the same kind of key. */
export const AUTH_DOMAIN_TAG = utf8.encode('weft/auth/v1\0')

/** What a cosignature covers: the event's position and content, not the signature field itself. */
export interface AuthTarget {
  net: Uint8Array
  author: Uint8Array
  seq: number
  type: EventType | string
  body: unknown
}

function withoutAuth (body: unknown): unknown {
  if (typeof body !== 'object' || body === null || !('auth' in body)) return body
  const { auth: _auth, ...rest } = body as Record<string, unknown>
  return rest
}

/**
 * The bytes an owner or delegate signs. Binding the author and seq makes the cosignature valid in
 * exactly one place of the log: a replay needs another event at the same (author, seq), which is
 * a fork and freezes that author.
 */
export function authSigningInput (t: AuthTarget): Uint8Array {
  return concatBytes(AUTH_DOMAIN_TAG, t.net, canonicalEncode([t.author, t.seq, t.type, withoutAuth(t.body)]))
}

export function cosign (t: AuthTarget, signer: Signer): { by: Uint8Array, sig: Uint8Array } {
  return { by: signer.publicKey, sig: signer.sign(authSigningInput(t)) }
}

/** Intrinsic check of a body's `auth`, if any: a wrong cosignature makes the event invalid. */
export function checkCosignature (t: AuthTarget, verifier: Verifier): void {
  const body = t.body as { auth?: { by: Uint8Array, sig: Uint8Array } } | undefined
  const auth = body?.auth
  if (auth === undefined) return
  if (!verifier.verify(auth.by, authSigningInput(t), auth.sig)) {
    throw new WeftError('ERR_BAD_AUTH', 'the cosignature in body.auth does not verify for this event (it is bound to the author, seq, type and body)')
  }
}
