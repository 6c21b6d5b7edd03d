/**
 * Helpers to build envelopes by hand, bypassing `signEvent`'s checks, so each validation rule
 * can be hit on its own.
 */
import { canonicalEncode } from '../../src/log/cbor.js'
import { concatBytes, fromHex } from '../../src/log/bytes.js'
import { signingInput, type EventFields, type Signer } from '../../src/log/event.js'
import { isWeftError, type WeftErrorCode } from '../../src/log/errors.js'
import { identity, joinBody, NET } from '../support/fixtures.js'

export const alice = identity(0)
export const bob = identity(1)
export const carol = identity(2)

/** Valid header fields for a first event of `signer`, overridable. */
export function baseFields (signer: Signer = alice, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    v: 1,
    net: NET,
    author: signer.publicKey,
    seq: 1,
    prev: null,
    deps: [],
    lamport: 1,
    time: 1_700_000_000_000,
    type: 'node.join',
    body: joinBody('alpha'),
    ...over
  }
}

export function fieldsOf (over: Record<string, unknown> = {}, signer: Signer = alice): EventFields {
  return baseFields(signer, over) as unknown as EventFields
}

/** Sign arbitrary event bytes (domain tag + net + bytes) and wrap them in a canonical envelope. */
export function envelopeOfBytes (bytes: Uint8Array, signer: Signer = alice, net: Uint8Array = NET): Uint8Array {
  const sig = signer.sign(signingInput(net, bytes))
  return canonicalEncode([bytes, sig])
}

/** Canonically encode any object as the event bytes, sign and wrap it. */
export function rawEnvelope (fields: Record<string, unknown>, signer: Signer = alice, net: Uint8Array = NET): Uint8Array {
  return envelopeOfBytes(canonicalEncode(fields), signer, net)
}

/** A CBOR map with its entries in exactly the given order (each key and value canonical). */
export function mapInOrder (entries: Array<[string, unknown]>): Uint8Array {
  if (entries.length >= 24) throw new Error('small maps only')
  return concatBytes(new Uint8Array([0xa0 + entries.length]), ...entries.flatMap(([k, v]) => [canonicalEncode(k), canonicalEncode(v)]))
}

/** Replace the first occurrence of `from` (hex) by `to` (hex) in `bytes`. */
export function patchHex (bytes: Uint8Array, from: string, to: string): Uint8Array {
  const hex = Buffer.from(bytes).toString('hex')
  const i = hex.indexOf(from)
  if (i < 0 || i % 2 !== 0) throw new Error(`pattern ${from} not found`)
  return fromHex(hex.slice(0, i) + to + hex.slice(i + from.length))
}

export function errorOf (fn: () => unknown): { code: WeftErrorCode, message: string } {
  try {
    fn()
  } catch (err) {
    if (isWeftError(err)) return { code: err.code, message: err.message }
    throw err
  }
  throw new Error('expected a WeftError, nothing was thrown')
}
