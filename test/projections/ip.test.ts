import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { candidateAddress, cidrContains, cidrSize, cidrsOverlap, formatIp, leaseProblem, parseCidr, parseIp } from '../../src/projections/ip.js'

const A = 'ab'.repeat(32)
const B = 'cd'.repeat(32)

describe('parseIp / formatIp', () => {
  it('parses IPv4', () => {
    expect(parseIp('10.1.2.3')).toEqual({ family: 4, value: 0x0a010203n })
    expect(parseIp('0.0.0.0')).toEqual({ family: 4, value: 0n })
    expect(parseIp('255.255.255.255')).toEqual({ family: 4, value: 0xffffffffn })
  })

  it.each(['256.1.1.1', '01.2.3.4', '1.2.3', '1.2.3.4.5', '1.2.3.-4', '', 'a.b.c.d', ' 1.2.3.4'])('refuses IPv4 %j', (t) => {
    expect(() => parseIp(t)).toThrow(/not an IP/)
  })

  it('parses IPv6 in full, compressed and upper-case forms', () => {
    expect(parseIp('::')).toEqual({ family: 6, value: 0n })
    expect(parseIp('::1')).toEqual({ family: 6, value: 1n })
    expect(parseIp('fd00::1').value).toBe((0xfd00n << 112n) | 1n)
    expect(parseIp('FD00:0:0:0:0:0:0:1').value).toBe(parseIp('fd00::1').value)
    expect(parseIp('fd00:0000::0001').value).toBe(parseIp('fd00::1').value)
    expect(parseIp('1:2:3:4:5:6:7::').value).toBe(parseIp('1:2:3:4:5:6:7:0').value)
    expect(parseIp('::2:3:4:5:6:7:8').value).toBe(parseIp('0:2:3:4:5:6:7:8').value)
  })

  it.each(['1::2::3', ':1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '12345::', '::1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7', '1:::2', 'g::1', '1:2:3:4:5:6:7:8:'])('refuses IPv6 %j', (t) => {
    expect(() => parseIp(t)).toThrow(/not an IP/)
  })

  it('formats IPv4', () => {
    expect(formatIp(4, 0x0a010203n)).toBe('10.1.2.3')
    expect(formatIp(4, 0n)).toBe('0.0.0.0')
  })

  it.each([
    ['fd00:0:0:0:0:0:0:1', 'fd00::1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    // RFC 5952 4.2.2: a single zero group is not compressed.
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    // RFC 5952 4.2.3: the longest run, the first one on a tie.
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    // RFC 5952 4.3: lower case, no leading zeros.
    ['2001:0DB8:0000:0000:0000:0000:0ABC:0001', '2001:db8::abc:1']
  ])('formats %s as %s (RFC 5952)', (input, out) => {
    const ip = parseIp(input)
    expect(formatIp(6, ip.value)).toBe(out)
  })

  it('round-trips any address', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), (v) => {
      const text = formatIp(6, v)
      expect(parseIp(text)).toEqual({ family: 6, value: v })
    }))
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: (1n << 32n) - 1n }), (v) => {
      expect(parseIp(formatIp(4, v))).toEqual({ family: 4, value: v })
    }))
  })

  it('round-trips addresses with runs of zero groups', () => {
    const group = fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff }))
    fc.assert(fc.property(fc.array(group, { minLength: 8, maxLength: 8 }), (gs) => {
      const v = gs.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n)
      const text = formatIp(6, v)
      expect(parseIp(text).value).toBe(v)
      expect(text).not.toMatch(/:::/)
      expect(text.split('::').length).toBeLessThanOrEqual(2)
    }))
  })
})

describe('parseCidr', () => {
  it('parses and canonicalises', () => {
    const c = parseCidr('10.1.0.0/16')
    expect(c).toMatchObject({ family: 4, base: 0x0a010000n, prefix: 16, text: '10.1.0.0/16' })
    expect(cidrSize(c)).toBe(65536n)
    expect(parseCidr('FD00:0::/64').text).toBe('fd00::/64')
    expect(parseCidr('0.0.0.0/0').text).toBe('0.0.0.0/0')
    expect(parseCidr('10.1.2.3/32').text).toBe('10.1.2.3/32')
  })

  it('refuses host bits and suggests the network', () => {
    expect(() => parseCidr('10.1.2.3/16')).toThrow(/host bits.*did you mean 10\.1\.0\.0\/16\?/)
    expect(() => parseCidr('fd00::1/64')).toThrow(/did you mean fd00::\/64\?/)
    expect(() => parseCidr('192.168.1.129/25')).toThrow(/did you mean 192\.168\.1\.128\/25/)
  })

  it.each(['10.1.0.0', '10.1.0.0/33', 'fd00::/129', '10.0.0.0/8/1', 'x/8', '10.0.0.0/', '10.0.0.0/-1', '10.0.0.0/1000'])('refuses %j', (t) => {
    expect(() => parseCidr(t)).toThrow()
  })
})

