import { identityFromSeed } from '../../src/log/identity.js'
/**
 * A stable k3s decision is final (issue 12): no event that arrives later and never saw it (a
 * lamport-1 join of a node that was alone, a forced master claim, a crafted event) changes it,
 * on any replica, whatever the delivery order. Only an authorised master claim that follows it,
 * or dynamicRoles once the master is gone, replaces it.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { FoldEngine } from '../../src/crdt/fold.js'
import { compareEvents, type SignedEvent } from '../../src/log/event.js'
import { networkReducer, type NetworkState } from '../../src/projections/network.js'
import { deriveRoles, type ClusterRolesView } from '../../src/projections/roles.js'
import { LogBuilder, foldNetwork, join, rng, shuffle, viewJson } from './support.js'

function maybeCluster (s: NetworkState, name = 'default'): ClusterRolesView | undefined {
  return deriveRoles(s.roles, s.members, s.settings.values).find((x) => x.cluster === name)
}

function cluster (s: NetworkState, name = 'default'): ClusterRolesView {
  const c = maybeCluster(s, name)
  if (c === undefined) throw new Error(`no cluster ${name}`)
  return c
}

/** Author indices ordered by key, so a test can pick a node whose events sort first. */
function byKey (b: LogBuilder, n: number): number[] {
  return [...Array(n).keys()].sort((x, y) => (b.hex(x) < b.hex(y) ? -1 : 1))
}

/** A replica that folded `known` (in `order` with checkpoints), then receives `late`: a refold. */
function refold (known: readonly SignedEvent[], late: readonly SignedEvent[], seed: number): NetworkState {
  const r = rng(seed)
  const f = new FoldEngine({ network: networkReducer() }, { checkpointEvery: 1 + Math.floor(r() * 3), maxCheckpoints: 4 })
  for (const e of shuffle(known, r)) f.insert([e])
  for (const e of shuffle(late, r)) f.insert([e])
  return f.states().network
}

const OWNER = identityFromSeed(new Uint8Array(32).fill(0x0f))

