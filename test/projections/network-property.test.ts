/**
 * Property tests of the network projections over random logs: several authors in 1-3 clusters
 * with partial visibility (an author appends on top of only what it has seen), forced and auto
 * roles, address claims with collisions, overlapping route advertisements, settings changes,
 * leaves and evictions. Every delivery order must give the same derived views, and the
 * invariants must hold after every event of the order.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { FoldEngine } from '../../src/crdt/fold.js'
import type { SignedEvent } from '../../src/log/event.js'
import { networkReducer, type NetworkState } from '../../src/projections/network.js'
import { deriveRoles } from '../../src/projections/roles.js'
import { deriveRoutes, lookupRoute } from '../../src/projections/routes.js'
import { chooseAddress, leaseOf } from '../../src/projections/ipam.js'
import { cidrsOverlap, leaseProblem, parseCidr } from '../../src/projections/ip.js'
import { planAgent, type DesiredNode } from '../../src/projections/agent-plan.js'
import type { BodyOf } from '../../src/log/bodies.js'
import { LogBuilder, foldNetwork, join, newMergedLog, ordered, rng, shuffle, viewJson } from './support.js'

const AUTHORS = 5
const CLUSTERS = ['alpha', 'beta', 'gamma'] as const
const ROLES = ['auto', 'auto', 'auto', 'master', 'worker', 'client'] as const
const ADDRS = ['10.1.0.1', '10.1.0.2', '10.1.0.3', '10.1.0.200', '10.1.0.0', '10.1.255.255', '10.2.0.1', '10.1.1.5']
const CIDRS = ['192.168.0.0/16', '192.168.1.0/24', '192.168.1.0/24', '172.16.0.0/12', '172.20.0.0/16', '10.0.0.0/8', '10.1.0.0/24', '192.168.1.7/24']
const SETTINGS: Array<[string, unknown]> = [
  ['minNodes', 1], ['minNodes', 2], ['minNodes', 3],
  ['serverCount', 1], ['serverCount', 2], ['serverCount', 3],
  ['dynamicRoles', true], ['dynamicRoles', false],
  ['overlayCidr', '10.1.0.0/16'], ['overlayCidr', '10.1.0.0/24'], ['overlayCidr', '10.0.0.0/8']
]

type Op =
  | { k: 'join', a: number, sees: number, cluster: number, role: number }
  | { k: 'claim', a: number, sees: number, addr: number }
  | { k: 'choose', a: number, sees: number }
  | { k: 'release', a: number, sees: number, addr: number }
  | { k: 'advertise' | 'withdraw', a: number, sees: number, cidr: number }
  | { k: 'setting', a: number, sees: number, which: number }
  | { k: 'roleClaim', a: number, sees: number, cluster: number, role: number }
  | { k: 'leave', a: number, sees: number }
  | { k: 'evict', a: number, sees: number, target: number }
  | { k: 'noop', a: number, sees: number }
  | { k: 'ack', a: number, sees: number }

const author = fc.integer({ min: 0, max: AUTHORS - 1 })
/** Who the author syncs with first: nobody (a partition), everybody, or some. */
const sees = fc.oneof(fc.constant(0), fc.constant((1 << AUTHORS) - 1), fc.integer({ min: 0, max: (1 << AUTHORS) - 1 }))