describe('cidrsOverlap / cidrContains', () => {
  const c = (t: string): ReturnType<typeof parseCidr> => parseCidr(t)
  it('detects containment both ways and equality', () => {
    expect(cidrsOverlap(c('10.0.0.0/8'), c('10.1.0.0/16'))).toBe(true)
    expect(cidrsOverlap(c('10.1.0.0/16'), c('10.0.0.0/8'))).toBe(true)
    expect(cidrsOverlap(c('10.1.0.0/16'), c('10.1.0.0/16'))).toBe(true)
  })
  it('adjacent and disjoint ranges do not overlap', () => {
    expect(cidrsOverlap(c('10.0.0.0/16'), c('10.1.0.0/16'))).toBe(false)
    expect(cidrsOverlap(c('10.1.0.0/16'), c('10.0.0.0/16'))).toBe(false)
    expect(cidrsOverlap(c('192.168.0.0/24'), c('10.0.0.0/8'))).toBe(false)
  })
  it('families never overlap', () => {
    expect(cidrsOverlap(c('0.0.0.0/0'), c('::/0'))).toBe(false)
    expect(cidrContains(c('0.0.0.0/0'), 6, 1n)).toBe(false)
  })
  it('contains the ends and nothing past them', () => {
    const x = c('10.1.0.0/16')
    expect(cidrContains(x, 4, parseIp('10.1.0.0').value)).toBe(true)
    expect(cidrContains(x, 4, parseIp('10.1.255.255').value)).toBe(true)
    expect(cidrContains(x, 4, parseIp('10.2.0.0').value)).toBe(false)
    expect(cidrContains(x, 4, parseIp('10.0.255.255').value)).toBe(false)
  })
})

describe('leaseProblem', () => {
  const overlay = parseCidr('10.1.0.0/16')
  it('accepts host addresses', () => {
    expect(leaseProblem(overlay, '10.1.0.1')).toBeUndefined()
    expect(leaseProblem(overlay, '10.1.255.254')).toBeUndefined()
  })
  it('refuses the network address, the broadcast address and outside addresses, with a reason', () => {
    expect(leaseProblem(overlay, '10.1.0.0')).toMatch(/network address of 10\.1\.0\.0\/16/)
    expect(leaseProblem(overlay, '10.1.255.255')).toMatch(/broadcast address of 10\.1\.0\.0\/16/)
    expect(leaseProblem(overlay, '10.2.0.1')).toMatch(/outside the overlay 10\.1\.0\.0\/16/)
    expect(leaseProblem(overlay, 'fd00::1')).toMatch(/outside/)
    expect(leaseProblem(overlay, 'nonsense')).toMatch(/not an IP address/)
  })
  it('IPv6 has no broadcast address, but the subnet-router anycast address is refused', () => {
    const v6 = parseCidr('fd00::/64')
    expect(leaseProblem(v6, 'fd00::')).toMatch(/network address/)
    expect(leaseProblem(v6, 'fd00::ffff:ffff:ffff:ffff')).toBeUndefined()
  })
})

describe('candidateAddress', () => {
  it('is deterministic per key and attempt, and differs between keys and attempts', () => {
    const o = parseCidr('10.1.0.0/16')
    expect(candidateAddress(A, o, 0)).toBe(candidateAddress(A, o, 0))
    expect(candidateAddress(A, o, 0)).not.toBe(candidateAddress(B, o, 0))
    const seq = Array.from({ length: 20 }, (_, i) => candidateAddress(A, o, i))
    expect(new Set(seq).size).toBeGreaterThan(15)
  })

  it('is always a leasable address inside the overlay (never network or broadcast)', () => {
    fc.assert(fc.property(
      fc.constantFrom('10.1.0.0/16', '10.9.8.0/30', '10.9.8.8/29', '192.168.0.0/24', 'fd00::/64', 'fd00::/126', 'fd00::/127'),
      fc.stringMatching(/^[0-9a-f]{64}$/), fc.nat(10_000),
      (text, key, attempt) => {
        const o = parseCidr(text)
        const addr = candidateAddress(key, o, attempt)
        expect(leaseProblem(o, addr)).toBeUndefined()
        expect(formatIp(o.family, parseIp(addr).value)).toBe(addr) // canonical text
      }))
  })

  it('a /30 has exactly its two host addresses as candidates', () => {
    const o = parseCidr('10.9.8.0/30')
    const seen = new Set(Array.from({ length: 200 }, (_, i) => candidateAddress(A, o, i)))
    expect([...seen].sort()).toEqual(['10.9.8.1', '10.9.8.2'])
  })

  it('throws a clear error (not a RangeError) when a range has no host address', () => {
    expect(() => candidateAddress(A, parseCidr('fd00::1/128'), 0)).toThrow(/no address/)
    expect(() => candidateAddress(A, parseCidr('10.0.0.0/31'), 0)).toThrow(/no address/)
  })
})