describe('a stable decision is final', () => {
  /**
   * The reported case: alpha init (stable) in a 3-node network; a node that was alone writes its
   * join at lamport 1 with no deps (it sorts before alpha's join), then syncs.
   */
  function reported (): { b: LogBuilder, alpha: number, nine: number, others: number[] } {
    const b = new LogBuilder(4)
    const [nine, alpha, ...others] = byKey(b, 4) as [number, number, number, number]
    b.append(alpha, 'node.join', join('alpha'))
    b.ack(alpha)
    for (const o of others) { b.append(o, 'node.join', join(`n${o}`), { seesAll: true }); b.ack(o, 'default', { seesAll: true }) }
    b.sync(alpha, ...others)
    return { b, alpha, nine, others }
  }

  it('regression: a lamport-1 join of a node that was alone does not displace the stable init master', () => {
    const { b, alpha, nine, others } = reported()
    const before = foldNetwork(b.events)
    expect(cluster(before)).toMatchObject({ status: 'stable', master: { author: b.hex(alpha) } })
    const lone = b.append(nine, 'node.join', join('nine'))
    expect(lone.fields.lamport).toBe(1)
    expect(lone.fields.deps).toEqual([])
    expect(compareEvents(lone, b.events[0] as SignedEvent)).toBeLessThan(0)
    // Alone, nine's replica makes itself init (a majority of one, once it voted).
    b.ack(nine)
    expect(cluster(b.stateOf(nine))).toMatchObject({ status: 'stable', master: { author: b.hex(nine) } })
    // Every replica that receives it, whatever it folded before: alpha stays init, stable.
    for (const r of [alpha, ...others]) {
      const s = refold(b.seenBy(r), b.seenBy(nine), r)
      expect(cluster(s)).toMatchObject({ status: 'stable', master: { author: b.hex(alpha) } })
      expect(cluster(s).members.find((m) => m.author === b.hex(nine))?.role).toBe('agent')
    }
    // Nine syncs: its replica now shows alpha (more votes), and its agent votes for alpha.
    expect(cluster(b.stateOf(nine)).master?.author).toBe(b.hex(nine))
    b.sync(nine, alpha, ...others)
    expect(cluster(b.stateOf(nine))).toMatchObject({ status: 'stable', master: { author: b.hex(alpha) } })
    b.ack(nine)
    for (const o of others) b.ack(o, 'default', { seesAll: true })
    const s = foldNetwork(b.events)
    expect(cluster(s)).toMatchObject({ status: 'stable', master: { author: b.hex(alpha) }, votes: { for: 4, electorate: 4 } })
    expect(cluster(s).members.map((m) => [m.hostname, m.role, m.stable])).toEqual(expect.arrayContaining([['alpha', 'init', true], ['nine', 'agent', true]]))
  })

  it('regression: nor does a crafted lamport-1 join that forces itself master', () => {
    const { b, alpha, nine } = reported()
    b.append(nine, 'node.join', join('nine', 'default', 'master'))
    const s = foldNetwork(b.events)
    expect(cluster(s)).toMatchObject({ status: 'stable', master: { author: b.hex(alpha) } })
    expect(cluster(s).conflicts.map((c) => c.author)).toEqual([b.hex(nine)])
  })

  it('a partition whose members all joined before the split cannot decide: offline members count', () => {
    const b = new LogBuilder(4)
    b.setting(0, 'minNodes', 4)
    for (const a of [0, 1, 2, 3]) b.append(a, 'node.join', join(`n${a}`), { seesAll: true })
    b.syncAll()
    // Split into {0, 1} and {2, 3}: each half votes; neither has 3 of 4.
    b.ack(0)
    b.ack(1, 'default', { sees: [0] })
    const s = foldNetwork(b.events)
    expect(cluster(s)).toMatchObject({ status: 'tentative', votes: { for: 2, electorate: 4 } })
  })

  it('two groups that never saw each other: the larger one keeps its master', () => {
    const b = new LogBuilder(5)
    const [x, y, z, p, q] = byKey(b, 5) as [number, number, number, number, number]
    // The smaller group's keys sort first, so its events would win any tie on the order.
    for (const [a, peers] of [[x, []], [y, [x]]] as Array<[number, number[]]>) { b.append(a, 'node.join', join(`s${a}`), { sees: peers }); b.ack(a, 'default', { sees: peers }) }
    for (const [a, peers] of [[z, []], [p, [z]], [q, [z, p]]] as Array<[number, number[]]>) { b.append(a, 'node.join', join(`l${a}`), { sees: peers }); b.ack(a, 'default', { sees: peers }) }
    expect(cluster(b.stateOf(x))).toMatchObject({ status: 'stable', master: { author: b.hex(x) } })
    expect(cluster(b.stateOf(q))).toMatchObject({ status: 'stable', master: { author: b.hex(z) } })
    expect(cluster(foldNetwork(b.events))).toMatchObject({ status: 'stable', master: { author: b.hex(z) }, votes: { for: 3, electorate: 3 } })
  })

  describe('replacing a stable decision', () => {
    function stable (): LogBuilder {
      const b = new LogBuilder(3)
      for (const a of [0, 1, 2]) b.append(a, 'node.join', join(`n${a}`), { seesAll: true })
      for (const a of [0, 1, 2]) b.ack(a, 'default', { seesAll: true })
      return b
    }
    // Authority is the owner's cosignature, judged by the authority projection as on every node.
    const withOwner = (events: readonly SignedEvent[]): NetworkState => foldNetwork(events, {}, OWNER.publicKey)

    it('an authorised master claim that follows it replaces it; the same claim unauthorised does not', () => {
      const plain = stable()
      const master = cluster(withOwner(plain.events)).master?.author
      const claimant = [0, 1, 2].find((a) => plain.hex(a) !== master) as number
      plain.append(claimant, 'role.claim', { cluster: 'default', role: 'master' }, { seesAll: true })
      expect(cluster(withOwner(plain.events)).master?.author).toBe(master)
      const b = stable()
      b.append(claimant, 'role.claim', { cluster: 'default', role: 'master' }, { seesAll: true, cosigner: OWNER })
      expect(cluster(withOwner(b.events))).toMatchObject({ status: 'tentative', master: { author: b.hex(claimant), how: 'forced' } })
      // The agents vote for the new master (each replica applies the same authority).
      for (const a of [0, 1, 2]) b.append(a, 'role.ack', { cluster: 'default', master: b.ids[claimant]?.publicKey as Uint8Array }, { seesAll: true })
      expect(cluster(withOwner(b.events))).toMatchObject({ status: 'stable', master: { author: b.hex(claimant) } })
    })

    it('an authorised claim from a node that never acknowledged the stable decision does not', () => {
      const b = new LogBuilder(4)
      for (const a of [0, 1, 2]) b.append(a, 'node.join', join(`n${a}`), { seesAll: true })
      for (const a of [0, 1, 2]) b.ack(a, 'default', { seesAll: true })
      b.append(3, 'node.join', join('n3'))
      b.append(3, 'role.claim', { cluster: 'default', role: 'master' }, { cosigner: OWNER })
      expect(cluster(withOwner(b.events))).toMatchObject({ status: 'stable', master: { author: cluster(foldNetwork(b.events)).master?.author } })
    })
  })
})

