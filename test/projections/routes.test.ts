import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { deriveRoutes, lookupRoute, type RouteTable } from '../../src/projections/routes.js'
import { cidrsOverlap, formatIp, parseCidr } from '../../src/projections/ip.js'
import type { NetworkState } from '../../src/projections/network.js'
import { comparePositions } from '../../src/projections/position.js'
import { LogBuilder, foldNetwork, join, rng, shuffle } from './support.js'

const table = (s: NetworkState): RouteTable => deriveRoutes(s.routes, s.ipam, s.settings.values)

/** No two usable routes overlap unless they lead to the same peer: one peer per destination. */
function expectFunction (t: RouteTable): void {
  const cidrs = t.routes.map((r) => ({ r, c: parseCidr(r.cidr) }))
  for (let i = 0; i < cidrs.length; i++) {
    for (let j = i + 1; j < cidrs.length; j++) {
      const a = cidrs[i] as typeof cidrs[number]
      const b = cidrs[j] as typeof cidrs[number]
      if (cidrsOverlap(a.c, b.c)) expect(a.r.peer, `${a.r.cidr} and ${b.r.cidr} lead to different peers`).toBe(b.r.peer)
    }
  }
}

function members (n: number): LogBuilder {
  const b = new LogBuilder(n)
  for (let a = 0; a < n; a++) b.append(a, 'node.join', join(`n${a}`), { seesAll: true })
  b.syncAll()
  return b
}

