import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { TransportError } from './transport-error.js'

/**
 * The frames of a protected connection, after the handshake: each frame is
 *
 *   length (4 bytes, big-endian: ciphertext + tag) | AES-256-GCM ciphertext | tag (16 bytes)
 *
 * The length is authenticated as associated data. The nonce is never sent: it is a per-direction
 * frame counter (each direction has its own key, see transport-keys.ts), so a replayed, dropped
 * or reordered frame fails authentication like a tampered one. AES-256-GCM because node:crypto
 * runs it with AES-NI at ~2 GB/s per core on 64 KiB buffers (ChaCha20-Poly1305 ran at ~0.7 GB/s);
 * no WASM memory to exhaust.
 */
export const FRAME_HEADER_BYTES = 4
export const FRAME_TAG_BYTES = 16
/**
 * The largest plaintext in one frame; larger writes are split. 128 KiB rather than 64: noise hands
 * down messages of 65,537 bytes (2-byte length + 65,535), which 64 KiB frames split into a full
 * and a 1-byte frame (8.0 vs 6.2 CPU ms per MB in one noisy run of bench/transport.ts). It is
 * also the most a reader holds of an incomplete frame, per connection.
 */
export const MAX_FRAME_PLAINTEXT = 128 * 1024
/** The largest length field a reader accepts; anything larger closes the connection unread. */
export const MAX_FRAME_BODY = MAX_FRAME_PLAINTEXT + FRAME_TAG_BYTES

const CIPHER = 'aes-256-gcm'
const NONCE_BYTES = 12

/** The GCM nonce of frame `n`: 4 zero bytes and the counter as a 64-bit big-endian integer. */
function counterNonce (n: number): Buffer {
  const nonce = Buffer.alloc(NONCE_BYTES)
  nonce.writeUInt32BE(Math.floor(n / 0x1_0000_0000), 4)
  nonce.writeUInt32BE(n >>> 0, 8)
  return nonce
}

/**
 * The same bytes as a plain Uint8Array (no copy): libp2p hands Uint8Arrays up the stack (pnet
 * did), and code and tests above compare them with Uint8Arrays, which a Buffer does not equal.
 */
function plain (b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
}

function frameKey (key: Uint8Array): KeyObject {
  if (key.byteLength !== 32) throw new TransportError('bad-key', `a frame key is 32 bytes, got ${key.byteLength}`)
  return createSecretKey(key)
}

/** Encrypts one direction's plaintext into frames. */
export class FrameSealer {
  private readonly key: KeyObject
  private counter = 0

  constructor (key: Uint8Array) {
    this.key = frameKey(key)
  }

  /** Frames for `plain`, split at MAX_FRAME_PLAINTEXT; nothing for empty input. */
  seal (plain: Uint8Array | Uint8ArrayList): Uint8Array[] {
    const list = plain instanceof Uint8ArrayList ? plain : new Uint8ArrayList(plain)
    const frames: Uint8Array[] = []
    for (let start = 0; start < list.byteLength; start += MAX_FRAME_PLAINTEXT) {
      const end = Math.min(start + MAX_FRAME_PLAINTEXT, list.byteLength)
      frames.push(this.sealOne(list.sublist(start, end)))
    }
    return frames
  }

  private sealOne (part: Uint8ArrayList): Uint8Array {
    if (this.counter >= Number.MAX_SAFE_INTEGER) {
      // 2^53 frames is out of reach; refusing beats ever reusing a nonce.
      throw new TransportError('nonce-exhausted', 'the frame counter is exhausted; reconnect')
    }
    const header = Buffer.alloc(FRAME_HEADER_BYTES)
    header.writeUInt32BE(part.byteLength + FRAME_TAG_BYTES)
    const cipher = createCipheriv(CIPHER, this.key, counterNonce(this.counter++), { authTagLength: FRAME_TAG_BYTES })
    cipher.setAAD(header)
    const chunks: Uint8Array[] = [header]
    for (const chunk of part) chunks.push(cipher.update(chunk))
    chunks.push(cipher.final(), cipher.getAuthTag())
    return plain(Buffer.concat(chunks))
  }
}

/**
 * Decrypts one direction's frames. It holds at most one incomplete frame (< MAX_FRAME_BODY +
 * FRAME_HEADER_BYTES bytes): complete frames are opened as soon as they arrive and handed on.
 */
export class FrameOpener {
  private readonly key: KeyObject
  private readonly buffer = new Uint8ArrayList()
  private counter = 0

  constructor (key: Uint8Array) {
    this.key = frameKey(key)
  }

  /** Bytes of an incomplete frame waiting for the rest. */
  get pendingBytes (): number {
    return this.buffer.byteLength
  }

  /** The plaintexts of every frame `data` completes; throws TransportError on a bad or oversized frame. */
  push (data: Uint8Array | Uint8ArrayList): Uint8Array[] {
    this.buffer.append(data)
    const out: Uint8Array[] = []
    while (this.buffer.byteLength >= FRAME_HEADER_BYTES) {
      const length = this.buffer.getUint32(0)
      if (length < FRAME_TAG_BYTES || length > MAX_FRAME_BODY) {
        throw new TransportError('bad-frame', `frame length ${length} is outside ${FRAME_TAG_BYTES}..${MAX_FRAME_BODY}`)
      }
      if (this.buffer.byteLength < FRAME_HEADER_BYTES + length) break
      // sublist/subarray of the header and tag only: the body is deciphered chunk by chunk, not copied.
      const header = this.buffer.subarray(0, FRAME_HEADER_BYTES)
      const end = FRAME_HEADER_BYTES + length
      const body = this.buffer.sublist(FRAME_HEADER_BYTES, end - FRAME_TAG_BYTES)
      const tag = this.buffer.subarray(end - FRAME_TAG_BYTES, end)
      this.buffer.consume(end)
      out.push(this.openOne(header, body, tag))
    }
    return out
  }

  /** Call when the input ends: an incomplete frame means the connection was cut mid-frame. */
  finish (): void {
    if (this.buffer.byteLength > 0) {
      throw new TransportError('truncated', `the connection ended inside a frame (${this.buffer.byteLength} bytes of it)`)
    }
  }

  private openOne (header: Uint8Array, body: Uint8ArrayList, tag: Uint8Array): Uint8Array {
    const decipher = createDecipheriv(CIPHER, this.key, counterNonce(this.counter++), { authTagLength: FRAME_TAG_BYTES })
    decipher.setAAD(header)
    decipher.setAuthTag(tag)
    try {
      const parts: Uint8Array[] = []
      for (const chunk of body) parts.push(decipher.update(chunk))
      parts.push(decipher.final())
      return plain(parts.length === 2 && parts[1]?.byteLength === 0 ? parts[0] as Buffer : Buffer.concat(parts))
    } catch (err) {
      throw new TransportError('bad-frame', 'a frame failed authentication (tampered, replayed or not ours)', { cause: err })
    }
  }
}
