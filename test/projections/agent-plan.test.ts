import { describe, expect, it } from 'vitest'
import { planAgent, type AgentStep, type DesiredNode } from '../../src/projections/agent-plan.js'
import { deriveRoles } from '../../src/projections/roles.js'
import { LogBuilder } from './support.js'

const want = (hostname: string, extra: Partial<DesiredNode> = {}): DesiredNode =>
  ({ hostname, cluster: 'default', role: 'auto', os: 'linux', arch: 'x64', version: '0.1.0', addrs: [], caps: [], ...extra })

/** Run the agent of author `a` to a fixed point, appending its steps; returns every step taken. */
function settle (b: LogBuilder, a: number, desired: DesiredNode): AgentStep[] {
  const taken: AgentStep[] = []
  for (let i = 0; i < 10; i++) {
    const plan = planAgent(b.stateOf(a), b.hex(a), desired)
    if (plan.steps.length === 0) return taken
    for (const s of plan.steps) { b.append(a, s.type, s.body as never); taken.push(s) }
  }
  throw new Error('the agent did not settle in 10 rounds')
}

describe('node agent plan', () => {
  it('joins, acknowledges its k3s master, then claims an address, then does nothing', () => {
    const b = new LogBuilder(2)
    const steps = settle(b, 0, want('a'))
    expect(steps.map((s) => s.type)).toEqual(['node.join', 'role.ack', 'ip.claim'])
    expect(planAgent(b.stateOf(0), b.hex(0), want('a')).steps).toEqual([])
  })

  it('claims an IPv6 address too once the network sets overlayCidr6 (dual stack), and only then', () => {
    const b = new LogBuilder(2)
    settle(b, 0, want('a'))
    expect(b.stateOf(0).ipam.held.get(`${b.hex(0)}/6`)).toBeUndefined()
    b.setting(0, 'overlayCidr6', 'fd77:7765:6674::/64')
    const steps = settle(b, 0, want('a'))
    expect(steps.map((s) => s.type)).toEqual(['ip.claim'])
    expect(steps[0]?.why).toBe('no IPv6 address yet')
    const s = b.stateOf(0)
    const v6 = s.ipam.held.get(`${b.hex(0)}/6`) as string
    expect(v6).toMatch(/^fd77:7765:6674:/)
    expect(s.ipam.leases.get(v6)?.family).toBe(6)
    // The IPv4 lease is kept; nothing more to do.
    expect(s.ipam.held.get(`${b.hex(0)}/4`)).toBeDefined()
    expect(planAgent(s, b.hex(0), want('a')).steps).toEqual([])
  })

  it('re-claims when a concurrent claim that sorts first wins its address', () => {
    const b = new LogBuilder(2)
    // Equal lamports order by author: the smaller author key wins a tie.
    const [winner, loser] = b.hex(0) < b.hex(1) ? [0, 1] : [1, 0]
    settle(b, loser, want('l'))
    const mine = b.stateOf(loser).ipam.held.get(`${b.hex(loser)}/4`) as string
    expect(mine).toBeDefined()
    b.append(winner, 'node.join', { hostname: 'w', cluster: 'default', os: 'linux', arch: 'x64', version: '0.1.0', addrs: [], caps: [], role: 'auto' })
    b.append(winner, 'ip.claim', { addr: mine })
    b.syncAll()
    const s = b.stateOf(loser)
    expect(s.ipam.held.get(`${b.hex(winner)}/4`)).toBe(mine)
    const plan = planAgent(s, b.hex(loser), want('l'))
    expect(plan.steps).toHaveLength(1)
    expect(plan.steps[0]?.type).toBe('ip.claim')
    expect((plan.steps[0]?.body as { addr: string }).addr).not.toBe(mine)
    expect(plan.steps[0]?.why).toMatch(/lost/)
    settle(b, loser, want('l'))
    expect(b.stateOf(loser).ipam.held.get(`${b.hex(loser)}/4`)).toBeDefined()
  })

  it('follows its flags: a new role is a role claim, a new cluster a new join', () => {
    const b = new LogBuilder(1)
    settle(b, 0, want('a'))
    expect(settle(b, 0, want('a', { role: 'master' })).map((s) => s.type)).toEqual(['role.claim'])
    expect(b.stateOf(0).members.active.get(b.hex(0))?.role).toBe('master')
    const moved = settle(b, 0, want('a', { role: 'master', cluster: 'edge' }))
    expect(moved[0]?.type).toBe('node.join')
    expect(b.stateOf(0).members.active.get(b.hex(0))?.cluster).toBe('edge')
  })

  it('does not rejoin after an eviction, and says why', () => {
    const b = new LogBuilder(2)
    settle(b, 0, want('a'))
    settle(b, 1, want('b'))
    b.syncAll()
    b.append(1, 'node.evict', { peer: b.ids[0]?.publicKey as Uint8Array, reason: 'stolen laptop' })
    b.syncAll()
    const plan = planAgent(b.stateOf(0), b.hex(0), want('a'))
    expect(plan.steps).toEqual([])
    expect(plan.blocked).toMatch(/evicted.*stolen laptop.*new --data-dir/)
  })
})

