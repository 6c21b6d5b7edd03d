/**
 * AES-256-GCM with counter nonces for the transport frames (transport-frames.ts), with a key
 * schedule that is kept between frames.
 *
 * Why not only node:crypto: `createCipheriv` builds a new OpenSSL context per frame (key
 * expansion, GHASH table, and several layers of argument checking in JavaScript). For a 98-byte
 * ping that costs 7 µs when the code is hot and ~65 µs when it is cold (the VPN's normal case:
 * one packet every few ms, other work in between), and a ping crosses four of them. OpenSSL's EVP
 * interface (which the Node binary carries and exports) lets one context per direction be keyed
 * once and re-IVed per frame: ~1 µs hot and ~22 µs cold (measured on the bench VM, docs/vpn.md
 * "Where a ping's time goes"). It is reached through koffi, already used for the TUN device.
 *
 * When those symbols are missing (a Node built against a shared OpenSSL that is not loaded
 * globally, another platform) node:crypto is used, with the same bytes on the wire: the two are
 * interchangeable between peers (tested against each other).
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto'
import { createRequire } from 'node:module'

export const GCM_TAG_BYTES = 16
const NONCE_BYTES = 12
const EVP_CTRL_GCM_GET_TAG = 0x10
const EVP_CTRL_GCM_SET_TAG = 0x11

/** One direction's AEAD: the n-th call uses nonce n (4 zero bytes, n as 64-bit big-endian). */
export interface GcmSeal {
  /** Writes the ciphertext of the concatenated `parts` at `out[offset]` and the tag right after it. */
  sealInto: (counter: number, aad: Uint8Array, parts: readonly Uint8Array[], out: Uint8Array, offset: number) => void
}

export interface GcmOpen {
  /** The plaintext of `body` (in chunks), or null when the tag does not verify. */
  open: (counter: number, aad: Uint8Array, body: readonly Uint8Array[], bodyBytes: number, tag: Uint8Array) => Uint8Array | null
}

function writeNonce (nonce: Uint8Array, n: number): void {
  const hi = Math.floor(n / 0x1_0000_0000)
  const lo = n >>> 0
  nonce[4] = hi >>> 24; nonce[5] = (hi >>> 16) & 0xff; nonce[6] = (hi >>> 8) & 0xff; nonce[7] = hi & 0xff
  nonce[8] = lo >>> 24; nonce[9] = (lo >>> 16) & 0xff; nonce[10] = (lo >>> 8) & 0xff; nonce[11] = lo & 0xff
}

type Ptr = unknown
interface Evp {
  newCtx: () => Ptr
  freeCtx: (ctx: Ptr) => void
  cipher: Ptr
  encInit: (ctx: Ptr, type: Ptr, impl: Ptr, key: Uint8Array | null, iv: Uint8Array | null) => number
  encUpdate: (ctx: Ptr, out: Uint8Array | null, outl: Int32Array, input: Uint8Array, inl: number) => number
  encFinal: (ctx: Ptr, out: Uint8Array, outl: Int32Array) => number
  decInit: (ctx: Ptr, type: Ptr, impl: Ptr, key: Uint8Array | null, iv: Uint8Array | null) => number
  decUpdate: (ctx: Ptr, out: Uint8Array | null, outl: Int32Array, input: Uint8Array, inl: number) => number
  decFinal: (ctx: Ptr, out: Uint8Array, outl: Int32Array) => number
  ctrl: (ctx: Ptr, type: number, arg: number, ptr: Uint8Array) => number
  registry: FinalizationRegistry<Ptr>
}

let evp: Evp | null | undefined

