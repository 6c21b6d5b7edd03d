import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { identityFromSeed } from '../../src/log/identity.js'
import { networkView } from '../../src/projections/view.js'
import { currentDelegates, routeAllowed } from '../../src/projections/authority.js'
import type { NetworkState } from '../../src/projections/network.js'
import type { SignedEvent } from '../../src/log/event.js'
import { foldNetwork, join, LogBuilder, shuffle, rng } from './support.js'
import { FoldEngine } from '../../src/crdt/fold.js'
import { networkReducer } from '../../src/projections/network.js'

const OWNER = identityFromSeed(new Uint8Array(32).fill(0x0f))
const STRANGER = identityFromSeed(new Uint8Array(32).fill(0x0e))

/** Four members (0..3) that joined and claimed addresses, all synced; owned by OWNER. */
function network (): LogBuilder {
  const b = new LogBuilder(5)
  b.owner = OWNER.publicKey
  for (let i = 0; i < 4; i++) {
    b.append(i, 'node.join', join(`n${i}`), { seesAll: true })
    b.append(i, 'ip.claim', { addr: `10.1.0.${i + 1}` }, { seesAll: true })
  }
  b.syncAll()
  return b
}

const fold = (b: LogBuilder): NetworkState => foldNetwork(b.events, {}, OWNER.publicKey)
const refused = (s: NetworkState): string[] => s.authority.refused.map((r) => `${r.type} ${r.code}`)

describe('authority: what an ordinary member may not do', () => {
  it('evicting another member is refused (ERR_UNAUTHORISED) and changes nothing; the owner\'s cosignature makes it count', () => {
    const b = network()
    b.append(1, 'node.evict', { peer: b.ids[2]!.publicKey, reason: 'takeover' }, { seesAll: true })
    b.append(1, 'ip.claim', { addr: '10.1.0.3' }, { seesAll: true }) // and take its address
    let s = fold(b)
    expect(s.members.active.has(b.hex(2))).toBe(true)
    expect(s.ipam.leases.get('10.1.0.3')?.author).toBe(b.hex(2))
    expect(refused(s)).toEqual(['node.evict ERR_UNAUTHORISED'])
    b.append(3, 'node.evict', { peer: b.ids[2]!.publicKey, reason: 'decommissioned' }, { seesAll: true, cosigner: OWNER })
    s = fold(b)
    expect(s.members.active.has(b.hex(2))).toBe(false)
    expect(s.members.departed.get(b.hex(2))?.how).toBe('evict')
  })

  it('a settings change (renumbering the overlay) is refused unless cosigned', () => {
    const b = network()
    b.setting(1, 'overlayCidr', '172.31.0.0/30', { seesAll: true })
    let s = fold(b)
    expect(s.settings.values.overlayCidr).not.toBe('172.31.0.0/30')
    expect(s.ipam.leases.get('10.1.0.2')?.author).toBe(b.hex(1))
    expect(refused(s)).toEqual(['settings.change ERR_UNAUTHORISED'])
    b.setting(1, 'minNodes', 3, { seesAll: true, cosigner: OWNER })
    s = fold(b)
    expect(s.settings.values.minNodes).toBe(3)
  })

  it('routes: private ranges are free, 8.0.0.0/8 needs authority', () => {
    expect(routeAllowed('192.168.60.0/24')).toBe(true)
    expect(routeAllowed('fd12::/64')).toBe(true)
    expect(routeAllowed('8.0.0.0/8')).toBe(false)
    expect(routeAllowed('0.0.0.0/0')).toBe(false)
    expect(routeAllowed('10.0.0.0/7')).toBe(false)
    const b = network()
    b.append(1, 'route.advertise', { cidr: '8.0.0.0/8' }, { seesAll: true })
    b.append(1, 'route.advertise', { cidr: '192.168.60.0/24' }, { seesAll: true })
    let s = fold(b)
    expect([...s.routes.adverts.values()].map((a) => a.cidr)).toEqual(['192.168.60.0/24'])
    b.append(2, 'route.advertise', { cidr: '8.8.8.0/24' }, { seesAll: true, cosigner: OWNER })
    s = fold(b)
    expect([...s.routes.adverts.values()].map((a) => a.cidr).sort()).toEqual(['192.168.60.0/24', '8.8.8.0/24'])
  })

  it('a cosignature by a key that is neither the owner nor a delegate gives no authority', () => {
    const b = network()
    b.append(1, 'node.evict', { peer: b.ids[2]!.publicKey, reason: 'x' }, { seesAll: true, cosigner: STRANGER })
    expect(fold(b).members.active.has(b.hex(2))).toBe(true)
  })
})

