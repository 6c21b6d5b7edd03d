import { describe, expect, it } from 'vitest'
import { FoldEngine } from '../../src/crdt/fold.js'
import { compareEvents } from '../../src/log/event.js'
import { networkReducer, type NetworkState } from '../../src/projections/network.js'
import { chooseAddress, leaseOf } from '../../src/projections/ipam.js'
import { candidateAddress, leaseProblem, parseCidr } from '../../src/projections/ip.js'
import { deriveRoutes, lookupRoute } from '../../src/projections/routes.js'
import { LogBuilder, foldNetwork, join, ordered, shuffle, rng } from './support.js'

function holders (s: NetworkState): Map<string, string> {
  return new Map([...s.ipam.leases.values()].map((l) => [l.addr, l.author]))
}

/** Leases are consistent: one per member and family, held by members only, inside the overlay. */
function checkInvariants (s: NetworkState): void {
  const per = new Set<string>()
  for (const [addr, l] of s.ipam.leases) {
    expect(l.addr).toBe(addr)
    expect(s.members.active.has(l.author), `${addr} is held by a non-member`).toBe(true)
    const key = `${l.author}/${l.family}`
    expect(per.has(key), `${l.author.slice(0, 8)} holds two IPv${l.family} addresses`).toBe(false)
    per.add(key)
    expect(leaseOf(s.ipam, l.author, l.family)?.addr).toBe(addr)
    const overlay = l.family === 4 ? s.settings.values.overlayCidr : s.settings.values.overlayCidr6
    expect(overlay).not.toBeNull()
    expect(leaseProblem(parseCidr(overlay as string), addr)).toBeUndefined()
  }
}

