import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'
import { authorName } from './author.js'
import { toHex } from './bytes.js'
import { WeftError } from './errors.js'
import type { Signer, Verifier } from './event.js'

/** A node's own Ed25519 key: who it is in the log. The token says only which network. */
export interface NodeIdentity extends Signer {
  readonly authorHex: string
  /** The libp2p PeerId string of this key. */
  readonly peerId: string
  /** PKCS#8 PEM, for the key file only. */
  exportPem (): string
}

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

function fromKeyObject (privateKey: KeyObject): NodeIdentity {
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new WeftError('ERR_KEY_CONTENT', `key is ${privateKey.asymmetricKeyType ?? 'unknown'}, expected ed25519`)
  }
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' })
  const publicKey = new Uint8Array(Buffer.from(jwk.x as string, 'base64url'))
  return {
    publicKey,
    authorHex: toHex(publicKey),
    peerId: authorName(publicKey),
    sign: (data) => new Uint8Array(sign(null, data, privateKey)),
    exportPem: () => privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
  }
}

export function generateIdentity (): NodeIdentity {
  return fromKeyObject(generateKeyPairSync('ed25519').privateKey)
}

/** Deterministic identity from a 32-byte seed: for test vectors and reproducible demos only. */
export function identityFromSeed (seed: Uint8Array): NodeIdentity {
  if (seed.byteLength !== 32) throw new WeftError('ERR_KEY_CONTENT', 'an Ed25519 seed is 32 bytes')
  return fromKeyObject(createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' }))
}

/** The 32-byte Ed25519 seed of a key (the last 32 bytes of its PKCS#8 DER form). */
export function seedOf (identity: NodeIdentity): Uint8Array {
  const der = createPrivateKey({ key: identity.exportPem(), format: 'pem' }).export({ format: 'der', type: 'pkcs8' })
  return new Uint8Array(der.subarray(der.byteLength - 32))
}

export function identityFromPem (pem: string): NodeIdentity {
  let key: KeyObject
  try {
    key = createPrivateKey({ key: pem, format: 'pem' })
  } catch (err) {
    throw new WeftError('ERR_KEY_CONTENT', `key file does not hold a PKCS#8 PEM private key: ${(err as Error).message}`)
  }
  return fromKeyObject(key)
}

/**
 * Verifies with node:crypto (OpenSSL) and caches one KeyObject per author: building the key
 * costs more than the verification itself.
 */
export class Ed25519Verifier implements Verifier {
  private readonly keys = new Map<string, KeyObject>()
  constructor (private readonly maxCached = 4096) {}

  verify (publicKey: Uint8Array, data: Uint8Array, sig: Uint8Array): boolean {
    const k = toHex(publicKey)
    let key = this.keys.get(k)
    if (key === undefined) {
      try {
        key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') }, format: 'jwk' })
      } catch {
        return false
      }
      if (this.keys.size >= this.maxCached) this.keys.clear()
      this.keys.set(k, key)
    }
    try {
      return verify(null, data, key, sig)
    } catch {
      return false
    }
  }
}
