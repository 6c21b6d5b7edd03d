import { describe, expect, it } from 'vitest'
import { FoldEngine } from '../../src/crdt/fold.js'
import type { MergedLog } from '../../src/crdt/merged-log.js'
import { signEvent, type EventFields, type SignedEvent } from '../../src/log/event.js'
import type { NodeIdentity } from '../../src/log/identity.js'
import type { BodyOf, EventType } from '../../src/log/bodies.js'
import { networkReducer, type NetworkState } from '../../src/projections/network.js'
import { deriveRoles } from '../../src/projections/roles.js'
import { deriveRoutes, lookupRoute } from '../../src/projections/routes.js'
import { chooseAddress, leaseOf } from '../../src/projections/ipam.js'
import { Followers, countFollowing } from '../../src/projections/followers.js'
import { IDS, LogBuilder, NET, foldNetwork, join, newMergedLog, viewJson } from './support.js'

/** A replica as Replica does it: merged log, fold of the visible events, forks refold. */
class MiniReplica {
  readonly log: MergedLog = newMergedLog()
  readonly fold = new FoldEngine({ network: networkReducer() }, { checkpointEvery: 2 })
  ingest (events: readonly SignedEvent[]): void {
    const res = this.log.ingest(events)
    expect(res.rejected).toEqual([])
    this.fold.insert(res.added.filter((e) => this.log.isVisible(e)))
    if (res.forks.length > 0) this.fold.remove((e) => !this.log.isVisible(e))
  }

  get state (): NetworkState { return this.fold.states().network }
}

/** A hand-built event: any deps (a valid event need not name every head it has seen). */
function mk<T extends EventType> (id: NodeIdentity, type: T, body: BodyOf<T>, o: { prev?: SignedEvent, deps?: SignedEvent[], time?: number } = {}): SignedEvent {
  const deps = o.deps ?? []
  return signEvent({
    v: 1,
    net: NET,
    author: id.publicKey,
    seq: (o.prev?.fields.seq ?? 0) + 1,
    prev: o.prev?.id ?? null,
    deps: deps.map((d) => d.id),
    lamport: Math.max(o.prev?.fields.lamport ?? 0, ...deps.map((d) => d.fields.lamport)) + 1,
    time: o.time ?? 1_700_000_000,
    type,
    body
  } as EventFields, id)
}