function opArb (clusters: number): fc.Arbitrary<Op> {
  const cluster = fc.integer({ min: 0, max: clusters - 1 })
  const role = fc.integer({ min: 0, max: ROLES.length - 1 })
  return fc.oneof(
    { arbitrary: fc.record({ k: fc.constant('join' as const), a: author, sees, cluster, role }), weight: 5 },
    { arbitrary: fc.record({ k: fc.constant('claim' as const), a: author, sees, addr: fc.integer({ min: 0, max: ADDRS.length - 1 }) }), weight: 4 },
    { arbitrary: fc.record({ k: fc.constant('choose' as const), a: author, sees }), weight: 2 },
    { arbitrary: fc.record({ k: fc.constant('release' as const), a: author, sees, addr: fc.integer({ min: 0, max: ADDRS.length - 1 }) }), weight: 1 },
    { arbitrary: fc.record({ k: fc.constantFrom('advertise' as const, 'withdraw' as const), a: author, sees, cidr: fc.integer({ min: 0, max: CIDRS.length - 1 }) }), weight: 3 },
    { arbitrary: fc.record({ k: fc.constant('setting' as const), a: author, sees, which: fc.integer({ min: 0, max: SETTINGS.length - 1 }) }), weight: 2 },
    { arbitrary: fc.record({ k: fc.constant('roleClaim' as const), a: author, sees, cluster, role }), weight: 1 },
    { arbitrary: fc.record({ k: fc.constant('leave' as const), a: author, sees }), weight: 1 },
    { arbitrary: fc.record({ k: fc.constant('evict' as const), a: author, sees, target: author }), weight: 1 },
    { arbitrary: fc.record({ k: fc.constant('noop' as const), a: author, sees }), weight: 3 },
    { arbitrary: fc.record({ k: fc.constant('ack' as const), a: author, sees }), weight: 4 }
  )
}

const scriptArb = fc.integer({ min: 1, max: 3 }).chain((clusters) =>
  fc.record({ clusters: fc.constant(clusters), ops: fc.array(opArb(clusters), { minLength: 1, maxLength: Number(process.env.WEFT_PROP_LEN ?? 28), size: 'max' }) }))

type Script = { clusters: number, ops: Op[] }

/** The role.ack the agent of `author` would append now, if any. */
function planAgentAck (s: NetworkState, author: string): BodyOf<'role.ack'> | undefined {
  const me = s.members.active.get(author)
  if (me === undefined) return undefined
  const want: DesiredNode = { hostname: me.hostname, cluster: me.cluster, role: me.role, os: me.os, arch: me.arch, version: me.version, addrs: [...me.addrs], caps: [...me.caps] }
  const step = planAgent(s, author, want).steps.find((x) => x.type === 'role.ack')
  return step?.type === 'role.ack' ? step.body : undefined
}

/** Run a script: every op becomes one signed event (or none, when it makes no sense). */
function build (script: Script): LogBuilder {
  const b = new LogBuilder(AUTHORS)
  for (const op of script.ops) {
    const seen = [...Array(AUTHORS).keys()].filter((x) => (op.sees & (1 << x)) !== 0 && x !== op.a)
    b.sync(op.a, ...seen)
    switch (op.k) {
      case 'join':
        b.append(op.a, 'node.join', join(`h${op.a}`, CLUSTERS[op.cluster], ROLES[op.role]))
        break
      case 'claim':
        b.append(op.a, 'ip.claim', { addr: ADDRS[op.addr] as string })
        break
      case 'choose': {
        // What an agent does: claim the first free candidate of its own replica's view.
        const s = b.stateOf(op.a)
        const addr = chooseAddress(s.ipam, s.settings.values, b.hex(op.a))
        if (addr !== undefined) b.append(op.a, 'ip.claim', { addr })
        break
      }
      case 'release':
        b.append(op.a, 'ip.release', { addr: ADDRS[op.addr] as string })
        break
      case 'advertise':
        b.append(op.a, 'route.advertise', { cidr: CIDRS[op.cidr] as string })
        break
      case 'withdraw':
        b.append(op.a, 'route.withdraw', { cidr: CIDRS[op.cidr] as string })
        break
      case 'setting': {
        const [key, value] = SETTINGS[op.which] as [string, unknown]
        try { b.setting(op.a, key, value) } catch { /* already has that value */ }
        break
      }
      case 'roleClaim':
        b.append(op.a, 'role.claim', { cluster: CLUSTERS[op.cluster] as string, role: ROLES[op.role] as typeof ROLES[number] })
        break
      case 'leave':
        b.append(op.a, 'node.leave', {})
        break
      case 'evict':
        b.append(op.a, 'node.evict', { peer: b.ids[op.target]?.publicKey as Uint8Array, reason: 'test' })
        break
      case 'noop':
        b.append(op.a, 'route.withdraw', { cidr: '192.0.2.0/24' })
        break
      case 'ack': {
        // What an agent does: acknowledge the master its replica shows, when its vote differs.
        const step = planAgentAck(b.stateOf(op.a), b.hex(op.a))
        if (step !== undefined) b.append(op.a, 'role.ack', step)
        break
      }
    }
  }
  return b
}