describe('authority: delegates', () => {
  it('the owner grants; the delegate then acts on its own; a delegate cannot grant', () => {
    const b = network()
    b.append(0, 'admin.grant', { peer: b.ids[1]!.publicKey }, { seesAll: true, cosigner: OWNER })
    b.append(1, 'node.evict', { peer: b.ids[3]!.publicKey, reason: 'delegate decides' }, { seesAll: true })
    b.append(1, 'admin.grant', { peer: b.ids[2]!.publicKey }, { seesAll: true })
    const s = fold(b)
    expect(currentDelegates(s.authority)).toEqual([b.hex(1)])
    expect(s.members.active.has(b.hex(3))).toBe(false)
    expect(refused(s)).toEqual(['admin.grant ERR_UNAUTHORISED'])
  })

  it('a delegate that has not seen its grant has no authority yet (judged in the causal past)', () => {
    const b = network()
    b.append(0, 'admin.grant', { peer: b.ids[1]!.publicKey }, { seesAll: true, cosigner: OWNER })
    // Member 1 acts without having synced the grant.
    b.append(1, 'node.evict', { peer: b.ids[3]!.publicKey, reason: 'too early' })
    expect(fold(b).members.active.has(b.hex(3))).toBe(true)
  })

  it('an ungrant stops later acts; a concurrent one does not undo what the delegate did before seeing it', () => {
    const b = network()
    b.append(0, 'admin.grant', { peer: b.ids[1]!.publicKey }, { seesAll: true, cosigner: OWNER })
    b.syncAll()
    const ungrant = b.append(0, 'admin.ungrant', { peer: b.ids[1]!.publicKey }, { cosigner: OWNER })
    b.append(1, 'node.evict', { peer: b.ids[3]!.publicKey, reason: 'concurrent with the ungrant' })
    let s = fold(b)
    expect(s.members.active.has(b.hex(3))).toBe(false)
    b.learn(1, ungrant)
    b.append(1, 'node.evict', { peer: b.ids[2]!.publicKey, reason: 'after the ungrant' })
    s = fold(b)
    expect(s.members.active.has(b.hex(2))).toBe(true)
    expect(currentDelegates(s.authority)).toEqual([])
  })
})

describe('authority: revocation', () => {
  it('a revoked member departs, its address is free, and its later events (a rejoin, claims, routes) are ignored', () => {
    const b = network()
    b.append(1, 'route.advertise', { cidr: '192.168.9.0/24' }, { seesAll: true })
    b.append(0, 'node.revoke', { peer: b.ids[1]!.publicKey, reason: 'stolen' }, { seesAll: true, cosigner: OWNER })
    b.append(1, 'node.join', join('n1'), { seesAll: true })
    b.append(1, 'ip.claim', { addr: '10.1.0.9' }, { seesAll: true })
    b.append(1, 'route.advertise', { cidr: '192.168.10.0/24' }, { seesAll: true })
    b.append(2, 'ip.claim', { addr: '10.1.0.2' }, { seesAll: true })
    const s = fold(b)
    expect(s.members.active.has(b.hex(1))).toBe(false)
    expect(s.members.departed.get(b.hex(1))?.how).toBe('revoke')
    expect(s.authority.revoked.has(b.hex(1))).toBe(true)
    expect([...s.routes.adverts.values()]).toEqual([])
    expect(s.ipam.leases.get('10.1.0.2')?.author).toBe(b.hex(2))
    expect(s.ipam.leases.has('10.1.0.9')).toBe(false)
    expect(networkView(s).members.map((m) => m.hostname)).toEqual(['n0', 'n2', 'n3'])
  })

  it('an ordinary member cannot revoke', () => {
    const b = network()
    b.append(2, 'node.revoke', { peer: b.ids[1]!.publicKey, reason: 'x' }, { seesAll: true })
    const s = fold(b)
    expect(s.authority.revoked.size).toBe(0)
    expect(s.members.active.has(b.hex(1))).toBe(true)
  })

  it('a rotation is recorded once per epoch (the first authorised one wins)', () => {
    const b = network()
    const sealed = [{ to: new Uint8Array(32).fill(1), box: new Uint8Array(48).fill(2) }]
    b.append(2, 'network.rotate', { epoch: 1, ephemeral: new Uint8Array(32).fill(9), sealed }, { seesAll: true })
    expect(fold(b).authority.rotations.size).toBe(0)
    b.append(0, 'network.rotate', { epoch: 1, ephemeral: new Uint8Array(32).fill(3), sealed }, { seesAll: true, cosigner: OWNER })
    b.append(3, 'network.rotate', { epoch: 1, ephemeral: new Uint8Array(32).fill(4), sealed }, { seesAll: true, cosigner: OWNER })
    const s = fold(b)
    expect(s.authority.rotations.get(1)?.ephemeral[0]).toBe(3)
  })
})