describe('routes', () => {
  it('a lease is a host route to its holder', () => {
    const b = members(2)
    b.append(0, 'ip.claim', { addr: '10.1.0.5' })
    const t = table(foldNetwork(b.events))
    expect(t.routes).toEqual([{ cidr: '10.1.0.5/32', peer: b.hex(0), kind: 'lease' }])
    expect(lookupRoute(t, '10.1.0.5')?.peer).toBe(b.hex(0))
    expect(lookupRoute(t, '10.1.0.6')).toBeUndefined()
  })

  it('an advertised CIDR routes to its advertiser', () => {
    const b = members(2)
    b.append(1, 'route.advertise', { cidr: '192.168.10.0/24' })
    const t = table(foldNetwork(b.events))
    expect(t.routes).toEqual([{ cidr: '192.168.10.0/24', peer: b.hex(1), kind: 'advertised' }])
    expect(lookupRoute(t, '192.168.10.77')?.peer).toBe(b.hex(1))
    expect(t.conflicts).toEqual([])
  })

  describe('a route advertised twice by two peers', () => {
    function twice (): { b: LogBuilder, first: number, second: number } {
      const b = members(3)
      // Concurrent: neither has seen the other's advertisement.
      const e0 = b.append(0, 'route.advertise', { cidr: '192.168.10.0/24' })
      const e1 = b.append(1, 'route.advertise', { cidr: '192.168.10.0/24' })
      expect(b.hasSeen(1, e0)).toBe(false)
      const first = e0.fields.lamport < e1.fields.lamport || (e0.fields.lamport === e1.fields.lamport && e0.authorHex < e1.authorHex) ? 0 : 1
      return { b, first, second: 1 - first }
    }

    it('the first in the order wins, the second is marked conflicting with the prefix', () => {
      const { b, first, second } = twice()
      for (const events of [b.events, [...b.events].reverse()]) {
        const t = table(foldNetwork(events))
        expect(t.routes).toEqual([{ cidr: '192.168.10.0/24', peer: b.hex(first), kind: 'advertised' }])
        expect(t.conflicts).toEqual([{ cidr: '192.168.10.0/24', peer: b.hex(second), clashesWith: '192.168.10.0/24', holder: b.hex(first) }])
        expectFunction(t)
      }
    })

    it('a withdrawal lets the next in line take over', () => {
      const { b, first, second } = twice()
      b.append(first, 'route.withdraw', { cidr: '192.168.10.0/24' }, { seesAll: true })
      const t = table(foldNetwork(b.events))
      expect(t.routes).toEqual([{ cidr: '192.168.10.0/24', peer: b.hex(second), kind: 'advertised' }])
      expect(t.conflicts).toEqual([])
    })

    it('leaving (or eviction) lets the next in line take over too', () => {
      const { b, first, second } = twice()
      b.append(2, 'node.evict', { peer: b.ids[first]?.publicKey as Uint8Array, reason: 'gone' }, { seesAll: true })
      const t = table(foldNetwork(b.events))
      expect(t.routes.map((r) => r.peer)).toEqual([b.hex(second)])
    })
  })

  it('overlapping advertisements: a contained or containing prefix conflicts with the accepted one', () => {
    const b = members(3)
    b.append(0, 'route.advertise', { cidr: '172.16.0.0/16' })
    b.append(1, 'route.advertise', { cidr: '172.16.5.0/24' }, { seesAll: true })
    b.append(2, 'route.advertise', { cidr: '172.0.0.0/8' }, { seesAll: true })
    b.append(2, 'route.advertise', { cidr: '172.17.0.0/16' }, { seesAll: true })
    const t = table(foldNetwork(b.events))
    expect(t.routes.map((r) => [r.cidr, r.peer])).toEqual([['172.16.0.0/16', b.hex(0)], ['172.17.0.0/16', b.hex(2)]])
    expect(t.conflicts).toEqual([
      { cidr: '172.16.5.0/24', peer: b.hex(1), clashesWith: '172.16.0.0/16', holder: b.hex(0) },
      { cidr: '172.0.0.0/8', peer: b.hex(2), clashesWith: '172.16.0.0/16', holder: b.hex(0) }
    ])
    expectFunction(t)
  })

  it('an advertisement overlapping the overlay is refused', () => {
    const b = members(2)
    b.append(0, 'route.advertise', { cidr: '10.0.0.0/8' })
    b.append(1, 'route.advertise', { cidr: '10.1.5.0/24' }, { seesAll: true })
    b.append(1, 'route.advertise', { cidr: '0.0.0.0/0' })
    const t = table(foldNetwork(b.events))
    expect(t.routes).toEqual([])
    expect(t.conflicts.map((c) => [c.cidr, c.clashesWith, c.holder])).toEqual([
      ['10.0.0.0/8', '10.1.0.0/16', 'overlay'],
      ['10.1.5.0/24', '10.1.0.0/16', 'overlay'],
      ['0.0.0.0/0', '10.1.0.0/16', 'overlay']
    ])
  })

  it('an overlay change re-judges advertisements against the new overlay', () => {
    const b = members(2)
    b.append(0, 'route.advertise', { cidr: '10.2.0.0/16' })
    expect(table(foldNetwork(b.events)).routes.map((r) => r.cidr)).toEqual(['10.2.0.0/16'])
    b.setting(1, 'overlayCidr', '10.0.0.0/14', { seesAll: true })
    const t = table(foldNetwork(b.events))
    expect(t.routes).toEqual([])
    expect(t.conflicts[0]).toMatchObject({ cidr: '10.2.0.0/16', holder: 'overlay', clashesWith: '10.0.0.0/14' })
  })

  it('IPv6 advertisements clash with the IPv6 overlay only', () => {
    const b = members(2)
    b.setting(0, 'overlayCidr6', 'fd00:1::/64')
    b.append(0, 'route.advertise', { cidr: 'fd00:1::/48' }, { seesAll: true })
    b.append(1, 'route.advertise', { cidr: 'FD00:2:0::/48' }, { seesAll: true })
    const t = table(foldNetwork(b.events))
    expect(t.routes).toEqual([{ cidr: 'fd00:2::/48', peer: b.hex(1), kind: 'advertised' }])
    expect(t.conflicts).toMatchObject([{ cidr: 'fd00:1::/48', holder: 'overlay' }])
    expect(lookupRoute(t, 'fd00:2::1')?.peer).toBe(b.hex(1))
  })

  it('a non-member cannot advertise; repeating an advertisement keeps its first position', () => {
    const b = new LogBuilder(3)
    b.append(2, 'route.advertise', { cidr: '192.168.1.0/24' })
    b.append(0, 'node.join', join('a'), { seesAll: true })
    b.append(1, 'node.join', join('b'), { seesAll: true })
    b.append(0, 'route.advertise', { cidr: '192.168.2.0/24' }, { seesAll: true })
    b.append(1, 'route.advertise', { cidr: '192.168.2.0/24' }, { seesAll: true })
    b.append(0, 'route.advertise', { cidr: '192.168.2.0/24' }, { seesAll: true })
    const t = table(foldNetwork(b.events))
    expect(t.routes.map((r) => [r.cidr, r.peer])).toEqual([['192.168.2.0/24', b.hex(0)]])
    expect(t.conflicts.map((c) => c.peer)).toEqual([b.hex(1)])
  })

  it('an advertisement with host bits set is reported, not silently dropped', () => {
    const b = members(1)
    b.append(0, 'route.advertise', { cidr: '192.168.1.7/24' })
    const t = table(foldNetwork(b.events))
    expect(t.routes).toEqual([])
    expect(t.invalid).toEqual([{ cidr: '192.168.1.7/24', peer: b.hex(0), reason: expect.stringMatching(/did you mean 192\.168\.1\.0\/24/) }])
    b.append(0, 'route.withdraw', { cidr: '192.168.1.7/24' })
    expect(table(foldNetwork(b.events)).invalid).toEqual([])
  })

  describe('lookupRoute', () => {
    const t: RouteTable = {
      routes: [
        { cidr: '10.0.0.0/8', peer: 'A', kind: 'advertised' },
        { cidr: '10.1.0.0/16', peer: 'B', kind: 'advertised' },
        { cidr: '10.1.2.3/32', peer: 'C', kind: 'lease' },
        { cidr: 'fd00::/16', peer: 'D', kind: 'advertised' }
      ],
      conflicts: [],
      invalid: []
    }
    it.each([
      ['10.1.2.3', 'C'], ['10.1.2.4', 'B'], ['10.2.0.1', 'A'], ['10.255.255.255', 'A'],
      ['11.0.0.0', undefined], ['fd00::1', 'D'], ['fd01::1', undefined], ['not-an-ip', undefined], ['::', undefined]
    ])('%s → %s (longest prefix)', (addr, peer) => {
      expect(lookupRoute(t, addr)?.peer).toBe(peer)
    })
    it('does not depend on the order of the routes', () => {
      const r = rng(3)
      for (let i = 0; i < 10; i++) {
        const u = { ...t, routes: shuffle(t.routes, r) }
        expect(lookupRoute(u, '10.1.2.3')?.peer).toBe('C')
        expect(lookupRoute(u, '10.1.9.9')?.peer).toBe('B')
      }
    })
  })

  it('the table is a function for any set of advertisements (property)', () => {
    const prefix = fc.record({ a: fc.integer({ min: 0, max: 3 }), b: fc.integer({ min: 0, max: 3 }), len: fc.constantFrom(8, 12, 16, 24, 28) })
    fc.assert(fc.property(fc.array(fc.record({ who: fc.integer({ min: 0, max: 2 }), p: prefix, withdraw: fc.boolean(), sees: fc.boolean() }), { maxLength: 14 }), fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 5, maxLength: 5 }), (ops, probes) => {
      const b = members(3)
      for (const { who, p, withdraw, sees } of ops) {
        const base = (BigInt(172 - p.a * 20) << 24n) | (BigInt(16 + p.b * 64) << 16n)
        const c = parseCidr(`${formatIp(4, (base >> BigInt(32 - p.len)) << BigInt(32 - p.len))}/${p.len}`)
        b.append(who, withdraw ? 'route.withdraw' : 'route.advertise', { cidr: c.text }, { seesAll: sees })
      }
      const t = table(foldNetwork(b.events))
      expectFunction(t)
      const again = table(foldNetwork([...b.events].reverse()))
      expect(again).toEqual(t)
      for (const x of probes) {
        const addr = formatIp(4, BigInt(x))
        const hits = t.routes.filter((r) => { const c = parseCidr(r.cidr); const v = BigInt(x); return v >= c.base && v < c.base + (1n << BigInt(32 - c.prefix)) })
        expect(new Set(hits.map((h) => h.peer)).size).toBeLessThanOrEqual(1)
        expect(lookupRoute(t, addr)?.peer).toBe(hits[0]?.peer)
      }
    }), { numRuns: 40 })
  })
})

