import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto'
import { derive, type NetworkToken } from '../log/token.js'
import { TransportError } from './transport-error.js'

/** One transport pre-shared key and the secret epoch it belongs to (0 for the token's own). */
export interface TransportKey { epoch: number, key: Uint8Array }

/**
 * The keys the transport protection uses, read once per connection so a rotation applies to the
 * next connection without a restart. An initiator proves `current()`; a responder accepts any of
 * `current()` and `accepted()` (the grace window of a rotation keeps the previous key there).
 */
export interface TransportKeys {
  current: () => TransportKey
  accepted: () => readonly TransportKey[]
}

export const TRANSPORT_KEY_BYTES = 32
/** Bytes of each side's handshake nonce. */
export const HANDSHAKE_NONCE_BYTES = 32
/** Bytes of each side's proof of key possession (HMAC-SHA256). */
export const HANDSHAKE_PROOF_BYTES = 32

const LABEL = 'weft transport v1'

/** The default keys: one epoch, the PSK derived from the network token. */
export function tokenTransportKeys (token: NetworkToken): TransportKeys {
  const key: TransportKey = { epoch: 0, key: derive(token, 'transport-psk/v1', TRANSPORT_KEY_BYTES) }
  return { current: () => key, accepted: () => [key] }
}

export function checkTransportKey (k: TransportKey): void {
  if (k.key.byteLength !== TRANSPORT_KEY_BYTES) {
    throw new TransportError('bad-key', `transport key of epoch ${k.epoch} is ${k.key.byteLength} bytes; it must be ${TRANSPORT_KEY_BYTES}`)
  }
}

/** What one key and both nonces give a connection: the two proofs and one frame key per direction. */
export interface SessionSecrets {
  initiatorProof: Uint8Array
  responderProof: Uint8Array
  initiatorToResponder: Uint8Array
  responderToInitiator: Uint8Array
}

function proof (key: Uint8Array, role: string, transcript: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', key).update(`${LABEL} ${role} proof`).update(transcript).digest())
}

function frameKey (key: Uint8Array, direction: string, transcript: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', key, transcript, `${LABEL} ${direction}`, 32))
}

/**
 * The transcript is both fresh nonces, so a proof or a key never repeats across connections and a
 * recorded handshake cannot be replayed against either side.
 */
export function sessionSecrets (key: Uint8Array, initiatorNonce: Uint8Array, responderNonce: Uint8Array): SessionSecrets {
  const transcript = new Uint8Array(initiatorNonce.byteLength + responderNonce.byteLength)
  transcript.set(initiatorNonce, 0)
  transcript.set(responderNonce, initiatorNonce.byteLength)
  return {
    initiatorProof: proof(key, 'initiator', transcript),
    responderProof: proof(key, 'responder', transcript),
    initiatorToResponder: frameKey(key, 'initiator to responder', transcript),
    responderToInitiator: frameKey(key, 'responder to initiator', transcript)
  }
}

export function sameProof (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b)
}