describe('authority: an open network (legacy token without an owner)', () => {
  it('keeps the first behaviour: any member may evict', () => {
    const b = network()
    b.owner = undefined
    b.append(1, 'node.evict', { peer: b.ids[2]!.publicKey, reason: 'x' }, { seesAll: true })
    expect(foldNetwork(b.events).members.active.has(b.hex(2))).toBe(false)
  })
})

/** What unauthorised events must never change: everything but refusal bookkeeping and k3s stability. */
function effects (s: NetworkState): string {
  const v = networkView(s)
  return JSON.stringify({
    settings: v.settings.values,
    members: v.members.map((m) => [m.author, m.hostname, m.address, m.cluster]),
    departed: v.departed,
    leases: v.ipam.leases,
    routes: v.routes.routes,
    services: v.services.exports.map((x) => [x.namespace, x.name, x.cluster]),
    delegates: currentDelegates(s.authority),
    revoked: [...s.authority.revoked.keys()].sort(),
    rotations: [...s.authority.rotations.keys()].sort()
  })
}

type Act = { who: number, kind: 'evict' | 'revoke' | 'settings' | 'route' | 'grant' | 'ungrant' | 'rotate' | 'claim', target: number, cosigned: boolean }

const actArb: fc.Arbitrary<Act> = fc.record({
  who: fc.integer({ min: 0, max: 3 }),
  kind: fc.constantFrom('evict', 'revoke', 'settings', 'route', 'grant', 'ungrant', 'rotate', 'claim'),
  target: fc.integer({ min: 0, max: 3 }),
  cosigned: fc.boolean()
})

function perform (b: LogBuilder, act: Act, n: number, asAttacker: boolean): SignedEvent {
  const o = { seesAll: !asAttacker || n % 2 === 0, ...(act.cosigned && !asAttacker && act.kind !== 'claim' ? { cosigner: OWNER } : {}) }
  const peer = b.ids[act.target]!.publicKey
  switch (act.kind) {
    case 'evict': return b.append(act.who, 'node.evict', { peer, reason: `r${n}` }, o)
    case 'revoke': return b.append(act.who, 'node.revoke', { peer, reason: `r${n}` }, o)
    case 'settings': return b.setting(act.who, 'minNodes', n + 1, o)
    case 'route': return b.append(act.who, 'route.advertise', { cidr: `${9 + (n % 50)}.0.0.0/8` }, o)
    case 'grant': return b.append(act.who, 'admin.grant', { peer }, o)
    case 'ungrant': return b.append(act.who, 'admin.ungrant', { peer }, o)
    case 'rotate': return b.append(act.who, 'network.rotate', { epoch: 1 + (n % 3), ephemeral: new Uint8Array(32).fill(n % 256), sealed: [] }, o)
    case 'claim': return b.append(act.who, 'ip.claim', { addr: `10.1.1.${(n % 200) + 1}` }, o)
  }
}

