import { describe, expect, it } from 'vitest'
import { FoldEngine } from '../../src/crdt/fold.js'
import { compareEvents, type SignedEvent } from '../../src/log/event.js'
import { networkReducer, type NetworkState } from '../../src/projections/network.js'
import { deriveRoles, type ClusterRolesView, type K3sRole } from '../../src/projections/roles.js'
import { LogBuilder, foldNetwork, join, viewJson } from './support.js'

function cluster (s: NetworkState, name = 'default'): ClusterRolesView {
  const c = deriveRoles(s.roles, s.members, s.settings.values).find((x) => x.cluster === name)
  if (c === undefined) throw new Error(`no cluster ${name}`)
  return c
}

/** hostname → role, for a compact expectation. */
function roles (s: NetworkState, name = 'default'): Record<string, K3sRole> {
  return Object.fromEntries(cluster(s, name).members.map((m) => [m.hostname, m.role]))
}

function stableFlags (s: NetworkState, name = 'default'): Record<string, boolean> {
  return Object.fromEntries(cluster(s, name).members.map((m) => [m.hostname, m.stable]))
}

/** Every author learns everything and acknowledges the master its replica shows (its agent's vote). */
function everyoneCatchesUp (b: LogBuilder, authors: readonly number[], cluster = 'default'): void {
  for (const a of authors) b.ack(a, cluster, { seesAll: true })
}

/** The same state from every delivery order we try: folded whole, reversed, one by one with checkpoints. */
function foldEverywhere (events: readonly SignedEvent[]): NetworkState {
  const whole = foldNetwork(events)
  const reversed = foldNetwork([...events].reverse())
  const f = new FoldEngine({ network: networkReducer() }, { checkpointEvery: 2 })
  for (const e of [...events].reverse()) f.insert([e])
  expect(viewJson(reversed)).toBe(viewJson(whole))
  expect(viewJson(f.states().network)).toBe(viewJson(whole))
  return whole
}

