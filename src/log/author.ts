import { base58btc } from 'multiformats/bases/base58'
import { concatBytes, equalBytes } from './bytes.js'
import { WeftError } from './errors.js'

/**
 * Authors are raw Ed25519 public keys in the log. People see them as libp2p PeerIds
 * ("12D3KooW…"): identity multihash of the protobuf-encoded public key, base58btc. Computed
 * here without libp2p so the pure layers can name authors the way the network does.
 */
const PEER_ID_PREFIX = new Uint8Array([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])

export function authorName (publicKey: Uint8Array): string {
  return base58btc.baseEncode(concatBytes(PEER_ID_PREFIX, publicKey))
}

export function parseAuthorName (text: string): Uint8Array {
  let raw: Uint8Array
  try {
    raw = base58btc.baseDecode(text)
  } catch {
    throw new WeftError('ERR_BAD_INPUT', `"${text}" is not a peer id (base58, starting with 12D3KooW)`)
  }
  if (raw.byteLength !== 38 || !equalBytes(raw.subarray(0, 6), PEER_ID_PREFIX)) {
    throw new WeftError('ERR_BAD_INPUT', `"${text}" is not an Ed25519 peer id (expected 12D3KooW…)`)
  }
  return new Uint8Array(raw.subarray(6))
}