describe('routes: the accepted ranges searched by base', () => {
  /** deriveRoutes as it was: every advertisement compared with every accepted CIDR, in order. */
  function linear (s: NetworkState): { routes: string[], conflicts: string[] } {
    const accepted: Array<{ cidr: ReturnType<typeof parseCidr>, peer: string }> = []
    for (const text of [s.settings.values.overlayCidr, s.settings.values.overlayCidr6]) if (text !== null) accepted.push({ cidr: parseCidr(text), peer: 'overlay' })
    const routes: string[] = []
    const conflicts: string[] = []
    for (const a of [...s.routes.adverts.values()].sort((x, y) => comparePositions(x.at, y.at))) {
      const cidr = parseCidr(a.cidr)
      const clash = accepted.find((x) => cidrsOverlap(x.cidr, cidr))
      if (clash !== undefined) { conflicts.push(`${a.cidr} ${a.author} ${clash.cidr.text} ${clash.peer}`); continue }
      accepted.push({ cidr, peer: a.author })
      routes.push(`${a.cidr} ${a.author}`)
    }
    return { routes: routes.sort(), conflicts }
  }

  it('property: the same routes and conflicts (and the same first clash) as comparing with every accepted CIDR', () => {
    // Nested and neighbouring CIDRs in a small space, so overlaps of every shape are common.
    const advert = fc.record({ author: fc.nat(2), octet: fc.nat(15), prefix: fc.integer({ min: 20, max: 32 }), v6: fc.boolean() })
    fc.assert(fc.property(fc.array(advert, { maxLength: 40 }), (ads) => {
      const b = members(3)
      const events = [...b.events]
      for (const a of ads) {
        const c = a.v6
          ? parseCidr(`fd00:${a.octet.toString(16)}::/${a.prefix + 96}`)
          : parseCidr(`${formatIp(4, (BigInt(0x0a140000 + a.octet * 256) >> BigInt(32 - a.prefix)) << BigInt(32 - a.prefix))}/${a.prefix}`)
        events.push(b.append(a.author, 'route.advertise', { cidr: c.text }, { seesAll: true }))
      }
      const s = foldNetwork(events)
      const t = table(s)
      const ref = linear(s)
      expect(t.routes.filter((r) => r.kind === 'advertised').map((r) => `${r.cidr} ${r.peer}`).sort()).toEqual(ref.routes)
      expect(t.conflicts.map((c) => `${c.cidr} ${c.peer} ${c.clashesWith} ${c.holder}`)).toEqual(ref.conflicts)
    }), { numRuns: 150 })
  })
})