describe('ipam', () => {
  it('a member claims its preferred address', () => {
    const b = new LogBuilder(1)
    b.append(0, 'node.join', join('a'))
    const s0 = b.stateOf(0)
    const want = chooseAddress(s0.ipam, s0.settings.values, b.hex(0))
    expect(want).toBe(candidateAddress(b.hex(0), parseCidr('10.1.0.0/16'), 0))
    const ev = b.append(0, 'ip.claim', { addr: want as string })
    const s = foldNetwork(b.events)
    expect(leaseOf(s.ipam, b.hex(0), 4)).toMatchObject({ addr: want, author: b.hex(0), family: 4, since: { id: ev.idHex } })
    expect(s.ipam.claims.get(`${b.hex(0)}/4`)).toMatchObject({ addr: want, status: 'held' })
    expect(chooseAddress(s.ipam, s.settings.values, b.hex(0))).toBe(want) // its current lease
    checkInvariants(s)
  })

  describe('two nodes claiming one address in a partition', () => {
    function partition (): { b: LogBuilder, ca: ReturnType<LogBuilder['append']>, cb: ReturnType<LogBuilder['append']> } {
      const b = new LogBuilder(3)
      b.append(0, 'node.join', join('a'))
      b.append(1, 'node.join', join('b'))
      b.syncAll()
      // Partition: neither sees the other's claim.
      const ca = b.append(0, 'ip.claim', { addr: '10.1.7.7' })
      const cb = b.append(1, 'ip.claim', { addr: '10.1.7.7' })
      expect(b.hasSeen(0, cb) || b.hasSeen(1, ca)).toBe(false)
      return { b, ca, cb }
    }

    it('each side believes it holds the address before the merge', () => {
      const { b } = partition()
      expect(holders(b.stateOf(0)).get('10.1.7.7')).toBe(b.hex(0))
      expect(holders(b.stateOf(1)).get('10.1.7.7')).toBe(b.hex(1))
    })

    it('after the merge exactly one holds it, whichever order the claims are folded in', () => {
      const { b, ca, cb } = partition()
      const [first, second] = [ca, cb].sort(compareEvents) as [typeof ca, typeof cb]
      const results: NetworkState[] = []
      const base = b.events.filter((e) => e !== ca && e !== cb)
      for (const order of [[ca, cb], [cb, ca]]) {
        const f = new FoldEngine({ network: networkReducer() }, { checkpointEvery: 1 })
        f.insert(base)
        for (const e of order) f.insert([e])
        results.push(f.states().network)
      }
      results.push(foldNetwork([...b.events].reverse()))
      for (const s of results) {
        expect(holders(s).get('10.1.7.7')).toBe(first.authorHex)
        expect(s.ipam.claims.get(`${second.authorHex}/4`)).toMatchObject({ addr: '10.1.7.7', status: 'lost', holder: first.authorHex })
        expect(leaseOf(s.ipam, second.authorHex, 4)).toBeUndefined()
        checkInvariants(s)
      }
      // The loser's agent picks a different free address, and its claim is then held.
      const s = results[0] as NetworkState
      const loser = second.authorHex === b.hex(0) ? 0 : 1
      const next = chooseAddress(s.ipam, s.settings.values, second.authorHex) as string
      expect(next).not.toBe('10.1.7.7')
      expect(s.ipam.leases.has(next)).toBe(false)
      expect(leaseProblem(parseCidr('10.1.0.0/16'), next)).toBeUndefined()
      b.append(loser, 'ip.claim', { addr: next }, { seesAll: true })
      const after = foldNetwork(b.events)
      expect(holders(after).get(next)).toBe(second.authorHex)
      expect(holders(after).get('10.1.7.7')).toBe(first.authorHex)
      checkInvariants(after)
    })

    it('chooseAddress skips every candidate already held', () => {
      const b = new LogBuilder(2)
      b.append(0, 'node.join', join('a'))
      b.append(1, 'node.join', join('b'))
      // Node 0 takes node 1's first two candidates.
      const o = parseCidr('10.1.0.0/16')
      b.append(0, 'ip.claim', { addr: candidateAddress(b.hex(1), o, 0) })
      const s = foldNetwork(b.events)
      expect(chooseAddress(s.ipam, s.settings.values, b.hex(1))).toBe(candidateAddress(b.hex(1), o, 1))
    })
  })

  it('the same IPv6 address written differently is one address', () => {
    const b = new LogBuilder(3)
    b.append(0, 'node.join', join('a'))
    b.setting(0, 'overlayCidr6', 'fd00:1::/64')
    b.append(1, 'node.join', join('b'), { seesAll: true })
    b.append(2, 'node.join', join('c'), { seesAll: true })
    b.append(0, 'ip.claim', { addr: 'fd00:1::7' }, { seesAll: true })
    b.append(1, 'ip.claim', { addr: 'fd00:1:0:0::7' }, { seesAll: true })
    b.append(2, 'ip.claim', { addr: 'FD00:1:0000:0:0:0:0:0007' }, { seesAll: true })
    const s = foldNetwork(b.events)
    expect([...s.ipam.leases.keys()]).toEqual(['fd00:1::7'])
    expect(holders(s).get('fd00:1::7')).toBe(b.hex(0))
    expect(s.ipam.claims.get(`${b.hex(1)}/6`)).toMatchObject({ status: 'lost', holder: b.hex(0), addr: 'fd00:1::7' })
    expect(s.ipam.claims.get(`${b.hex(2)}/6`)).toMatchObject({ status: 'lost', holder: b.hex(0) })
    // The route table stays a function.
    const t = deriveRoutes(s.routes, s.ipam, s.settings.values)
    expect(t.routes.filter((r) => r.kind === 'lease')).toHaveLength(1)
    expect(lookupRoute(t, 'fd00:1::7')?.peer).toBe(b.hex(0))
    checkInvariants(s)
  })

  describe('invalid claims', () => {
    it.each([
      ['10.2.0.5', /outside the overlay 10\.1\.0\.0\/16/],
      ['10.1.0.0', /network address/],
      ['10.1.255.255', /broadcast address/],
      ['fd00::5', /no IPv6 overlay/]
    ])('%s is invalid with a reason', (addr, re) => {
      const b = new LogBuilder(1)
      b.append(0, 'node.join', join('a'))
      b.append(0, 'ip.claim', { addr })
      const s = foldNetwork(b.events)
      expect(s.ipam.leases.size).toBe(0)
      const c = [...s.ipam.claims.values()][0]
      expect(c?.status).toBe('invalid')
      expect(c?.reason).toMatch(re)
    })

    it('a non-member cannot hold an address', () => {
      const b = new LogBuilder(1)
      b.append(0, 'ip.claim', { addr: '10.1.0.9' })
      const s = foldNetwork(b.events)
      expect(s.ipam.leases.size).toBe(0)
      expect(s.ipam.claims.get(`${b.hex(0)}/4`)).toMatchObject({ status: 'invalid', reason: expect.stringMatching(/only members/) })
    })

    it('an address the log schema takes but the projection cannot parse is invalid, not silently dropped', () => {
      const b = new LogBuilder(1)
      b.append(0, 'node.join', join('a'))
      b.setting(0, 'overlayCidr6', 'fd00::/64')
      b.append(0, 'ip.claim', { addr: '::ffff:10.1.0.9' })
      const s = foldNetwork(b.events)
      expect(s.ipam.leases.size).toBe(0)
      expect(s.ipam.claims.get(`${b.hex(0)}/6`)?.status).toBe('invalid')
    })
  })

  describe('a holder moving its lease', () => {
    it('a new free address moves the lease and frees the old one', () => {
      const b = new LogBuilder(1)
      b.append(0, 'node.join', join('a'))
      b.append(0, 'ip.claim', { addr: '10.1.0.5' })
      b.append(0, 'ip.claim', { addr: '10.1.0.6' })
      const s = foldNetwork(b.events)
      expect([...s.ipam.leases.keys()]).toEqual(['10.1.0.6'])
      checkInvariants(s)
    })

    it('a move that loses keeps the old lease, and leaving still releases it', () => {
      const b = new LogBuilder(2)
      b.append(0, 'node.join', join('a'))
      b.append(1, 'node.join', join('b'), { seesAll: true })
      b.append(0, 'ip.claim', { addr: '10.1.0.5' }, { seesAll: true })
      b.append(1, 'ip.claim', { addr: '10.1.0.6' }, { seesAll: true })
      b.append(0, 'ip.claim', { addr: '10.1.0.6' }, { seesAll: true }) // held by node 1: lost
      let s = foldNetwork(b.events)
      expect(s.ipam.claims.get(`${b.hex(0)}/4`)).toMatchObject({ addr: '10.1.0.6', status: 'lost', holder: b.hex(1) })
      expect(leaseOf(s.ipam, b.hex(0), 4)?.addr).toBe('10.1.0.5')
      expect(chooseAddress(s.ipam, s.settings.values, b.hex(0))).toBe('10.1.0.5')
      checkInvariants(s)
      // An invalid claim does not drop the lease either.
      b.append(0, 'ip.claim', { addr: '10.9.9.9' })
      s = foldNetwork(b.events)
      expect(leaseOf(s.ipam, b.hex(0), 4)?.addr).toBe('10.1.0.5')
      // Claiming its own address again makes the latest claim "held" again.
      b.append(0, 'ip.claim', { addr: '10.1.0.5' })
      s = foldNetwork(b.events)
      expect(s.ipam.claims.get(`${b.hex(0)}/4`)).toMatchObject({ addr: '10.1.0.5', status: 'held' })
      b.append(0, 'node.leave', {})
      s = foldNetwork(b.events)
      expect(s.ipam.leases.has('10.1.0.5')).toBe(false)
      expect([...s.ipam.leases.values()].map((l) => l.author)).toEqual([b.hex(1)])
      checkInvariants(s)
    })

    it('re-claiming its own address changes nothing', () => {
      const b = new LogBuilder(1)
      b.append(0, 'node.join', join('a'))
      const first = b.append(0, 'ip.claim', { addr: '10.1.0.5' })
      b.append(0, 'ip.claim', { addr: '10.1.0.5' })
      const s = foldNetwork(b.events)
      expect(s.ipam.leases.get('10.1.0.5')?.since.id).toBe(first.idHex)
      expect(s.ipam.claims.get(`${b.hex(0)}/4`)?.status).toBe('held')
    })
  })

  describe('release', () => {
    function held (): LogBuilder {
      const b = new LogBuilder(3)
      b.append(0, 'node.join', join('a'))
      b.append(1, 'node.join', join('b'), { seesAll: true })
      b.append(0, 'ip.claim', { addr: '10.1.0.5' }, { seesAll: true })
      b.append(1, 'ip.claim', { addr: '10.1.0.6' }, { seesAll: true })
      return b
    }

    it('on ip.release by the holder', () => {
      const b = held()
      b.append(0, 'ip.release', { addr: '10.1.0.5' }, { seesAll: true })
      const s = foldNetwork(b.events)
      expect(s.ipam.leases.has('10.1.0.5')).toBe(false)
      expect(s.ipam.claims.get(`${b.hex(0)}/4`)).toMatchObject({ status: 'released', reason: 'released by its holder' })
      // ... and the address is free for the next claim.
      b.append(1, 'ip.claim', { addr: '10.1.0.5' }, { seesAll: true })
      expect(holders(foldNetwork(b.events)).get('10.1.0.5')).toBe(b.hex(1))
    })

    it('not on ip.release by someone else', () => {
      const b = held()
      b.append(1, 'ip.release', { addr: '10.1.0.5' }, { seesAll: true })
      expect(holders(foldNetwork(b.events)).get('10.1.0.5')).toBe(b.hex(0))
    })

    it('on leave', () => {
      const b = held()
      b.append(0, 'node.leave', { reason: 'bye' }, { seesAll: true })
      const s = foldNetwork(b.events)
      expect(s.ipam.leases.has('10.1.0.5')).toBe(false)
      expect(s.ipam.claims.get(`${b.hex(0)}/4`)).toMatchObject({ status: 'released', reason: 'the member left' })
      checkInvariants(s)
    })

    it('on eviction by a member, not by a non-member', () => {
      const b = held()
      b.append(2, 'node.evict', { peer: b.ids[0]?.publicKey as Uint8Array, reason: 'x' }, { seesAll: true })
      expect(holders(foldNetwork(b.events)).get('10.1.0.5')).toBe(b.hex(0))
      b.append(1, 'node.evict', { peer: b.ids[0]?.publicKey as Uint8Array, reason: 'gone' }, { seesAll: true })
      const s = foldNetwork(b.events)
      expect(s.ipam.leases.has('10.1.0.5')).toBe(false)
      checkInvariants(s)
      // Rejoining does not bring the lease back: the node claims again.
      b.append(0, 'node.join', join('a'), { seesAll: true })
      expect(leaseOf(foldNetwork(b.events).ipam, b.hex(0), 4)).toBeUndefined()
    })
  })

  describe('an overlay change', () => {
    it('revokes leases outside the new overlay and keeps those inside', () => {
      const b = new LogBuilder(2)
      b.append(0, 'node.join', join('a'))
      b.append(1, 'node.join', join('b'), { seesAll: true })
      b.append(0, 'ip.claim', { addr: '10.1.0.5' }, { seesAll: true })
      b.append(1, 'ip.claim', { addr: '10.1.200.6' }, { seesAll: true })
      const ev = b.setting(0, 'overlayCidr', '10.1.0.0/17', { seesAll: true })
      const s = foldNetwork(b.events)
      expect([...s.ipam.leases.keys()]).toEqual(['10.1.0.5'])
      expect(s.ipam.claims.get(`${b.hex(1)}/4`)).toMatchObject({ status: 'lost', reason: 'the overlay is now 10.1.0.0/17', at: { id: ev.idHex } })
      checkInvariants(s)
      // The agent's next choice is inside the new overlay.
      const next = chooseAddress(s.ipam, s.settings.values, b.hex(1)) as string
      expect(leaseProblem(parseCidr('10.1.0.0/17'), next)).toBeUndefined()
    })

    it('revokes a lease that became the broadcast address of the new overlay', () => {
      const b = new LogBuilder(1)
      b.append(0, 'node.join', join('a'))
      b.append(0, 'ip.claim', { addr: '10.1.0.255' })
      b.setting(0, 'overlayCidr', '10.1.0.0/24')
      const s = foldNetwork(b.events)
      expect(s.ipam.leases.size).toBe(0)
      expect(s.ipam.claims.get(`${b.hex(0)}/4`)?.status).toBe('lost')
    })

    it('turning the IPv6 overlay off revokes IPv6 leases only', () => {
      const b = new LogBuilder(1)
      b.append(0, 'node.join', join('a'))
      b.setting(0, 'overlayCidr6', 'fd00::/64')
      b.append(0, 'ip.claim', { addr: '10.1.0.5' })
      b.append(0, 'ip.claim', { addr: 'fd00::5' })
      expect(foldNetwork(b.events).ipam.leases.size).toBe(2)
      b.setting(0, 'overlayCidr6', null)
      const s = foldNetwork(b.events)
      expect([...s.ipam.leases.keys()]).toEqual(['10.1.0.5'])
      expect(s.ipam.claims.get(`${b.hex(0)}/6`)).toMatchObject({ status: 'lost', reason: 'the overlay is now unset' })
    })
  })

  it('random claim races keep every address with one member, in any fold order', () => {
    const r = rng(7)
    for (let round = 0; round < 5; round++) {
      const b = new LogBuilder(4)
      for (let a = 0; a < 4; a++) b.append(a, 'node.join', join(`n${a}`))
      b.setting(0, 'overlayCidr', '10.9.8.0/29')
      for (let i = 0; i < 24; i++) {
        const a = Math.floor(r() * 4)
        const kind = r()
        const opts = { seesAll: r() < 0.3 }
        if (kind < 0.7) b.append(a, 'ip.claim', { addr: `10.9.8.${1 + Math.floor(r() * 6)}` }, opts)
        else if (kind < 0.85) b.append(a, 'ip.release', { addr: `10.9.8.${1 + Math.floor(r() * 6)}` }, opts)
        else b.append(a, kind < 0.93 ? 'node.leave' : 'node.join', kind < 0.93 ? {} as never : join(`n${a}`) as never, opts)
      }
      const want = JSON.stringify([...foldNetwork(b.events).ipam.leases.entries()].sort())
      for (let k = 0; k < 3; k++) {
        const f = new FoldEngine({ network: networkReducer() }, { checkpointEvery: 3 })
        for (const e of shuffle(b.events, r)) f.insert([e])
        const s = f.states().network
        expect(JSON.stringify([...s.ipam.leases.entries()].sort())).toBe(want)
        checkInvariants(s)
      }
      checkInvariants(foldNetwork(ordered(b.events)))
    }
  })
})