/** The invariants that must hold in every state. */
function checkInvariants (s: NetworkState): void {
  const v = s.settings.values
  // Roles: at most one init per cluster, and it is a member of that cluster; servers within
  // serverCount; clients have no role; a stable decision names a member (unless master-gone).
  for (const c of deriveRoles(s.roles, s.members, v)) {
    const inits = c.members.filter((m) => m.role === 'init')
    expect(inits.length, `cluster ${c.cluster} has ${inits.length} init masters`).toBeLessThanOrEqual(1)
    if (inits[0] !== undefined) expect(c.master?.author).toBe(inits[0].author)
    expect(c.members.filter((m) => m.role === 'init' || m.role === 'server').length).toBeLessThanOrEqual(v.serverCount)
    for (const m of c.members) {
      const mem = s.members.active.get(m.author)
      expect(mem?.cluster).toBe(c.cluster)
      // A worker or client is never chosen (a chosen master that asks for it later stays init).
      if (mem?.role === 'client') expect(m.role === 'none' || m.role === 'init').toBe(true)
      if (mem?.role === 'worker') expect(m.role === 'agent' || m.role === 'none' || m.role === 'init').toBe(true)
    }
    if (c.status === 'stable' || c.status === 'tentative') expect(inits).toHaveLength(1)
    if (c.status === 'master-gone') expect(inits).toHaveLength(0)
  }
  // Addresses: one holder per address (the map), one address per member and family, members
  // only, inside the overlay, consistent with leaseOf.
  const perMember = new Set<string>()
  for (const [addr, l] of s.ipam.leases) {
    expect(l.addr).toBe(addr)
    expect(s.members.active.has(l.author), `${addr} held by a non-member`).toBe(true)
    expect(perMember.has(`${l.author}/${l.family}`), `${l.author.slice(0, 8)} holds two addresses`).toBe(false)
    perMember.add(`${l.author}/${l.family}`)
    expect(leaseOf(s.ipam, l.author, l.family)?.addr).toBe(addr)
    const overlay = l.family === 4 ? v.overlayCidr : v.overlayCidr6
    expect(leaseProblem(parseCidr(overlay as string), addr)).toBeUndefined()
  }
  for (const [k, c] of s.ipam.claims) {
    if (c.status === 'lost' && c.holder !== undefined) expect(c.holder).not.toBe(k.split('/')[0])
  }
  // Routes: a function (no two overlapping routes to different peers), each lookup one peer.
  const t = deriveRoutes(s.routes, s.ipam, v)
  const parsed = t.routes.map((r) => ({ r, c: parseCidr(r.cidr) }))
  for (let i = 0; i < parsed.length; i++) {
    for (let j = i + 1; j < parsed.length; j++) {
      const x = parsed[i] as typeof parsed[number]
      const y = parsed[j] as typeof parsed[number]
      if (cidrsOverlap(x.c, y.c)) expect(x.r.peer, `${x.r.cidr} / ${y.r.cidr}`).toBe(y.r.peer)
    }
    const x = parsed[i] as typeof parsed[number]
    if (x.r.kind === 'advertised') {
      expect(s.members.active.has(x.r.peer)).toBe(true)
      expect(cidrsOverlap(x.c, parseCidr(v.overlayCidr))).toBe(false)
    }
  }
  for (const l of s.ipam.leases.values()) expect(lookupRoute(t, l.addr)?.peer).toBe(l.author)
}

