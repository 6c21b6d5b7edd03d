import { describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { Uint8ArrayList } from 'uint8arraylist'
import {
  FRAME_HEADER_BYTES, FRAME_TAG_BYTES, FrameOpener, FrameSealer, MAX_FRAME_BODY, MAX_FRAME_PLAINTEXT, sealedSize
} from '../../src/net/transport-frames.js'
import { TransportError, type TransportFailure } from '../../src/net/transport-error.js'
import { sessionSecrets, tokenTransportKeys } from '../../src/net/transport-keys.js'
import { RefusalLog } from '../../src/net/refusal-log.js'
import { newToken } from '../../src/log/token.js'
import { TEST_TOKEN } from '../support/fixtures.js'

const key = (): Uint8Array => new Uint8Array(randomBytes(32))
const concat = (parts: Uint8Array[]): Buffer => Buffer.concat(parts)

function failure (fn: () => unknown): TransportFailure {
  try { fn() } catch (err) {
    expect(err).toBeInstanceOf(TransportError)
    return (err as TransportError).reason
  }
  throw new Error('expected a TransportError')
}

describe('transport frames', () => {
  it('splits a large write into frames of at most the maximum size and opens them back', () => {
    const k = key()
    const plain = randomBytes(3 * MAX_FRAME_PLAINTEXT + 17)
    const frames = new FrameSealer(k).seal(plain)
    expect(frames).toHaveLength(4)
    for (const f of frames) expect(f.byteLength).toBeLessThanOrEqual(FRAME_HEADER_BYTES + MAX_FRAME_BODY)
    expect(frames[3]?.byteLength).toBe(FRAME_HEADER_BYTES + 17 + FRAME_TAG_BYTES)
    const opened = new FrameOpener(k).push(concat(frames))
    expect(concat(opened).equals(plain)).toBe(true)
  })

  it('sealInto a reused buffer gives the bytes of seal, frame after frame (property), and refuses a buffer too small', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 3 * MAX_FRAME_PLAINTEXT }), { minLength: 1, maxLength: 4 }), (sizes) => {
      const key = new Uint8Array(32).fill(4)
      const a = new FrameSealer(key)
      const b = new FrameSealer(key)
      const out = new Uint8Array(sealedSize(3 * MAX_FRAME_PLAINTEXT))
      for (const n of sizes) {
        const plain = new Uint8Array(n).map((_, i) => (i * 7) & 0xff)
        const written = b.sealInto(plain, out)
        expect(written).toBe(sealedSize(n))
        expect(Buffer.compare(out.subarray(0, written), Buffer.concat(a.seal(plain)))).toBe(0)
      }
    }), { numRuns: 20 })
    expect(() => new FrameSealer(new Uint8Array(32)).sealInto(new Uint8Array(100), new Uint8Array(100))).toThrow(RangeError)
  })

  it('seals nothing for an empty write', () => {
    expect(new FrameSealer(key()).seal(new Uint8Array(0))).toEqual([])
  })

  it('any split of the byte stream opens to the same plaintext (property)', () => {
    fc.assert(fc.property(
      fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 20 }),
      (writes, cuts) => {
        const k = key()
        const sealer = new FrameSealer(k)
        const wire = concat(writes.flatMap((w) => sealer.seal(w)))
        const opener = new FrameOpener(k)
        const out: Uint8Array[] = []
        let at = 0
        for (let i = 0; at < wire.byteLength; i++) {
          const n = cuts[i % cuts.length] as number
          out.push(...opener.push(wire.subarray(at, at + n)))
          at += n
        }
        expect(concat(out).equals(concat(writes))).toBe(true)
        expect(opener.pendingBytes).toBe(0)
        opener.finish()
      }), { numRuns: 200 })
  })

  it('accepts a Uint8ArrayList of many chunks as one write', () => {
    const k = key()
    const list = new Uint8ArrayList(randomBytes(10), randomBytes(MAX_FRAME_PLAINTEXT), randomBytes(5))
    const opened = new FrameOpener(k).push(concat(new FrameSealer(k).seal(list)))
    expect(concat(opened).equals(Buffer.from(list.subarray()))).toBe(true)
  })

  it('refuses a length over the maximum from the header alone, before buffering the body', () => {
    const header = Buffer.alloc(FRAME_HEADER_BYTES)
    header.writeUInt32BE(MAX_FRAME_BODY + 1)
    expect(failure(() => new FrameOpener(key()).push(header))).toBe('bad-frame')
    header.writeUInt32BE(FRAME_TAG_BYTES - 1)
    expect(failure(() => new FrameOpener(key()).push(header))).toBe('bad-frame')
  })

  it('holds a truncated frame without output, and reports the cut when the input ends', () => {
    const k = key()
    const [frame] = new FrameSealer(k).seal(randomBytes(1000)) as [Uint8Array]
    const opener = new FrameOpener(k)
    expect(opener.push(frame.subarray(0, 2))).toEqual([])
    expect(opener.push(frame.subarray(2, 500))).toEqual([])
    expect(opener.pendingBytes).toBe(500)
    expect(failure(() => { opener.finish() })).toBe('truncated')
  })

  it('a flipped bit, a replayed, a reordered frame or another key fails authentication', () => {
    const k = key()
    const frames = new FrameSealer(k).seal(randomBytes(2 * MAX_FRAME_PLAINTEXT))
    const [a, b] = frames as [Uint8Array, Uint8Array]
    const tampered = Buffer.from(a)
    tampered[100] = (tampered[100] as number) ^ 1
    expect(failure(() => new FrameOpener(k).push(tampered))).toBe('bad-frame')
    const replay = new FrameOpener(k)
    replay.push(a)
    expect(failure(() => replay.push(a))).toBe('bad-frame')
    expect(failure(() => new FrameOpener(k).push(b))).toBe('bad-frame')
    expect(failure(() => new FrameOpener(key()).push(a))).toBe('bad-frame')
  })

  it('REGRESSION (pnet WASM crash): one update larger than the old WASM memory, then many 32-byte updates alternating between two instances', () => {
    const k1 = key()
    const k2 = key()
    const s1 = new FrameSealer(k1)
    const s2 = new FrameSealer(k2)
    const o1 = new FrameOpener(k1)
    const o2 = new FrameOpener(k2)
    const big = randomBytes(64 * 1024 * 1024)
    const bigHash = createHash('sha256')
    for (const f of s1.seal(big)) for (const p of o1.push(f)) bigHash.update(p)
    expect(bigHash.digest('hex')).toBe(createHash('sha256').update(big).digest('hex'))
    for (let i = 0; i < 5_000; i++) {
      const [s, o] = i % 2 === 0 ? [s1, o1] : [s2, o2]
      const small = randomBytes(32)
      expect(concat(o.push(concat(s.seal(small)))).equals(small)).toBe(true)
    }
  })
})