describe('network (all projections folded together)', () => {
  it('a small network: roles, addresses, routes and settings from one log', () => {
    const b = new LogBuilder(3)
    b.append(0, 'node.join', join('n0'))
    b.append(1, 'node.join', join('n1'), { seesAll: true })
    b.append(2, 'node.join', join('n2'), { seesAll: true })
    for (const a of [0, 1, 2]) {
      const s = b.stateOf(a)
      b.append(a, 'ip.claim', { addr: chooseAddress(s.ipam, s.settings.values, b.hex(a)) as string }, { seesAll: true })
    }
    b.append(1, 'route.advertise', { cidr: '192.168.50.0/24' }, { seesAll: true })
    b.setting(2, 'serverCount', 2, { seesAll: true })
    for (const a of [0, 1, 2]) b.ack(a, 'default', { seesAll: true })
    const s = foldNetwork(b.events)
    const c = deriveRoles(s.roles, s.members, s.settings.values)[0]
    expect(c?.status).toBe('stable')
    expect(c?.members.map((m) => m.role)).toEqual(['init', 'server', 'agent'])
    expect(s.ipam.leases.size).toBe(3)
    const t = deriveRoutes(s.routes, s.ipam, s.settings.values)
    expect(lookupRoute(t, '192.168.50.9')?.peer).toBe(b.hex(1))
    expect(lookupRoute(t, leaseOf(s.ipam, b.hex(2), 4)?.addr as string)?.peer).toBe(b.hex(2))
  })

  it('members: leave and evict remove, a rejoin after either is a member again at a new position', () => {
    const b = new LogBuilder(3)
    const j0 = b.append(0, 'node.join', join('n0'))
    b.append(1, 'node.join', join('n1'), { seesAll: true })
    b.append(0, 'node.join', { ...join('n0-renamed'), addrs: ['192.0.2.1'] }, { seesAll: true })
    let s = foldNetwork(b.events)
    expect(s.members.active.get(b.hex(0))).toMatchObject({ hostname: 'n0-renamed', joinId: j0.idHex, joinedLamport: j0.fields.lamport, addrs: ['192.0.2.1'] })
    b.append(1, 'node.evict', { peer: IDS[0]?.publicKey as Uint8Array, reason: 'broken' }, { seesAll: true })
    b.append(1, 'node.leave', { reason: 'maintenance' }, { seesAll: true })
    s = foldNetwork(b.events)
    expect(s.members.active.size).toBe(0)
    expect(s.members.departed.get(b.hex(0))).toMatchObject({ how: 'evict', by: b.hex(1), reason: 'broken' })
    expect(s.members.departed.get(b.hex(1))).toMatchObject({ how: 'leave', reason: 'maintenance' })
    const again = b.append(0, 'node.join', join('n0'), { seesAll: true })
    s = foldNetwork(b.events)
    expect(s.members.active.get(b.hex(0))).toMatchObject({ joinId: again.idHex, joinedLamport: again.fields.lamport })
    expect(s.members.departed.has(b.hex(0))).toBe(false)
  })

  it('evicting oneself or being evicted by a non-member changes nothing', () => {
    const b = new LogBuilder(3)
    b.append(0, 'node.join', join('n0'))
    b.append(1, 'node.join', join('n1'), { seesAll: true })
    b.append(0, 'ip.claim', { addr: '10.1.0.5' }, { seesAll: true })
    b.append(0, 'node.evict', { peer: IDS[0]?.publicKey as Uint8Array, reason: 'me' }, { seesAll: true })
    b.append(2, 'node.evict', { peer: IDS[0]?.publicKey as Uint8Array, reason: 'outsider' }, { seesAll: true })
    const s = foldNetwork(b.events)
    expect(s.members.active.has(b.hex(0))).toBe(true)
    expect(s.ipam.leases.get('10.1.0.5')?.author).toBe(b.hex(0))
  })

  it('a settings change of minNodes decides a waiting cluster at that change', () => {
    const b = new LogBuilder(2)
    b.setting(0, 'minNodes', 3)
    b.append(0, 'node.join', join('n0'), { seesAll: true })
    b.append(1, 'node.join', join('n1'), { seesAll: true })
    expect(deriveRoles(foldNetwork(b.events).roles, foldNetwork(b.events).members, foldNetwork(b.events).settings.values)[0]?.status).toBe('waiting')
    const ev = b.setting(1, 'minNodes', 2, { seesAll: true })
    const s = foldNetwork(b.events)
    expect(deriveRoles(s.roles, s.members, s.settings.values)[0]?.master).toMatchObject({ author: b.hex(0), decidedAt: { id: ev.idHex } })
  })

  it('incremental folding (any chunks, any order, small checkpoints) equals one full fold', () => {
    const b = new LogBuilder(4)
    b.setting(3, 'minNodes', 2)
    for (const a of [0, 1, 2, 3]) b.append(a, 'node.join', join(`n${a}`, a % 2 === 0 ? 'alpha' : 'beta', a === 2 ? 'master' : 'auto'))
    for (const a of [0, 1, 2, 3]) b.append(a, 'ip.claim', { addr: `10.1.0.${1 + (a % 2)}` })
    b.append(1, 'route.advertise', { cidr: '192.168.0.0/16' }, { seesAll: true })
    b.append(3, 'route.advertise', { cidr: '192.168.1.0/24' })
    b.setting(0, 'overlayCidr', '10.1.0.0/24', { seesAll: true })
    b.append(2, 'node.leave', {}, { seesAll: true })
    for (const a of [0, 1, 3]) b.append(a, 'route.withdraw', { cidr: '192.0.2.0/24' }, { seesAll: true })
    const want = viewJson(foldNetwork(b.events))
    for (let k = 1; k <= 4; k++) {
      const f = new FoldEngine({ network: networkReducer() }, { checkpointEvery: k })
      const evs = [...b.events].reverse()
      for (let i = 0; i < evs.length; i += k) f.insert(evs.slice(i, i + k))
      expect(viewJson(f.states().network)).toBe(want)
      // statesAfter the whole view equals the live state too.
      expect(viewJson(f.statesAfter(f.length).network)).toBe(want)
    }
  })

  it('Followers: first following seq per author, through parents, cloned and deleted cleanly', () => {
    const b = new LogBuilder(3)
    const t = b.append(0, 'node.join', join('n0'))
    const other = b.append(1, 'node.join', join('n1'))
    const f = new Followers()
    const locate = new Map(b.events.map((e) => [e.idHex, { author: e.authorHex, seq: e.fields.seq }]))
    f.watch(t)
    expect(countFollowing(f, t.idHex, [b.hex(0), b.hex(1), b.hex(2)])).toBe(1)
    const e1 = b.append(1, 'route.withdraw', { cidr: '192.0.2.0/24' }, { seesAll: true })
    locate.set(e1.idHex, { author: b.hex(1), seq: e1.fields.seq })
    expect(f.observe(other, locate)).toBe(false)
    expect(f.observe(e1, locate)).toBe(true)
    expect(f.get(t.idHex)?.get(b.hex(1))).toBe(2)
    const copy = f.clone()
    // n2 sees only n1's event: follows transitively.
    b.learn(2, e1)
    const e2 = b.append(2, 'route.withdraw', { cidr: '192.0.2.0/24' })
    expect(f.observe(e2, locate)).toBe(true)
    expect(countFollowing(f, t.idHex, [b.hex(0), b.hex(1), b.hex(2)])).toBe(3)
    expect(countFollowing(copy, t.idHex, [b.hex(0), b.hex(1), b.hex(2)])).toBe(2)
    expect(f.observe(e2, locate)).toBe(false) // already following
    f.delete(t.idHex)
    expect(f.size).toBe(0)
    expect(f.observe(e2, locate)).toBe(false)
    expect(copy.size).toBe(1)
  })

  describe('causality is traced only through events in the view', () => {
    /**
     * Cluster of n0 and n1, n0 the auto master, n1 joined concurrently. X (not a member) saw
     * n0's join in X1, then appended X2; n1's vote for n0 names only X2 as a dependency, so it
     * knows n0 joined through X2 alone (n0 is then in the electorate). Then X forks at seq 2: X2
     * leaves every view (X1 stays). Whether a replica folded X2 before learning of the fork must
     * not matter.
     */
    function scenario (): { d: SignedEvent, j1: SignedEvent, x1: SignedEvent, x2: SignedEvent, x2b: SignedEvent, e: SignedEvent } {
      const [n0, n1, x] = IDS as [NodeIdentity, NodeIdentity, NodeIdentity]
      const d = mk(n0, 'node.join', join('n0'))
      const j1 = mk(n1, 'node.join', join('n1'))
      const x1 = mk(x, 'route.withdraw', { cidr: '192.0.2.0/24' }, { deps: [d] })
      const x2 = mk(x, 'route.withdraw', { cidr: '192.0.2.0/24' }, { prev: x1 })
      const x2b = mk(x, 'route.withdraw', { cidr: '192.0.2.0/24' }, { prev: x1, time: 1_700_000_001 })
      const e = mk(n1, 'role.ack', { cluster: 'default', master: n0.publicKey }, { prev: j1, deps: [x2] })
      return { d, j1, x1, x2, x2b, e }
    }

    it('a replica that folded the forked event first agrees with one that never did', () => {
      const { d, j1, x1, x2, x2b, e } = scenario()
      const early = new MiniReplica()
      early.ingest([d, j1, x1, x2, e])
      early.ingest([x2b])
      const late = new MiniReplica()
      late.ingest([d, j1, x1, x2, x2b])
      late.ingest([e])
      expect(late.log.isVisible(x2)).toBe(false)
      expect(late.log.isVisible(x1)).toBe(true)
      expect(viewJson(early.state)).toBe(viewJson(late.state))
      // And both equal a fold from nothing of the visible events.
      const fresh = foldNetwork([...late.log.events()].filter((ev) => late.log.isVisible(ev)))
      expect(viewJson(early.state)).toBe(viewJson(fresh))
    })

    it('before the fork is known, the path through X1 counts', () => {
      const { d, j1, x1, x2, e } = scenario()
      const s = foldNetwork([d, j1, x1, x2, e])
      // n1 knew n0 had joined when it voted: n0 (no vote yet) is in the electorate.
      expect(deriveRoles(s.roles, s.members, s.settings.values)[0]).toMatchObject({ status: 'tentative', votes: { for: 1, electorate: 2 } })
    })
  })
})