/** Does `e` (or its causal past) include the event `target`? */
function follows (byId: ReadonlyMap<string, SignedEvent>, e: SignedEvent, target: string): boolean {
  const stack = [e]
  const seen = new Set<string>()
  while (stack.length > 0) {
    const x = stack.pop() as SignedEvent
    if (x.idHex === target) return true
    if (seen.has(x.idHex)) continue
    seen.add(x.idHex)
    for (const p of [...(x.fields.prev === null ? [] : [x.fields.prev]), ...x.fields.deps]) {
      const y = byId.get(Buffer.from(p).toString('hex'))
      if (y !== undefined) stack.push(y)
    }
  }
  return false
}

/**
 * Check the invariants after every event of the order, folding incrementally; stability against
 * a plain reference (votes = each member's latest ack; electorate = voters and the members whose
 * join one of their votes causally follows); and that a stable master still in its cluster is
 * only replaced when one of its voters changed its vote (nothing else can take it over).
 */
function checkEveryPrefix (events: readonly SignedEvent[]): void {
  const byId = new Map(events.map((e) => [e.idHex, e]))
  const f = new FoldEngine({ network: networkReducer() })
  const stableDecision = new Map<string, { author: string, voters: string[] }>()
  const votes = new Map<string, Map<string, SignedEvent>>() // cluster → member → latest ack
  for (const e of ordered(events)) {
    f.insert([e])
    const s = f.states().network
    if (e.fields.type === 'role.ack') {
      const cl = e.fields.body.cluster
      if (s.members.active.get(e.authorHex)?.cluster === cl) {
        if (!votes.has(cl)) votes.set(cl, new Map())
        votes.get(cl)?.set(e.authorHex, e)
      }
    }
    if (e.fields.type === 'node.join' && s.members.active.get(e.authorHex)?.joinId === e.idHex) for (const v of votes.values()) v.delete(e.authorHex)
    for (const v of votes.values()) for (const a of [...v.keys()]) if (!s.members.active.has(a)) v.delete(a)
    checkInvariants(s)
    for (const c of deriveRoles(s.roles, s.members, s.settings.values)) {
      const ms = [...s.members.active.values()].filter((x) => x.cluster === c.cluster)
      const latest = votes.get(c.cluster) ?? new Map<string, SignedEvent>()
      const votersOf = (master: string): string[] => ms.filter((m) => { const v = latest.get(m.author); return v?.fields.type === 'role.ack' && Buffer.from(v.fields.body.master).toString('hex') === master }).map((m) => m.author)
      const refStable = (master: string): boolean => {
        const voters = votersOf(master)
        const electorate = ms.filter((m) => voters.includes(m.author) || voters.some((v) => follows(byId, latest.get(v) as SignedEvent, m.joinId))).length
        return voters.length * 2 > electorate
      }
      const m = s.roles.clusters.get(c.cluster)?.master
      if (c.status === 'stable' || c.status === 'tentative') {
        expect(c.status === 'stable', `cluster ${c.cluster}: reference stability of ${m?.author.slice(0, 8)}`).toBe(refStable(m?.author as string))
      }
      if (c.status === 'tentative') for (const x of ms) expect(refStable(x.author), `cluster ${c.cluster}: ${x.author.slice(0, 8)} is stable but not shown`).toBe(false)
      const before = stableDecision.get(c.cluster)
      if (before !== undefined && m !== undefined && m.author !== before.author && s.members.active.get(before.author)?.cluster === c.cluster) {
        const moved = before.voters.filter((v) => !votersOf(before.author).includes(v))
        expect(moved.length, 'a stable master still in the cluster was replaced while all its voters stood by it').toBeGreaterThan(0)
      }
      if (c.status === 'stable' && m !== undefined) stableDecision.set(c.cluster, { author: m.author, voters: votersOf(m.author) })
      else if (m === undefined || m.author !== before?.author) stableDecision.delete(c.cluster)
    }
  }
}