/** OpenSSL's EVP functions in this process, or null (then node:crypto is used). */
function loadEvp (): Evp | null {
  if (evp !== undefined) return evp
  if (process.env.WEFT_GCM === 'node') return (evp = null)
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi')
    const lib = koffi.load(null)
    const fn = (name: string, ret: string, args: string[]): never => lib.func(name, ret, args) as never
    const update = ['void *', 'void *', 'void *', 'void *', 'int']
    const freeCtx = fn('EVP_CIPHER_CTX_free', 'void', ['void *']) as Evp['freeCtx']
    const loaded: Evp = {
      newCtx: fn('EVP_CIPHER_CTX_new', 'void *', []),
      freeCtx,
      cipher: (fn('EVP_aes_256_gcm', 'void *', []) as () => Ptr)(),
      encInit: fn('EVP_EncryptInit_ex', 'int', ['void *', 'void *', 'void *', 'void *', 'void *']),
      encUpdate: fn('EVP_EncryptUpdate', 'int', update),
      encFinal: fn('EVP_EncryptFinal_ex', 'int', ['void *', 'void *', 'void *']),
      decInit: fn('EVP_DecryptInit_ex', 'int', ['void *', 'void *', 'void *', 'void *', 'void *']),
      decUpdate: fn('EVP_DecryptUpdate', 'int', update),
      decFinal: fn('EVP_DecryptFinal_ex', 'int', ['void *', 'void *', 'void *']),
      ctrl: fn('EVP_CIPHER_CTX_ctrl', 'int', ['void *', 'int', 'int', 'void *']),
      registry: new FinalizationRegistry((ctx) => { freeCtx(ctx) })
    }
    if (loaded.cipher === null) return (evp = null)
    evp = selfTest(loaded) ? loaded : null
  } catch {
    evp = null
  }
  return evp
}

/** The EVP path must give node:crypto's bytes (a known answer), or it is not used. */
function selfTest (e: Evp): boolean {
  const key = new Uint8Array(32).fill(7)
  const aad = Uint8Array.of(0, 0, 0, 21)
  const plain = new TextEncoder().encode('weft gcm known answer')
  const want = new NodeSeal(key)
  const got = new EvpSeal(e, key)
  const a = new Uint8Array(plain.byteLength + GCM_TAG_BYTES)
  const b = new Uint8Array(plain.byteLength + GCM_TAG_BYTES)
  want.sealInto(3, aad, [plain], a, 0)
  got.sealInto(3, aad, [plain], b, 0)
  if (Buffer.compare(a, b) !== 0) return false
  const opened = new EvpOpen(e, key).open(3, aad, [b.subarray(0, plain.byteLength)], plain.byteLength, b.subarray(plain.byteLength))
  return opened !== null && Buffer.compare(opened, plain) === 0
}

class NodeSeal implements GcmSeal {
  private readonly key: KeyObject
  private readonly nonce = Buffer.alloc(NONCE_BYTES)
  constructor (key: Uint8Array) { this.key = createSecretKey(key) }

  sealInto (counter: number, aad: Uint8Array, parts: readonly Uint8Array[], out: Uint8Array, offset: number): void {
    writeNonce(this.nonce, counter)
    const cipher = createCipheriv('aes-256-gcm', this.key, this.nonce, { authTagLength: GCM_TAG_BYTES })
    cipher.setAAD(aad)
    let o = offset
    for (const p of parts) { const c = cipher.update(p); out.set(c, o); o += c.byteLength }
    const f = cipher.final()
    out.set(f, o); o += f.byteLength
    out.set(cipher.getAuthTag(), o)
  }
}

class NodeOpen implements GcmOpen {
  private readonly key: KeyObject
  private readonly nonce = Buffer.alloc(NONCE_BYTES)
  constructor (key: Uint8Array) { this.key = createSecretKey(key) }

  open (counter: number, aad: Uint8Array, body: readonly Uint8Array[], bodyBytes: number, tag: Uint8Array): Uint8Array | null {
    writeNonce(this.nonce, counter)
    const decipher = createDecipheriv('aes-256-gcm', this.key, this.nonce, { authTagLength: GCM_TAG_BYTES })
    decipher.setAAD(aad)
    decipher.setAuthTag(tag)
    try {
      const out = new Uint8Array(bodyBytes)
      let o = 0
      for (const chunk of body) { const p = decipher.update(chunk); out.set(p, o); o += p.byteLength }
      decipher.final()
      return out
    } catch {
      return null
    }
  }
}

/** A cipher context with its key schedule set (freed with `owner`), for one direction. */
function keyedContext (e: Evp, owner: object, init: Evp['encInit'], key: Uint8Array, name: string): Ptr {
  const ctx = e.newCtx()
  if (ctx === null) throw new Error('EVP_CIPHER_CTX_new failed')
  e.registry.register(owner, ctx)
  if (init(ctx, e.cipher, null, key, null) !== 1) throw new Error(`${name} failed`)
  return ctx
}

class EvpSeal implements GcmSeal {
  private readonly ctx: Ptr
  private readonly nonce = new Uint8Array(NONCE_BYTES)
  private readonly outl = new Int32Array(1)
  private readonly scratch = new Uint8Array(16)

