import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { gcmBackend, gcmImplementationsForTest, GCM_TAG_BYTES, type GcmOpen, type GcmSeal } from '../../src/net/gcm.js'

const key = new Uint8Array(randomBytes(32))
const impls = gcmImplementationsForTest(key)

function seal (s: GcmSeal, counter: number, aad: Uint8Array, parts: Uint8Array[]): Uint8Array {
  const n = parts.reduce((a, p) => a + p.byteLength, 0)
  const out = new Uint8Array(3 + n + GCM_TAG_BYTES).fill(0xee)
  s.sealInto(counter, aad, parts, out, 3)
  // Nothing before the offset is touched.
  expect([...out.subarray(0, 3)]).toEqual([0xee, 0xee, 0xee])
  return out.subarray(3)
}

function open (o: GcmOpen, counter: number, aad: Uint8Array, sealed: Uint8Array): Uint8Array | null {
  const n = sealed.byteLength - GCM_TAG_BYTES
  return o.open(counter, aad, [sealed.subarray(0, n)], n, sealed.subarray(n))
}

describe('AES-256-GCM with a kept key schedule (gcm.ts)', () => {
  it('uses OpenSSL EVP in this Node (the fast path the VPN relies on)', () => {
    expect(gcmBackend()).toBe('openssl-evp')
    expect(impls.evp).not.toBeNull()
  })

  it('EVP and node:crypto give the same bytes and open each other, for any counter, AAD and split of the plaintext', () => {
    const evp = impls.evp
    if (evp === null) throw new Error('no EVP')
    fc.assert(fc.property(
      fc.nat({ max: Number.MAX_SAFE_INTEGER }), fc.uint8Array({ maxLength: 8 }), fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 4 }),
      (counter, aad, parts) => {
        const a = seal(impls.node[0], counter, aad, parts)
        const b = seal(evp[0], counter, aad, parts)
        expect(Buffer.compare(a, b)).toBe(0)
        const whole = Buffer.concat(parts)
        expect(Buffer.from(open(evp[1], counter, aad, a) ?? [1, 2, 3]).equals(whole)).toBe(true)
        expect(Buffer.from(open(impls.node[1], counter, aad, b) ?? [1, 2, 3]).equals(whole)).toBe(true)
      }), { numRuns: 200 })
  })

  it('refuses a flipped bit anywhere, the wrong counter, the wrong AAD or the wrong key, and keeps working after', () => {
    const other = gcmImplementationsForTest(new Uint8Array(randomBytes(32)))
    if (impls.evp === null) throw new Error('no EVP')
    for (const [name, [s, o]] of [['node', impls.node], ['evp', impls.evp]] as const) {
      const aad = Uint8Array.of(0, 0, 0, 40)
      const plain = new Uint8Array(randomBytes(24))
      const sealed = seal(s, 9, aad, [plain])
      for (let i = 0; i < sealed.byteLength; i++) {
        const bad = sealed.slice()
        bad[i] = (bad[i] as number) ^ 1
        expect(open(o, 9, aad, bad), `${name}: bit flipped in byte ${i}`).toBeNull()
      }
      expect(open(o, 10, aad, sealed), `${name}: wrong counter`).toBeNull()
      expect(open(o, 9, Uint8Array.of(0, 0, 0, 41), sealed), `${name}: wrong AAD`).toBeNull()
      const otherOpen = name === 'node' ? other.node[1] : other.evp?.[1]
      expect(otherOpen !== undefined && open(otherOpen, 9, aad, sealed), `${name}: wrong key`).toBeNull()
      // A failed open leaves the context usable for the next frame.
      expect(Buffer.from(open(o, 9, aad, sealed) ?? []).equals(plain)).toBe(true)
    }
  })

  it('a body split into chunks opens like the whole; a body shorter than announced is refused', () => {
    const evp = impls.evp
    if (evp === null) throw new Error('no EVP')
    const aad = new Uint8Array(4)
    const plain = new Uint8Array(randomBytes(5000))
    const sealed = seal(evp[0], 1, aad, [plain])
    const body = sealed.subarray(0, 5000)
    const tag = sealed.subarray(5000)
    expect(Buffer.from(evp[1].open(1, aad, [body.subarray(0, 1), body.subarray(1, 4097), body.subarray(4097)], 5000, tag) ?? []).equals(plain)).toBe(true)
    expect(evp[1].open(1, aad, [body.subarray(0, 4000)], 5000, tag)).toBeNull()
    expect(evp[1].open(1, aad, [body], 4000, tag)).toBeNull()
  })

  it('refuses to write past the end of the output buffer', () => {
    const evp = impls.evp
    if (evp === null) throw new Error('no EVP')
    expect(() => { evp[0].sealInto(1, new Uint8Array(4), [new Uint8Array(100)], new Uint8Array(100 + GCM_TAG_BYTES - 1), 0) }).toThrow(RangeError)
    expect(() => { evp[0].sealInto(1, new Uint8Array(4), [new Uint8Array(100)], new Uint8Array(99), 0) }).toThrow(RangeError)
  })
})