describe('roles', () => {
  describe('3 nodes with one forced master, booting at once', () => {
    function boot (serverCount?: number): LogBuilder {
      const b = new LogBuilder(3)
      if (serverCount !== undefined) b.setting(2, 'serverCount', serverCount)
      // Concurrent joins: nobody has seen anybody (node 2's settings change aside).
      b.append(0, 'node.join', join('n0'))
      b.append(1, 'node.join', join('n1', 'default', 'master'))
      b.append(2, 'node.join', join('n2'))
      return b
    }

    it('the forced node is init and the others are agents (serverCount=1)', () => {
      const b = boot()
      let s = foldEverywhere(b.events)
      expect(roles(s)).toEqual({ n0: 'agent', n1: 'init', n2: 'agent' })
      expect(cluster(s).master).toMatchObject({ author: b.hex(1), how: 'forced' })
      expect(cluster(s).status).toBe('tentative')
      everyoneCatchesUp(b, [0, 1, 2])
      s = foldEverywhere(b.events)
      expect(roles(s)).toEqual({ n0: 'agent', n1: 'init', n2: 'agent' })
      expect(cluster(s).status).toBe('stable')
      expect(stableFlags(s)).toEqual({ n0: true, n1: true, n2: true })
      expect(cluster(s).conflicts).toEqual([])
    })

    it('serverCount=3 makes the two others servers', () => {
      const b = boot(3)
      everyoneCatchesUp(b, [0, 1, 2])
      const s = foldEverywhere(b.events)
      expect(roles(s)).toEqual({ n0: 'server', n1: 'init', n2: 'server' })
      expect(cluster(s).status).toBe('stable')
    })
  })

  describe('two concurrent master claims', () => {
    function claims (): { b: LogBuilder, first: number, second: number } {
      const b = new LogBuilder(3)
      const j0 = b.append(0, 'node.join', join('n0', 'default', 'master'))
      const j1 = b.append(1, 'node.join', join('n1', 'default', 'master'))
      b.append(2, 'node.join', join('n2'))
      const first = compareEvents(j0, j1) < 0 ? 0 : 1
      return { b, first, second: 1 - first }
    }

    it('the first in the order wins; the other is reported as a conflict', () => {
      const { b, first, second } = claims()
      everyoneCatchesUp(b, [0, 1, 2])
      const s = foldEverywhere(b.events)
      const c = cluster(s)
      expect(c.master).toMatchObject({ author: b.hex(first), how: 'forced' })
      expect(c.status).toBe('stable')
      expect(c.conflicts).toEqual([{ author: b.hex(second), reason: expect.stringContaining('also claims master') }])
      expect(roles(s)).toMatchObject({ [`n${first}`]: 'init', [`n${second}`]: 'agent', n2: 'agent' })
    })

    it('the losing claimant gets the first server slot', () => {
      const { b, first, second } = claims()
      b.setting(2, 'serverCount', 2, { seesAll: true })
      everyoneCatchesUp(b, [0, 1, 2])
      const s = foldEverywhere(b.events)
      expect(roles(s)).toMatchObject({ [`n${first}`]: 'init', [`n${second}`]: 'server', n2: 'agent' })
    })

    it('a claim made after seeing a stable decision never displaces it', () => {
      const b = new LogBuilder(3)
      b.append(0, 'node.join', join('n0'))
      b.append(1, 'node.join', join('n1'), { seesAll: true })
      b.append(2, 'node.join', join('n2'), { seesAll: true })
      everyoneCatchesUp(b, [0, 1, 2])
      expect(cluster(foldNetwork(b.events)).status).toBe('stable')
      b.append(2, 'role.claim', { cluster: 'default', role: 'master' }, { seesAll: true })
      const s = foldEverywhere(b.events)
      expect(cluster(s).master).toMatchObject({ author: b.hex(0), how: 'auto' })
      expect(cluster(s).conflicts.map((x) => x.author)).toEqual([b.hex(2)])
      expect(roles(s)).toEqual({ n0: 'init', n1: 'agent', n2: 'agent' })
    })
  })

  describe('auto', () => {
    function minNodes3 (): LogBuilder {
      const b = new LogBuilder(5)
      b.setting(0, 'minNodes', 3)
      return b
    }

    it('waits for minNodes, then the earliest-joined becomes master', () => {
      const b = minNodes3()
      b.append(0, 'node.join', join('n0'))
      b.append(1, 'node.join', join('n1'), { seesAll: true })
      let s = foldEverywhere(b.events)
      expect(cluster(s).status).toBe('waiting')
      expect(cluster(s).reason).toMatch(/waiting for 1 more node/)
      expect(roles(s)).toEqual({ n0: 'none', n1: 'none' })
      const third = b.append(2, 'node.join', join('n2'), { seesAll: true })
      s = foldEverywhere(b.events)
      expect(cluster(s).master).toMatchObject({ author: b.hex(0), how: 'auto', decidedAt: { id: third.idHex } })
      expect(roles(s)).toEqual({ n0: 'init', n1: 'agent', n2: 'agent' })
    })

    it('clients do not count towards minNodes; workers do, but are never master', () => {
      const b = minNodes3()
      b.append(0, 'node.join', join('n0', 'default', 'worker'))
      b.append(1, 'node.join', join('n1', 'default', 'client'), { seesAll: true })
      b.append(2, 'node.join', join('n2'), { seesAll: true })
      expect(cluster(foldNetwork(b.events)).status).toBe('waiting')
      b.append(3, 'node.join', join('n3'), { seesAll: true })
      const s = foldEverywhere(b.events)
      expect(roles(s)).toEqual({ n0: 'agent', n1: 'none', n2: 'init', n3: 'agent' })
    })

    it('only workers and clients: no master, with the reason', () => {
      const b = new LogBuilder(2)
      b.append(0, 'node.join', join('n0', 'default', 'worker'))
      b.append(1, 'node.join', join('n1', 'default', 'client'), { seesAll: true })
      const c = cluster(foldNetwork(b.events))
      expect(c.status).toBe('waiting')
      expect(c.reason).toMatch(/no member may be master/)
    })

    it('later joiners never displace the master, even ones that sort before a tentative decision\'s later events', () => {
      const b = minNodes3()
      for (const a of [0, 1, 2]) b.append(a, 'node.join', join(`n${a}`), { seesAll: true })
      b.append(3, 'node.join', join('n3'), { seesAll: true })
      b.append(4, 'node.join', join('n4'), { seesAll: true })
      everyoneCatchesUp(b, [0, 1, 2, 3, 4])
      const s = foldEverywhere(b.events)
      expect(cluster(s).master?.author).toBe(b.hex(0))
      expect(roles(s)).toEqual({ n0: 'init', n1: 'agent', n2: 'agent', n3: 'agent', n4: 'agent' })
      expect(cluster(s).status).toBe('stable')
    })

    it('clusters are decided independently', () => {
      const b = new LogBuilder(4)
      b.append(0, 'node.join', join('a0', 'alpha'))
      b.append(1, 'node.join', join('b1', 'beta'))
      // Concurrent with alpha's first decision, so its forced claim can still win there.
      b.append(2, 'node.join', join('a2', 'alpha', 'master'))
      b.append(3, 'node.join', join('b3', 'beta'), { seesAll: true })
      everyoneCatchesUp(b, [0, 1, 2, 3])
      const s = foldEverywhere(b.events)
      expect(roles(s, 'alpha')).toEqual({ a0: 'agent', a2: 'init' })
      expect(roles(s, 'beta')).toEqual({ b1: 'init', b3: 'agent' })
    })
  })

  describe('tentative until a majority of the cluster follows the deciding event', () => {
    function concurrentBoot (): { b: LogBuilder, deciding: SignedEvent } {
      const b = new LogBuilder(3)
      b.setting(0, 'minNodes', 3)
      b.syncAll()
      const joins = [0, 1, 2].map((a) => b.append(a, 'node.join', join(`n${a}`)))
      const deciding = [...joins].sort(compareEvents)[2] as SignedEvent
      return { b, deciding }
    }

    it('is tentative while only the deciding event\'s author has seen it', () => {
      const { b, deciding } = concurrentBoot()
      const s = foldEverywhere(b.events)
      expect(cluster(s).master?.decidedAt.id).toBe(deciding.idHex)
      expect(cluster(s).status).toBe('tentative')
      expect(Object.values(stableFlags(s))).toEqual([false, false, false])
    })

    it('events that sort later but do not causally follow it do not count', () => {
      const { b, deciding } = concurrentBoot()
      const others = [0, 1, 2].filter((a) => b.hex(a) !== deciding.authorHex)
      // Lots of activity, far later in the order, without ever seeing the deciding join.
      for (let i = 0; i < 5; i++) for (const a of others) b.append(a, 'route.withdraw', { cidr: '192.0.2.0/24' }, { sees: others })
      const s = foldEverywhere(b.events)
      expect(Math.max(...b.events.map((e) => e.fields.lamport))).toBeGreaterThan(deciding.fields.lamport + 3)
      expect(cluster(s).status).toBe('tentative')
    })

    it('becomes stable once a majority of its electorate has acknowledged it, at the ack that tips it', () => {
      const { b } = concurrentBoot()
      const first = b.ack(0, 'default', { seesAll: true }) as SignedEvent
      expect(cluster(foldEverywhere(b.events)).status).toBe('tentative')
      expect(cluster(foldEverywhere(b.events)).votes).toEqual({ for: 1, electorate: 3 })
      const tip = b.ack(1, 'default', { seesAll: true }) as SignedEvent
      const s = foldEverywhere(b.events)
      expect(cluster(s).status).toBe('stable')
      expect(cluster(s).master?.stableAt?.id).toBe(tip.idHex)
      expect(first.fields.type).toBe('role.ack')
    })

    it('a vote is a member\'s latest ack: one that moves to another master moves its vote', () => {
      const { b } = concurrentBoot()
      b.ack(0, 'default', { seesAll: true })
      const m = cluster(foldNetwork(b.events)).master?.author as string
      const other = b.ids.map((x) => x.publicKey).find((k) => Buffer.from(k).toString('hex') !== m) as Uint8Array
      // Node 1 first names another master (a stale view), then the one its replica shows.
      b.append(1, 'role.ack', { cluster: 'default', master: other }, { seesAll: true })
      expect(cluster(foldEverywhere(b.events)).status).toBe('tentative')
      b.ack(1, 'default', { seesAll: true })
      expect(cluster(foldEverywhere(b.events)).status).toBe('stable')
    })

    it('every member\'s own role becomes stable once everybody follows, including the one whose join decided', () => {
      const { b } = concurrentBoot()
      everyoneCatchesUp(b, [0, 1, 2])
      const s = foldEverywhere(b.events)
      expect(cluster(s).status).toBe('stable')
      expect(stableFlags(s)).toEqual({ n0: true, n1: true, n2: true })
    })

    it('a join whose decision was replaced by a forced claim still becomes stable', () => {
      const { b, deciding } = concurrentBoot()
      // Before anyone follows the auto decision, another node forces itself (it has seen it all).
      const claimant = [0, 1, 2].find((a) => b.hex(a) !== deciding.authorHex) as number
      b.append(claimant, 'role.claim', { cluster: 'default', role: 'master' }, { sees: [] })
      everyoneCatchesUp(b, [0, 1, 2])
      const s = foldEverywhere(b.events)
      expect(cluster(s).master).toMatchObject({ author: b.hex(claimant), how: 'forced' })
      expect(cluster(s).status).toBe('stable')
      expect(Object.values(stableFlags(s))).toEqual([true, true, true])
    })
  })

  describe('a stable decision shared by two clusters', () => {
    it('stays stable when the other cluster changes its decision', () => {
      const b = new LogBuilder(4)
      b.setting(0, 'minNodes', 3)
      b.append(0, 'node.join', join('a0', 'alpha'), { seesAll: true })
      b.append(1, 'node.join', join('a1', 'alpha'), { seesAll: true })
      b.append(2, 'node.join', join('b2', 'beta'), { seesAll: true })
      b.append(3, 'node.join', join('b3', 'beta'), { seesAll: true })
      b.syncAll()
      // One settings change decides both clusters (at the same event).
      const s1 = b.setting(0, 'minNodes', 2, { seesAll: true })
      b.ack(0, 'alpha', { seesAll: true })
      b.ack(1, 'alpha', { seesAll: true })
      let s = foldEverywhere(b.events)
      expect(cluster(s, 'alpha')).toMatchObject({ status: 'stable', master: { author: b.hex(0), decidedAt: { id: s1.idHex } } })
      expect(cluster(s, 'beta').master?.decidedAt.id).toBe(s1.idHex)
      // Beta is still tentative: node 3 forces itself in a partition (it has not seen the change),
      // after some activity of its own, so its claim sorts after the change.
      b.append(3, 'route.withdraw', { cidr: '192.0.2.0/24' })
      b.append(3, 'route.withdraw', { cidr: '192.0.2.0/24' })
      const claim = b.append(3, 'role.claim', { cluster: 'beta', role: 'master' })
      expect(b.hasSeen(3, s1)).toBe(false)
      expect(compareEvents(s1, claim)).toBeLessThan(0)
      s = foldEverywhere(b.events)
      expect(cluster(s, 'beta').master?.author).toBe(b.hex(3))
      expect(cluster(s, 'alpha').status).toBe('stable')
      // A later claim in alpha by a node that saw the stable decision must not win.
      b.append(1, 'role.claim', { cluster: 'alpha', role: 'master' }, { seesAll: true })
      s = foldEverywhere(b.events)
      expect(cluster(s, 'alpha').master?.author).toBe(b.hex(0))
      expect(cluster(s, 'alpha').status).toBe('stable')
    })
  })

  describe('the master leaves', () => {
    function stableThree (opts: { dynamicRoles?: boolean, serverCount?: number } = {}): LogBuilder {
      const b = new LogBuilder(4)
      if (opts.dynamicRoles === true) b.setting(3, 'dynamicRoles', true)
      if (opts.serverCount !== undefined) b.setting(3, 'serverCount', opts.serverCount, { seesAll: true })
      b.append(0, 'node.join', join('n0'), { seesAll: true })
      b.append(1, 'node.join', join('n1'), { seesAll: true })
      b.append(2, 'node.join', join('n2'), { seesAll: true })
      everyoneCatchesUp(b, [0, 1, 2])
      return b
    }

    it('dynamicRoles off: evicting the master gives master-gone, and nothing flips', () => {
      const b = stableThree({ serverCount: 2 })
      let s = foldEverywhere(b.events)
      expect(roles(s)).toEqual({ n0: 'init', n1: 'server', n2: 'agent' })
      b.append(1, 'node.evict', { peer: b.ids[0]?.publicKey as Uint8Array, reason: 'dead' }, { seesAll: true })
      everyoneCatchesUp(b, [1, 2])
      s = foldEverywhere(b.events)
      const c = cluster(s)
      expect(c.status).toBe('master-gone')
      expect(c.reason).toMatch(/dynamicRoles is off/)
      expect(roles(s)).toEqual({ n1: 'server', n2: 'agent' })
      expect(c.members.some((m) => m.role === 'init')).toBe(false)
    })

    it('dynamicRoles off: the master coming back ends master-gone', () => {
      const b = stableThree()
      b.append(0, 'node.leave', { reason: 'reboot' }, { seesAll: true })
      expect(cluster(foldNetwork(b.events)).status).toBe('master-gone')
      b.append(0, 'node.join', join('n0'), { seesAll: true })
      everyoneCatchesUp(b, [0, 1, 2])
      const s = foldEverywhere(b.events)
      expect(cluster(s).status).toBe('stable')
      expect(roles(s)).toEqual({ n0: 'init', n1: 'agent', n2: 'agent' })
    })

    it('dynamicRoles on: the next server takes over, tentatively and then stably', () => {
      const b = stableThree({ dynamicRoles: true, serverCount: 2 })
      const ev = b.append(2, 'node.evict', { peer: b.ids[0]?.publicKey as Uint8Array, reason: 'dead' }, { seesAll: true })
      let s = foldEverywhere(b.events)
      expect(cluster(s).master).toMatchObject({ author: b.hex(1), how: 'handover', decidedAt: { id: ev.idHex } })
      expect(cluster(s).status).toBe('tentative')
      expect(roles(s)).toEqual({ n1: 'init', n2: 'server' })
      everyoneCatchesUp(b, [1, 2])
      s = foldEverywhere(b.events)
      expect(cluster(s).status).toBe('stable')
      expect(roles(s)).toEqual({ n1: 'init', n2: 'server' })
    })

    it('dynamicRoles switched on after the master is gone hands over at that change', () => {
      const b = stableThree({ serverCount: 2 })
      b.append(0, 'node.leave', {}, { seesAll: true })
      const on = b.setting(2, 'dynamicRoles', true, { seesAll: true })
      const s = foldEverywhere(b.events)
      expect(cluster(s).master).toMatchObject({ author: b.hex(1), how: 'handover', decidedAt: { id: on.idHex } })
      expect(cluster(s).status).not.toBe('master-gone')
    })

    it('a master that was never stable and leaves is simply replaced', () => {
      const b = new LogBuilder(3)
      b.setting(0, 'minNodes', 2)
      b.syncAll()
      b.append(0, 'node.join', join('n0'))
      b.append(1, 'node.join', join('n1'))
      b.append(2, 'node.join', join('n2'))
      const order = [0, 1, 2].sort((x, y) => compareEvents(b.events[x + 1] as SignedEvent, b.events[y + 1] as SignedEvent))
      expect(cluster(foldNetwork(b.events)).master?.author).toBe(b.hex(order[0] as number))
      b.append(order[0] as number, 'node.leave', {})
      const s = foldEverywhere(b.events)
      expect(cluster(s).status).toBe('tentative')
      expect(cluster(s).master?.author).toBe(b.hex(order[1] as number))
    })

    it('a master that was stable only in its own replica and leaves before anyone voted for it is replaced', () => {
      const b = new LogBuilder(3)
      b.append(0, 'node.join', join('n0'))
      b.append(1, 'node.join', join('n1'))
      b.append(2, 'node.join', join('n2'))
      const first = [0, 1, 2].sort((x, y) => compareEvents(b.events[x] as SignedEvent, b.events[y] as SignedEvent))[0] as number
      // Its own replica saw only itself: a majority of one, once it voted for itself.
      b.ack(first)
      expect(cluster(b.stateOf(first)).status).toBe('stable')
      b.append(first, 'node.leave', {})
      // Nobody else ever voted for it (nobody else acted on it): the others decide afresh.
      const s = foldEverywhere(b.events)
      expect(cluster(s).status).toBe('tentative')
      expect(cluster(s).members.some((m) => m.role === 'init')).toBe(true)
    })

    it('a stable decision is not reopened by members that never saw it, even a forced master', () => {
      const b = new LogBuilder(4)
      b.append(0, 'node.join', join('n0'))
      b.append(1, 'node.join', join('n1'), { seesAll: true })
      everyoneCatchesUp(b, [0, 1])
      expect(cluster(foldNetwork(b.events)).status).toBe('stable')
      // n1 has seen the decision and asks to be master: it stays a conflict.
      b.append(1, 'role.claim', { cluster: 'default', role: 'master' }, { seesAll: true })
      // Two nodes that never saw anything join (after enough activity of their own to sort
      // after all of that); n3 is forced. Neither was in the decision's electorate.
      for (const a of [2, 3]) for (let i = 0; i < 6; i++) b.append(a, 'route.withdraw', { cidr: '192.0.2.0/24' })
      b.append(2, 'node.join', join('n2'))
      b.append(3, 'node.join', join('n3', 'default', 'master'))
      let s = foldEverywhere(b.events)
      expect(cluster(s)).toMatchObject({ status: 'stable', master: { author: b.hex(0) } })
      expect(cluster(s).conflicts.map((c) => c.author).sort()).toEqual([b.hex(1), b.hex(3)].sort())
      expect(roles(s)).toEqual({ n0: 'init', n1: 'agent', n2: 'agent', n3: 'agent' })
      // n3 alone voted for itself before it synced: one vote against two.
      b.ack(3)
      s = foldEverywhere(b.events)
      expect(cluster(s)).toMatchObject({ status: 'stable', master: { author: b.hex(0) } })
      // Once synced, the newcomers vote for it too.
      everyoneCatchesUp(b, [2, 3])
      s = foldEverywhere(b.events)
      expect(cluster(s)).toMatchObject({ status: 'stable', master: { author: b.hex(0) }, votes: { for: 4, electorate: 4 } })
      expect(stableFlags(s)).toEqual({ n0: true, n1: true, n2: true, n3: true })
    })
  })


  describe('members changing their request', () => {
    it('a member that moves to another cluster joins it at its new position', () => {
      const b = new LogBuilder(3)
      b.setting(2, 'serverCount', 2)
      b.append(0, 'node.join', join('x', 'alpha'), { seesAll: true })
      b.append(1, 'node.join', join('b1', 'beta'), { seesAll: true })
      b.append(2, 'node.join', join('b2', 'beta'), { seesAll: true })
      everyoneCatchesUp(b, [0, 1, 2])
      expect(roles(foldNetwork(b.events), 'beta')).toEqual({ b1: 'init', b2: 'server' })
      b.append(0, 'node.join', join('x', 'beta'), { seesAll: true })
      everyoneCatchesUp(b, [0, 1, 2])
      const s = foldEverywhere(b.events)
      expect(roles(s, 'beta')).toEqual({ b1: 'init', b2: 'server', x: 'agent' })
      expect(s.members.active.get(b.hex(0))?.joinedLamport).toBeGreaterThan(s.members.active.get(b.hex(2))?.joinedLamport ?? Infinity)
    })

    it('the master confirming itself with a forced claim keeps the decision (no restart of stability)', () => {
      const b = new LogBuilder(3)
      b.append(0, 'node.join', join('n0'))
      b.append(1, 'node.join', join('n1'))
      b.append(2, 'node.join', join('n2'))
      const first = [0, 1, 2].sort((x, y) => compareEvents(b.events[x] as SignedEvent, b.events[y] as SignedEvent))[0] as number
      const before = cluster(foldNetwork(b.events)).master
      expect(before).toMatchObject({ author: b.hex(first), how: 'auto' })
      b.append(first, 'role.claim', { cluster: 'default', role: 'master' })
      const s = foldEverywhere(b.events)
      expect(cluster(s).master).toMatchObject({ author: b.hex(first), how: 'forced', decidedAt: before?.decidedAt })
      expect(cluster(s).conflicts).toEqual([])
    })

    it('a role.claim for a cluster the member is not in changes nothing', () => {
      const b = new LogBuilder(2)
      b.append(0, 'node.join', join('n0', 'alpha'))
      b.append(1, 'node.join', join('n1', 'alpha'), { seesAll: true })
      b.append(1, 'role.claim', { cluster: 'beta', role: 'master' }, { seesAll: true })
      const s = foldEverywhere(b.events)
      expect(roles(s, 'alpha')).toEqual({ n0: 'init', n1: 'agent' })
      expect(deriveRoles(s.roles, s.members, s.settings.values).map((c) => c.cluster)).toEqual(['alpha'])
    })

    it('clients get role none', () => {
      const b = new LogBuilder(2)
      b.append(0, 'node.join', join('n0'))
      b.append(1, 'node.join', join('n1', 'default', 'client'), { seesAll: true })
      expect(roles(foldEverywhere(b.events))).toEqual({ n0: 'init', n1: 'none' })
    })
  })
})