/** Deliver the envelopes to a merged log in this order (parents may come late), fold its view. */
function viaMergedLog (events: readonly SignedEvent[], batch: number): NetworkState {
  const log = newMergedLog()
  for (let i = 0; i < events.length; i += batch) {
    const res = log.ingest(events.slice(i, i + batch).map((e) => e.envelope))
    expect(res.rejected).toEqual([])
  }
  expect(log.size).toBe(events.length)
  expect(log.pendingCount).toBe(0)
  return foldNetwork([...log.events()].filter((e) => log.isVisible(e)))
}

/** Insert into one fold engine in random chunks in random order, with frequent checkpoints. */
function viaChunks (events: readonly SignedEvent[], r: () => number): NetworkState {
  const f = new FoldEngine({ network: networkReducer() }, { checkpointEvery: 1 + Math.floor(r() * 4), maxCheckpoints: 4 })
  const evs = shuffle(events, r)
  let i = 0
  while (i < evs.length) {
    const n = 1 + Math.floor(r() * 4)
    f.insert(evs.slice(i, i + n))
    i += n
  }
  return f.states().network
}

function checkScript (script: Script, seed: number): void {
  const b = build(script)
  const events = b.events
  const reference = foldNetwork(events)
  const want = viewJson(reference)
  const r = rng(seed)
  for (let k = 0; k < 2; k++) {
    expect(viewJson(viaMergedLog(shuffle(events, r), 1 + Math.floor(r() * 5)))).toBe(want)
    expect(viewJson(viaChunks(events, r))).toBe(want)
  }
  checkEveryPrefix(events)
}

/** WEFT_PROP_RUNS=2000 for a long hunt; the default keeps the suite to a few seconds. */
const RUNS = Number(process.env.WEFT_PROP_RUNS ?? 70)

describe('network projections over random logs (property)', () => {
  it('regression: a stable master asking to be a worker is not replaced when a concurrent join makes it tentative', () => {
    checkScript({
      clusters: 2,
      ops: [
        { k: 'join', a: 0, sees: 0, cluster: 1, role: 0 },
        { k: 'join', a: 0, sees: 0, cluster: 1, role: 4 },
        { k: 'join', a: 1, sees: 0, cluster: 1, role: 0 },
        { k: 'roleClaim', a: 0, sees: 0, cluster: 0, role: 0 }
      ]
    }, 0)
  })

  it('regression: a forced master that was stable alone and turns worker is not replaced once reopened', () => {
    checkScript({
      clusters: 1,
      ops: [
        { k: 'join', a: 0, sees: 0, cluster: 0, role: 0 },
        { k: 'join', a: 2, sees: 0, cluster: 0, role: 3 },
        { k: 'join', a: 2, sees: 0, cluster: 0, role: 4 },
        { k: 'evict', a: 0, sees: 0, target: 0 }
      ]
    }, 0)
  })

  it('regression: a tentative master that turned worker earlier stays init, and the view says so', () => {
    const b = build({ clusters: 1, ops: [{ k: 'join', a: 2, sees: 31, cluster: 0, role: 0 }, { k: 'join', a: 2, sees: 0, cluster: 0, role: 4 }] })
    const s = foldNetwork(b.events)
    expect(deriveRoles(s.roles, s.members, s.settings.values)[0]?.members.map((m) => m.role)).toEqual(['init'])
    checkInvariants(s)
  })

  it('every delivery order gives the same views, and the invariants hold after every event', () => {
    fc.assert(fc.property(scriptArb, fc.integer(), (script, seed) => { checkScript(script, seed) }), { numRuns: RUNS })
  }, Math.max(60_000, RUNS * 300))

  it('each author\'s own replica (a partial view) satisfies the invariants too', () => {
    fc.assert(fc.property(scriptArb, (script) => {
      const b = build(script)
      for (let a = 0; a < AUTHORS; a++) checkInvariants(b.stateOf(a))
    }), { numRuns: 25 })
  })
})
