import { decode, encode, rfc8949EncodeOptions } from 'cborg'
import { WeftError } from './errors.js'
import { equalBytes } from './bytes.js'

/**
 * Canonical CBOR (RFC 8949 §4.2.1 core deterministic encoding): shortest integers, map keys
 * sorted bytewise, no indefinite lengths, no floats we did not ask for. Decoding is strict and
 * then re-encodes: bytes that do not round-trip exactly are not canonical and are refused, so
 * one event has exactly one byte form and therefore one id.
 */
const DECODE_OPTIONS = {
  strict: true,
  rejectDuplicateMapKeys: true,
  allowIndefinite: false,
  allowUndefined: false,
  allowInfinity: false,
  allowNaN: false,
  allowBigInt: false,
  useMaps: false
} as const

export function canonicalEncode (value: unknown): Uint8Array {
  return encode(stripUndefined(value), rfc8949EncodeOptions)
}

/**
 * Accepts every well-formed CBOR item the strict pass refuses for form only (non-minimal
 * integers and lengths, indefinite lengths, duplicate or non-string map keys, undefined,
 * big integers, NaN and infinities): used only to tell "not canonical" from "not CBOR".
 */
const LENIENT_DECODE_OPTIONS = {
  strict: false,
  rejectDuplicateMapKeys: false,
  allowIndefinite: true,
  allowUndefined: true,
  allowInfinity: true,
  allowNaN: true,
  allowBigInt: true,
  useMaps: true
} as const

export function canonicalDecode (bytes: Uint8Array): unknown {
  let value: unknown
  try {
    value = decode(bytes, DECODE_OPTIONS)
  } catch (err) {
    let wellFormed = false
    try {
      decode(bytes, LENIENT_DECODE_OPTIONS)
      wellFormed = true
    } catch {}
    if (wellFormed) {
      throw new WeftError('ERR_NOT_CANONICAL', `CBOR is not in canonical (deterministic) form: ${(err as Error).message}`)
    }
    throw new WeftError('ERR_NOT_CBOR', `not valid CBOR: ${(err as Error).message}`)
  }
  let again: Uint8Array
  try {
    again = canonicalEncode(value)
  } catch (err) {
    throw new WeftError('ERR_NOT_CANONICAL', `CBOR value cannot be re-encoded: ${(err as Error).message}`)
  }
  if (!equalBytes(again, bytes)) {
    throw new WeftError('ERR_NOT_CANONICAL', 'CBOR is not in canonical (deterministic) form')
  }
  return value
}

/** Optional fields are omitted rather than encoded, since CBOR `undefined` has no canonical meaning here. */
export function stripUndefined (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripUndefined)
  if (value instanceof Uint8Array || value === null || typeof value !== 'object') return value
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) {
    if (v !== undefined) out[k] = stripUndefined(v)
  }
  return out
}