describe('transport keys', () => {
  it('the token keys are one epoch-0 key of 32 bytes, distinct per token', () => {
    const a = tokenTransportKeys(TEST_TOKEN)
    expect(a.current().epoch).toBe(0)
    expect(a.current().key.byteLength).toBe(32)
    expect(a.accepted()).toEqual([a.current()])
    expect(Buffer.from(tokenTransportKeys(newToken()).current().key).equals(a.current().key)).toBe(false)
  })

  it('proofs and frame keys depend on the key and both nonces, and differ per role and direction', () => {
    const k = key()
    const nI = randomBytes(32)
    const nR = randomBytes(32)
    const s = sessionSecrets(k, nI, nR)
    const values = [s.initiatorProof, s.responderProof, s.initiatorToResponder, s.responderToInitiator].map((v) => Buffer.from(v).toString('hex'))
    expect(new Set(values).size).toBe(4)
    expect(Buffer.from(sessionSecrets(k, nI, randomBytes(32)).initiatorProof).equals(s.initiatorProof)).toBe(false)
    expect(Buffer.from(sessionSecrets(key(), nI, nR).initiatorProof).equals(s.initiatorProof)).toBe(false)
  })
})

describe('refusal log', () => {
  function recorder (): { lines: object[], log: RefusalLog, clock: { t: number } } {
    const lines: object[] = []
    const clock = { t: 1_000_000 }
    const nothing = (): void => {}
    const log = new RefusalLog({
      log: { debug: nothing, warn: nothing, error: nothing, info: (obj) => { lines.push(obj) } },
      now: () => clock.t,
      maxLinesPerInterval: 3
    })
    return { lines, log, clock }
  }

  it('writes at most one line per host per minute, with the count of refusals it stands for', () => {
    const { lines, log, clock } = recorder()
    log.refused('10.0.0.1', 'bad-proof')
    for (let i = 0; i < 9; i++) { clock.t += 1_000; log.refused('10.0.0.1', 'bad-proof') }
    expect(lines).toEqual([{ remote: '10.0.0.1', reason: 'bad-proof', refusals: 1 }])
    clock.t += 60_000
    log.refused('10.0.0.1', 'timeout')
    expect(lines[1]).toEqual({ remote: '10.0.0.1', reason: 'timeout', refusals: 10 })
  })

  it('caps the lines of all hosts together, and a capped host reports its count later', () => {
    const { lines, log, clock } = recorder()
    for (let h = 0; h < 10; h++) log.refused(`10.0.0.${h}`, 'bad-proof')
    expect(lines).toHaveLength(3)
    clock.t += 60_000
    log.refused('10.0.0.9', 'bad-proof')
    expect(lines[3]).toEqual({ remote: '10.0.0.9', reason: 'bad-proof', refusals: 2 })
  })
})