  constructor (private readonly e: Evp, key: Uint8Array) {
    this.ctx = keyedContext(e, this, e.encInit, key, 'EVP_EncryptInit_ex')
  }

  sealInto (counter: number, aad: Uint8Array, parts: readonly Uint8Array[], out: Uint8Array, offset: number): void {
    const e = this.e
    writeNonce(this.nonce, counter)
    let ok = e.encInit(this.ctx, null, null, null, this.nonce) === 1 && e.encUpdate(this.ctx, null, this.outl, aad, aad.byteLength) === 1
    let o = offset
    for (const p of parts) {
      if (p.byteLength === 0) continue
      // GCM is a stream mode: each update writes exactly as many bytes as it is given.
      if (out.byteLength - o < p.byteLength) throw new RangeError('GCM output buffer too small')
      ok = ok && e.encUpdate(this.ctx, out.subarray(o), this.outl, p, p.byteLength) === 1
      o += p.byteLength
    }
    ok = ok && e.encFinal(this.ctx, this.scratch, this.outl) === 1
    if (out.byteLength - o < GCM_TAG_BYTES) throw new RangeError('GCM output buffer too small')
    ok = ok && e.ctrl(this.ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG_BYTES, out.subarray(o, o + GCM_TAG_BYTES)) === 1
    if (!ok) throw new Error('AES-256-GCM encryption failed in OpenSSL')
  }
}

class EvpOpen implements GcmOpen {
  private readonly ctx: Ptr
  private readonly nonce = new Uint8Array(NONCE_BYTES)
  private readonly outl = new Int32Array(1)
  private readonly scratch = new Uint8Array(16)
  private readonly tag = new Uint8Array(GCM_TAG_BYTES)

  constructor (private readonly e: Evp, key: Uint8Array) {
    this.ctx = keyedContext(e, this, e.decInit, key, 'EVP_DecryptInit_ex')
  }

  open (counter: number, aad: Uint8Array, body: readonly Uint8Array[], bodyBytes: number, tag: Uint8Array): Uint8Array | null {
    const e = this.e
    writeNonce(this.nonce, counter)
    const out = new Uint8Array(bodyBytes)
    let ok = e.decInit(this.ctx, null, null, null, this.nonce) === 1 && e.decUpdate(this.ctx, null, this.outl, aad, aad.byteLength) === 1
    let o = 0
    for (const chunk of body) {
      if (chunk.byteLength === 0) continue
      if (bodyBytes - o < chunk.byteLength) return null
      ok = ok && e.decUpdate(this.ctx, out.subarray(o), this.outl, chunk, chunk.byteLength) === 1
      o += chunk.byteLength
    }
    if (o !== bodyBytes) return null
    // A copy: the caller's tag may be a view of a buffer that OpenSSL must not be handed as writable.
    this.tag.set(tag)
    ok = ok && e.ctrl(this.ctx, EVP_CTRL_GCM_SET_TAG, GCM_TAG_BYTES, this.tag) === 1
    ok = ok && e.decFinal(this.ctx, this.scratch, this.outl) === 1
    return ok ? out : null
  }
}

/** The sealing side of one direction under `key` (32 bytes). */
export function gcmSeal (key: Uint8Array): GcmSeal {
  const e = loadEvp()
  return e === null ? new NodeSeal(key) : new EvpSeal(e, key)
}

/** The opening side of one direction under `key` (32 bytes). */
export function gcmOpen (key: Uint8Array): GcmOpen {
  const e = loadEvp()
  return e === null ? new NodeOpen(key) : new EvpOpen(e, key)
}

/** Which implementation this process uses ('openssl-evp' or 'node-crypto'), for status and benches. */
export function gcmBackend (): 'openssl-evp' | 'node-crypto' {
  return loadEvp() === null ? 'node-crypto' : 'openssl-evp'
}

/** Tests only: both implementations, to check that they interoperate. */
export function gcmImplementationsForTest (key: Uint8Array): { node: [GcmSeal, GcmOpen], evp: [GcmSeal, GcmOpen] | null } {
  const e = loadEvp()
  return { node: [new NodeSeal(key), new NodeOpen(key)], evp: e === null ? null : [new EvpSeal(e, key), new EvpOpen(e, key)] }
}
