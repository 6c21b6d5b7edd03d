import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, type KeyObject } from 'node:crypto'
import { concatBytes, utf8 } from './bytes.js'
import { WeftError } from './errors.js'

/**
 * Sealing a rotated transport key to each remaining member (`network.rotate`): X25519 from an
 * ephemeral key to the member's `seal` key (named in its `node.join`), HKDF-SHA256 bound to the
 * network, epoch and both public keys, and AES-256-GCM over the 32-byte key. A fresh key per
 * recipient and rotation, so a fixed nonce is safe. Only node:crypto.
 */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')
const NONCE = new Uint8Array(12)
export const SEALED_BOX_BYTES = 48

export interface SealKey {
  readonly publicKey: Uint8Array
  readonly privateKey: KeyObject
}

function rawPublic (k: KeyObject): Uint8Array {
  const jwk = createPublicKey(k).export({ format: 'jwk' })
  return new Uint8Array(Buffer.from(jwk.x as string, 'base64url'))
}

function publicKeyObject (raw: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' })
}

/** The node's seal key, derived from its Ed25519 seed (so it needs no file of its own). */
export function sealKeyFromSeed (ed25519Seed: Uint8Array): SealKey {
  const raw = new Uint8Array(hkdfSync('sha256', ed25519Seed, utf8.encode('weft/v1'), utf8.encode('seal-x25519/v1'), 32))
  const privateKey = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' })
  return { publicKey: rawPublic(privateKey), privateKey }
}

function boxKey (shared: Uint8Array, net: Uint8Array, epoch: number, ephemeral: Uint8Array, to: Uint8Array): Buffer {
  const info = concatBytes(utf8.encode(`weft-seal/v1/${epoch}`), ephemeral, to)
  return Buffer.from(hkdfSync('sha256', shared, net, info, 32))
}

export interface SealRecipient { readonly author: Uint8Array, readonly seal: Uint8Array }

export function sealKey (key: Uint8Array, recipients: readonly SealRecipient[], net: Uint8Array, epoch: number): { ephemeral: Uint8Array, sealed: Array<{ to: Uint8Array, box: Uint8Array }> } {
  if (key.byteLength !== 32) throw new WeftError('ERR_BAD_INPUT', 'a transport key is 32 bytes')
  const eph = generateKeyPairSync('x25519')
  const ephemeral = rawPublic(eph.privateKey)
  const sealed = recipients.map((r) => {
    const shared = new Uint8Array(diffieHellman({ privateKey: eph.privateKey, publicKey: publicKeyObject(r.seal) }))
    const c = createCipheriv('aes-256-gcm', boxKey(shared, net, epoch, ephemeral, r.seal), NONCE)
    const box = concatBytes(new Uint8Array(c.update(key)), new Uint8Array(c.final()), new Uint8Array(c.getAuthTag()))
    return { to: r.author, box }
  })
  return { ephemeral, sealed }
}

/** Our box in a rotation, opened; undefined when there is none for us or it does not open. */
export function openSealedKey (rotation: { epoch: number, ephemeral: Uint8Array, sealed: ReadonlyArray<{ to: string, box: Uint8Array }> }, me: { authorHex: string, seal: SealKey }, net: Uint8Array): Uint8Array | undefined {
  const mine = rotation.sealed.find((s) => s.to === me.authorHex)
  if (mine === undefined || mine.box.byteLength !== SEALED_BOX_BYTES) return undefined
  try {
    const shared = new Uint8Array(diffieHellman({ privateKey: me.seal.privateKey, publicKey: publicKeyObject(rotation.ephemeral) }))
    const d = createDecipheriv('aes-256-gcm', boxKey(shared, net, rotation.epoch, rotation.ephemeral, me.seal.publicKey), NONCE)
    d.setAuthTag(mine.box.subarray(32))
    return concatBytes(new Uint8Array(d.update(mine.box.subarray(0, 32))), new Uint8Array(d.final()))
  } catch {
    return undefined
  }
}
