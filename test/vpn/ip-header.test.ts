import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import {
  buildIcmpEcho, destinationText, echoReplyTo, internetChecksum, IPPROTO_ICMP, ipv4HeaderChecksumOk,
  parseIcmpEcho, parseIpHeader, sourceText
} from '../../src/net/ip-header.js'
import { formatIp, parseIp } from '../../src/projections/ip.js'

const ipv4 = fc.integer({ min: 0, max: 0xffffffff }).map((n) => formatIp(4, BigInt(n)))
const u16 = fc.integer({ min: 0, max: 0xffff })
const payload = fc.uint8Array({ maxLength: 1400 })
const echo = fc.record({ type: fc.constantFrom('request' as const, 'reply' as const), src: ipv4, dst: ipv4, id: u16, seq: u16, payload })
const v6addr = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n })

function ipv6Packet (src: bigint, dst: bigint, nextHeader: number, body: Uint8Array, hopLimit = 64): Uint8Array {
  const p = new Uint8Array(40 + body.length)
  p[0] = 0x60
  p[4] = body.length >> 8; p[5] = body.length & 0xff
  p[6] = nextHeader
  p[7] = hopLimit
  for (let i = 0; i < 16; i++) {
    p[8 + i] = Number((src >> BigInt(8 * (15 - i))) & 0xffn)
    p[24 + i] = Number((dst >> BigInt(8 * (15 - i))) & 0xffn)
  }
  p.set(body, 40)
  return p
}

describe('parseIpHeader', () => {
  it('reads an IPv4 ICMP echo built by buildIcmpEcho (round trip)', () => {
    fc.assert(fc.property(echo, (e) => {
      const pkt = buildIcmpEcho(e)
      const h = parseIpHeader(pkt)
      expect(h).toBeDefined()
      expect(h!.family).toBe(4)
      expect(sourceText(h!)).toBe(e.src)
      expect(destinationText(h!)).toBe(e.dst)
      expect(h!.src).toBe(parseIp(e.src).value)
      expect(h!.protocol).toBe(IPPROTO_ICMP)
      expect(h!.totalLength).toBe(28 + e.payload.length)
      expect(h!.headerLength).toBe(20)
      expect(h!.ttl).toBe(64)
      expect(ipv4HeaderChecksumOk(pkt)).toBe(true)
      expect(internetChecksum(pkt, 20)).toBe(0)
    }))
  })

  it('reads IPv6 fixed headers; addresses match formatIp', () => {
    fc.assert(fc.property(v6addr, v6addr, fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 200 }), (src, dst, nh, body) => {
      const h = parseIpHeader(ipv6Packet(src, dst, nh, body))
      expect(h).toEqual({ family: 6, src, dst, protocol: nh, totalLength: 40 + body.length, headerLength: 40, ttl: 64 })
      expect(sourceText(h!)).toBe(formatIp(6, src))
    }))
    const h = parseIpHeader(ipv6Packet(parseIp('2001:db8::1').value, parseIp('fd00::a:0:0:2').value, 58, new Uint8Array(8)))
    expect(sourceText(h!)).toBe('2001:db8::1')
    expect(destinationText(h!)).toBe('fd00::a:0:0:2')
  })

  it('allows bytes after the stated length, as the kernel does', () => {
    const pkt = buildIcmpEcho({ type: 'request', src: '10.0.0.1', dst: '10.0.0.2', id: 1, seq: 1, payload: new Uint8Array(4) })
    const padded = new Uint8Array(pkt.length + 10)
    padded.set(pkt)
    expect(parseIpHeader(padded)?.totalLength).toBe(pkt.length)
    expect(parseIcmpEcho(padded)?.payload).toEqual(new Uint8Array(4))
  })

  it('rejects every truncation of a valid packet', () => {
    fc.assert(fc.property(fc.oneof(
      echo.map(buildIcmpEcho),
      fc.tuple(v6addr, v6addr, fc.uint8Array({ maxLength: 100 })).map(([s, d, b]) => ipv6Packet(s, d, 17, b))
    ), fc.nat(), (pkt, cut) => {
      const short = pkt.subarray(0, cut % pkt.length)
      expect(parseIpHeader(short)).toBeUndefined()
      expect(parseIcmpEcho(short)).toBeUndefined()
    }))
  })

  it('rejects malformed headers', () => {
    const ok = buildIcmpEcho({ type: 'request', src: '10.0.0.1', dst: '10.0.0.2', id: 1, seq: 1, payload: new Uint8Array(8) })
    const mutate = (f: (p: Uint8Array) => void): Uint8Array => { const p = ok.slice(); f(p); return p }
    expect(parseIpHeader(new Uint8Array(0))).toBeUndefined()
    expect(parseIpHeader(mutate((p) => { p[0] = 0x44 }))).toBeUndefined() // IHL 4
    expect(parseIpHeader(mutate((p) => { p[0] = 0x4f }))).toBeUndefined() // IHL 15: 60 bytes > 36
    expect(parseIpHeader(mutate((p) => { p[0] = 0x55 }))).toBeUndefined() // version 5
    expect(parseIpHeader(mutate((p) => { p[2] = 0; p[3] = 19 }))).toBeUndefined() // total < header
    expect(parseIpHeader(mutate((p) => { p[2] = 0; p[3] = 37 }))).toBeUndefined() // total > bytes
    expect(parseIpHeader(ipv6Packet(1n, 2n, 6, new Uint8Array(10)).subarray(0, 49))).toBeUndefined()
  })

  it('never throws on random bytes, and what it accepts is consistent', () => {
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 120 }),
      // biased towards plausible first bytes so the checks past the version are reached
      fc.tuple(fc.constantFrom(0x45, 0x46, 0x4f, 0x60, 0x6f), fc.uint8Array({ minLength: 0, maxLength: 120 })).map(([b, rest]) => Uint8Array.of(b, ...rest))
    )
    fc.assert(fc.property(bytes, (pkt) => {
      const h = parseIpHeader(pkt)
      if (h !== undefined) {
        expect(h.family).toBe(pkt[0]! >> 4)
        expect(h.headerLength).toBeLessThanOrEqual(h.totalLength)
        expect(h.totalLength).toBeLessThanOrEqual(pkt.length)
        expect(typeof sourceText(h)).toBe('string')
      }
      parseIcmpEcho(pkt)
      echoReplyTo(pkt)
      ipv4HeaderChecksumOk(pkt)
    }), { numRuns: 2000 })
  })
})