describe('authority: properties', () => {
  it('events from members without authority never change any projection', () => {
    fc.assert(fc.property(fc.array(actArb, { maxLength: 12 }), fc.array(actArb, { minLength: 1, maxLength: 8 }), (honest, attacks) => {
      const b = network()
      honest.forEach((a, i) => perform(b, a, i, false))
      b.syncAll()
      const delegates = new Set(currentDelegates(fold(b).authority))
      const before = effects(fold(b))
      // The attacker: any member that is not a delegate, acting without cosignatures, on any
      // administrative event (claims of its own are allowed, so they are left out).
      let count = 0
      attacks.forEach((a, i) => {
        if (a.kind === 'claim' || a.kind === 'route' || delegates.has(b.hex(a.who))) return
        perform(b, a, 100 + i, true)
        count++
      })
      const after = fold(b)
      expect(effects(after)).toBe(before)
      return count >= 0
    }), { numRuns: 60 })
  })

  it('every replica decides the same, whatever the delivery order and checkpoints', () => {
    fc.assert(fc.property(fc.array(actArb, { maxLength: 16 }), fc.integer({ min: 1, max: 1_000_000 }), (acts, seed) => {
      const b = network()
      acts.forEach((a, i) => perform(b, a, i, i % 3 === 0))
      const reference = effects(fold(b))
      const r = rng(seed)
      const shuffled = shuffle([...b.events], r)
      // Insert in random chunks (refolds from checkpoints) with duplicates.
      const f = foldInChunks(shuffled.concat(shuffled.slice(0, 5)), 1 + Math.floor(r() * 5))
      expect(effects(f)).toBe(reference)
    }), { numRuns: 60 })
  })
})

function foldInChunks (events: SignedEvent[], chunk: number): NetworkState {
  // Deduplicate as the merged log would, then fold chunk by chunk (each insert that lands
  // earlier in the order refolds from a checkpoint).
  const seen = new Set<string>()
  const unique = events.filter((e) => (seen.has(e.idHex) ? false : (seen.add(e.idHex), true)))
  const eng = new FoldEngine({ network: networkReducer({ owner: OWNER.publicKey }) }, { checkpointEvery: 3 })
  for (let i = 0; i < unique.length; i += chunk) eng.insert(unique.slice(i, i + chunk))
  return eng.states().network
}

describe('authority: a forked author is treated as revoked', () => {
  it('it departs after its last event before the fork; its address and routes go; every delivery order agrees', async () => {
    const { Replica } = await import('../../src/adapters/replica.js')
    const { replicaReducers } = await import('../../src/projections/reducers.js')
    const { memoryDb, NET } = await import('../support/fixtures.js')
    const { signEvent } = await import('../../src/log/event.js')
    const b = network()
    b.append(1, 'route.advertise', { cidr: '192.168.9.0/24' }, { seesAll: true })
    // A second event at member 1's seq 4 (its route is seq 3): a fork.
    const twin = b.events.filter((e) => e.authorHex === b.hex(1)).sort((x, y) => x.fields.seq - y.fields.seq)
    const base = twin[twin.length - 1]!
    const mk = (addr: string): SignedEvent => signEvent({ ...base.fields, seq: base.fields.seq + 1, prev: base.id, deps: [], lamport: base.fields.lamport + 1, type: 'ip.claim', body: { addr } } as never, b.ids[1]!)
    const forkA = mk('10.1.0.77')
    const forkB = mk('10.1.0.78')
    const states: string[] = []
    for (const order of [[...b.events, forkA, forkB], [forkB, ...b.events, forkA], [...b.events.slice().reverse(), forkA, forkB]]) {
      const r = await Replica.open({ db: memoryDb(), net: NET, reducers: replicaReducers(), owner: OWNER.publicKey, sync: false })
      for (const e of order) await r.ingest([e])
      const s = r.states().network
      expect(s.members.active.has(b.hex(1))).toBe(false)
      expect(s.members.departed.get(b.hex(1))?.how).toBe('forked')
      expect([...s.ipam.leases.values()].map((l) => l.author)).not.toContain(b.hex(1))
      expect([...s.routes.adverts.values()]).toEqual([])
      states.push(effects(s))
      await r.close()
    }
    expect(new Set(states).size).toBe(1)
  })
})