describe('node agent plan: advertised networks', () => {
  it('advertises what --advertise names and withdraws what it drops', () => {
    const b = new LogBuilder(1)
    settle(b, 0, want('a'))
    const steps = settle(b, 0, want('a', { advertise: ['192.168.7.0/24', '10.42.0.0/16'] }))
    expect(steps.map((s) => s.type)).toEqual(['route.advertise', 'route.advertise'])
    const routed = (): string[] => [...b.stateOf(0).routes.adverts.values()].map((a) => a.cidr).sort()
    expect(routed()).toEqual(['10.42.0.0/16', '192.168.7.0/24'])
    expect(settle(b, 0, want('a', { advertise: ['10.42.0.0/16'] })).map((s) => s.type)).toEqual(['route.withdraw'])
    expect(routed()).toEqual(['10.42.0.0/16'])
  })

  describe('role acknowledgements (a quiet network still reaches a stable decision)', () => {
    it('3 nodes booting at once, each syncing once: one ack per change of the decision, then stable, never a loop', () => {
      const b = new LogBuilder(3)
      // Concurrent joins (nobody has seen anybody): each one's replica first shows itself.
      for (const a of [0, 1, 2]) b.append(a, 'node.join', { hostname: `n${a}`, cluster: 'default', os: 'linux', arch: 'x64', version: '0.1.0', addrs: [], caps: [], role: 'auto' })
      const acks = [0, 0, 0]
      const run = (a: number): void => { acks[a] = (acks[a] as number) + settle(b, a, want(`n${a}`)).filter((s) => s.type === 'role.ack').length }
      for (const a of [0, 1, 2]) run(a)
      expect(acks).toEqual([1, 1, 1])
      b.syncAll()
      for (const a of [0, 1, 2]) run(a)
      b.syncAll()
      for (const a of [0, 1, 2]) run(a)
      const s = b.stateOf(0)
      const c = deriveRoles(s.roles, s.members, s.settings.values)[0]
      expect(c?.status).toBe('stable')
      expect(c?.members.every((m) => m.stable)).toBe(true)
      // At most one more ack per node (the ones whose first vote lost), and then silence.
      for (const n of acks) expect(n).toBeLessThanOrEqual(2)
      for (const a of [0, 1, 2]) expect(planAgent(b.stateOf(a), b.hex(a), want(`n${a}`)).steps).toEqual([])
    })

    it('no ack while there is no decision (minNodes not reached)', () => {
      const b = new LogBuilder(2)
      b.setting(0, 'minNodes', 2)
      const steps = settle(b, 0, want('a'))
      expect(steps.map((s) => s.type)).toEqual(['node.join', 'ip.claim'])
    })
  })
})