describe('ICMP echo', () => {
  it('round-trips through buildIcmpEcho and parseIcmpEcho', () => {
    fc.assert(fc.property(echo, (e) => {
      expect(parseIcmpEcho(buildIcmpEcho(e))).toEqual({ ...e, ttl: 64 })
    }))
  })

  it('echoReplyTo swaps the addresses and keeps id, seq and payload', () => {
    fc.assert(fc.property(echo, (e) => {
      const reply = echoReplyTo(buildIcmpEcho({ ...e, type: 'request' }))
      expect(reply).toBeDefined()
      expect(parseIcmpEcho(reply!)).toEqual({ type: 'reply', src: e.dst, dst: e.src, id: e.id, seq: e.seq, payload: e.payload, ttl: 64 })
      expect(echoReplyTo(reply!)).toBeUndefined() // a reply is not answered
    }))
  })

  it('matches a packet the kernel sent (ping -c1 10.99.0.2 from 10.99.0.1, 56 bytes)', () => {
    const hex = '4500005429ab40004001fc350a6300010a63000208007593113e0001f767036b00000000b387040000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637'
    const pkt = Uint8Array.from(Buffer.from(hex, 'hex'))
    const e = parseIcmpEcho(pkt)
    expect(e).toMatchObject({ type: 'request', src: '10.99.0.1', dst: '10.99.0.2', id: 0x113e, seq: 1 })
    expect(e!.payload.length).toBe(56)
    expect(buildIcmpEcho({ type: 'request', src: '10.99.0.1', dst: '10.99.0.2', id: 0x113e, seq: 1, payload: e!.payload }).subarray(20)).toEqual(pkt.subarray(20))
  })

  it('rejects any single flipped bit (checksums)', () => {
    fc.assert(fc.property(echo, fc.nat(), fc.integer({ min: 0, max: 7 }), (e, at, bit) => {
      const pkt = buildIcmpEcho(e)
      pkt[at % pkt.length]! ^= 1 << bit
      expect(parseIcmpEcho(pkt)).toBeUndefined()
    }))
  })

  it('rejects fragments and other ICMP types', () => {
    const ok = buildIcmpEcho({ type: 'request', src: '10.0.0.1', dst: '10.0.0.2', id: 7, seq: 9, payload: new Uint8Array(8) })
    const fix = (p: Uint8Array): Uint8Array => {
      p[10] = 0; p[11] = 0
      const c = internetChecksum(p, 0, 20); p[10] = c >> 8; p[11] = c & 0xff
      p[22] = 0; p[23] = 0
      const d = internetChecksum(p, 20); p[22] = d >> 8; p[23] = d & 0xff
      return p
    }
    expect(parseIcmpEcho(fix(ok.slice()))).toBeDefined()
    const mf = ok.slice(); mf[6] = 0x20
    expect(parseIcmpEcho(fix(mf))).toBeUndefined()
    const offset = ok.slice(); offset[7] = 1
    expect(parseIcmpEcho(fix(offset))).toBeUndefined()
    const unreachable = ok.slice(); unreachable[20] = 3
    expect(parseIcmpEcho(fix(unreachable))).toBeUndefined()
  })

  it('refuses what it cannot build', () => {
    expect(() => buildIcmpEcho({ type: 'request', src: '::1', dst: '10.0.0.1', id: 1, seq: 1, payload: new Uint8Array() })).toThrow(RangeError)
    expect(() => buildIcmpEcho({ type: 'request', src: '10.0.0.2', dst: '10.0.0.1', id: 70000, seq: 1, payload: new Uint8Array() })).toThrow(RangeError)
  })
})