/**
 * Property: random logs (4 authors joining, acknowledging what their replica shows, claiming
 * master, in partial views); for the global log and every author's replica whose decision is
 * stable, add events that never saw it — lamport-1 joins of new authors (auto or forced), their
 * own forced claims and self-votes (when the decision has at least 2 votes), forced claims of
 * existing authors that never saw a vote for it — and refold in a random order with checkpoints:
 * the master, its stability and the roles of its voters are unchanged.
 */
type Op = { k: 'join' | 'ack' | 'claim' | 'noop', a: number, sees: number, role: number }
const ROLES = ['auto', 'auto', 'master', 'worker'] as const
const opArb: fc.Arbitrary<Op> = fc.record({
  k: fc.constantFrom('join', 'join', 'ack', 'ack', 'ack', 'claim', 'noop'),
  a: fc.integer({ min: 0, max: 3 }),
  sees: fc.oneof(fc.constant(0), fc.constant(15), fc.integer({ min: 0, max: 15 })),
  role: fc.integer({ min: 0, max: ROLES.length - 1 })
})
type Extra = { k: 'lone' | 'loneMaster' | 'loneClaim' | 'loneAck' | 'claim', a: number }
const extraArb: fc.Arbitrary<Extra> = fc.record({ k: fc.constantFrom('lone', 'loneMaster', 'loneClaim', 'loneAck', 'claim'), a: fc.integer({ min: 0, max: 3 }) })

function buildScript (ops: readonly Op[]): LogBuilder {
  const b = new LogBuilder(8)
  for (const op of ops) {
    b.sync(op.a, ...[0, 1, 2, 3].filter((x) => (op.sees & (1 << x)) !== 0 && x !== op.a))
    const member = b.stateOf(op.a).members.active.has(b.hex(op.a))
    if (op.k === 'join') b.append(op.a, 'node.join', join(`h${op.a}`, 'default', ROLES[op.role]))
    else if (op.k === 'ack' && member) {
      const s = b.stateOf(op.a)
      const mine = s.roles.clusters.get('default')?.votes.get(b.hex(op.a))?.master
      if (mine !== maybeCluster(s)?.master?.author) b.ack(op.a)
    } else if (op.k === 'claim' && member) b.append(op.a, 'role.claim', { cluster: 'default', role: 'master' })
    else if (op.k === 'noop') b.append(op.a, 'route.withdraw', { cidr: '192.0.2.0/24' })
  }
  return b
}

function checkFinal (ops: readonly Op[], extras: readonly Extra[], seed: number): void {
  const b = buildScript(ops)
  const replicas: Array<{ name: string, events: SignedEvent[], viewer?: number }> = [{ name: 'global', events: [...b.events] }]
  for (const a of [0, 1, 2, 3]) replicas.push({ name: `replica ${a}`, events: b.seenBy(a), viewer: a })
  const snapshot = new Map(replicas.map((r) => [r.name, foldNetwork(r.events)]))
  // New authors 4..7: they never saw anything.
  const late: SignedEvent[] = []
  const lateGlobal: SignedEvent[] = []
  const joined = new Set<number>()
  let fresh = 4
  for (const x of extras) {
    if (x.k === 'claim') {
      // An existing author that never saw a vote for the global decision claims master.
      const g = maybeCluster(snapshot.get('global') as NetworkState)
      if (g?.status !== 'stable') continue
      const votesFor = b.events.filter((e) => e.fields.type === 'role.ack' && Buffer.from(e.fields.body.master).toString('hex') === g.master?.author)
      if (votesFor.some((v) => b.hasSeen(x.a, v)) || !b.stateOf(x.a).members.active.has(b.hex(x.a))) continue
      lateGlobal.push(b.append(x.a, 'role.claim', { cluster: 'default', role: 'master' }))
      continue
    }
    const a = x.k === 'loneClaim' || x.k === 'loneAck' ? Math.max(4, fresh - 1) : fresh++
    if (a > 7) continue
    if (!joined.has(a)) { late.push(b.append(a, 'node.join', join(`new${a}`, 'default', x.k === 'loneMaster' ? 'master' : 'auto'))); joined.add(a) }
    if (x.k === 'loneClaim') late.push(b.append(a, 'role.claim', { cluster: 'default', role: 'master' }))
    if (x.k === 'loneAck') { const e = b.ack(a); if (e !== undefined) late.push(e) }
  }
  for (const r of replicas) {
    const before = maybeCluster(snapshot.get(r.name) as NetworkState)
    if (before?.status !== 'stable' || before.master === undefined) continue
    const m = before.master.author
    // Self-votes of newcomers tie with a decision of one vote: the guarantee is for 2 or more.
    const add = (before.votes?.for ?? 0) >= 2 ? late : late.filter((e) => e.fields.type !== 'role.ack')
    const all = r.name === 'global' ? [...add, ...lateGlobal] : add
    const after = cluster(refold(r.events, all, seed))
    expect(after.status, `${r.name}: status`).toBe('stable')
    expect(after.master?.author, `${r.name}: master`).toBe(m)
    const stableRoles = (c: ClusterRolesView): Array<[string, string]> => c.members.filter((x) => x.stable).map((x) => [x.author, x.role])
    expect(stableRoles(after), `${r.name}: roles of members that acted on it`).toEqual(expect.arrayContaining(stableRoles(before)))
    // And every delivery order of the same events agrees.
    expect(viewJson(refold([...r.events, ...all], [], seed + 1))).toBe(viewJson(foldNetwork([...r.events, ...all])))
  }
}

describe('a stable decision is final (property)', () => {
  it('regression: a single-vote decision and a late claim by a member that never saw the vote', () => {
    checkFinal([{ k: 'join', a: 0, sees: 0, role: 0 }, { k: 'ack', a: 0, sees: 0, role: 0 }, { k: 'join', a: 1, sees: 0, role: 0 }], [{ k: 'claim', a: 1 }, { k: 'lone', a: 0 }], 1)
  })

  it('events that never saw it do not change it on any replica, in any delivery order', () => {
    fc.assert(fc.property(fc.array(opArb, { minLength: 2, maxLength: 24 }), fc.array(extraArb, { minLength: 1, maxLength: 6 }), fc.integer(), (ops, extras, seed) => {
      checkFinal(ops, extras, seed)
    }), { numRuns: Number(process.env.WEFT_PROP_RUNS ?? 60) })
  }, 120_000)
})
