/**
 * k3s roles bench (`npm run bench -- k3s-stability`): how long a quiet network takes to reach a
 * stable k3s decision (issue 12). N in-process nodes (memory replicas, libp2p on loopback, one
 * event loop) each run what the daemon runs: the node agent (`planAgent`: join, acknowledge the
 * master, claim an address) after every change of its log, its own events published by gossip,
 * and the join held until a first sync (node 0 has no peer and joins at once). No other traffic.
 *
 * Figures, for 3 and 10 nodes:
 *   - decision_stable_after_last_join_<n>: from the last node's join to every node showing all
 *     n members and the decision stable (target < 2 s);
 *   - stable_after_last_join_<n>: the same, until every member's own role is stable too (each
 *     one's acknowledgement has reached every node);
 *   - late_joiner_<n>: one more node started afterwards, from its join to its role being stable
 *     on every node (target < 2 s);
 *   - propagation_<n>: baseline in the same run, one event from the last node to every node. A
 *     stable decision needs about two such trips (a join, then the acks), hence the ratio.
 */
import { Mesh } from '../src/net/mesh.js'
import { Replica } from '../src/adapters/replica.js'
import { networkReducer } from '../src/projections/network.js'
import { deriveRoles } from '../src/projections/roles.js'
import { planAgent, type DesiredNode } from '../src/projections/agent-plan.js'
import { identity, memoryDb, NET } from '../test/support/fixtures.js'
import { startLoopbackMesh } from '../test/net/support.js'
import { now, progress, round } from './_lib.js'

const reducers = { network: networkReducer() }
type NetReplica = Replica<typeof reducers>

interface Node { n: number, replica: NetReplica, mesh: Mesh, joinedAt?: number, stop: () => Promise<void> }

function figure (metric: string, value: number, unit: string, target: string | null = null, extra: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ bench: 'k3s-stability', metric, value: round(value), unit, target, ...extra }) + '\n')
}

async function until (cond: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

const want = (n: number): DesiredNode => ({ hostname: `n${n}`, cluster: 'default', role: 'auto', os: 'linux', arch: 'x64', version: '0.1.0', addrs: [], caps: [] })

/** A node as the daemon runs it (daemon.ts runPlan/holdJoin), minus the adapters. */
async function startNode (n: number, peers: string[]): Promise<Node> {
  const replica = await Replica.open({ db: memoryDb(), net: NET, reducers, signer: identity(n), sync: false })
  const mesh = await startLoopbackMesh(identity(n), replica, peers, { syncIntervalMs: 1_000 })
  const node: Node = { n, replica, mesh, stop: async () => { stopped = true; await mesh.stop(); await replica.close() } }
  let stopped = false
  let planning = false
  let again = false
  const self = identity(n).authorHex
  const plan = async (): Promise<void> => {
    if (planning) { again = true; return }
    planning = true
    try {
      for (let i = 0; i < 8 && !stopped; i++) {
        const p = planAgent(replica.states().network, self, want(n))
        if (p.steps.length === 0) break
        // The join waits for a first sync when there is a peer to sync with.
        if (p.steps[0]?.type === 'node.join' && peers.length > 0 && mesh.sync.stats.lastRoundAt === undefined) {
          setTimeout(() => { void plan() }, 20)
          break
        }
        for (const s of p.steps) {
          await replica.append(s.type, s.body as never, Date.now())
          if (s.type === 'node.join') node.joinedAt = now()
        }
      }
    } finally {
      planning = false
      if (again && !stopped) { again = false; void plan() }
    }
  }
  replica.onChange((added) => {
    const own = added.filter((e) => e.authorHex === self)
    if (own.length > 0) void mesh.publish(own)
    void plan()
  })
  void plan()
  return node
}

/** Every node shows `count` members, the decision stable, and every member's role stable. */
function allStable (nodes: readonly Node[], count: number): boolean {
  return nodes.every((x) => {
    const s = x.replica.states().network
    const c = deriveRoles(s.roles, s.members, s.settings.values).find((v) => v.cluster === 'default')
    return c !== undefined && c.status === 'stable' && c.members.length === count && c.members.every((m) => m.stable)
  })
}

/** Every node shows `count` members and the cluster's decision stable (members' own roles aside). */
function decided (nodes: readonly Node[], count: number): boolean {
  return nodes.every((x) => {
    const s = x.replica.states().network
    const c = deriveRoles(s.roles, s.members, s.settings.values).find((v) => v.cluster === 'default')
    return c !== undefined && c.status === 'stable' && c.members.length === count
  })
}

async function scenario (count: number): Promise<void> {
  progress(`k3s-stability: ${count} nodes started together`)
  const nodes: Node[] = []
  try {
    const first = await startNode(0, [])
    nodes.push(first)
    const addr = first.mesh.listenAddrs()[0] as string
    nodes.push(...await Promise.all(Array.from({ length: count - 1 }, async (_, i) => await startNode(i + 1, [addr]))))
    await until(() => nodes.every((x) => x.joinedAt !== undefined), 'every join', 60_000)
    const lastJoin = Math.max(...nodes.map((x) => x.joinedAt as number))
    await until(() => decided(nodes, count), `${count} nodes to show a stable decision`, 60_000)
    figure(`decision_stable_after_last_join_${count}`, now() - lastJoin, 'ms', '< 2000')
    await until(() => allStable(nodes, count), `${count} nodes stable`, 60_000)
    const done = now()
    figure(`stable_after_last_join_${count}`, done - lastJoin, 'ms', '< 2000')

    // Baseline: one event from the last node to every node.
    const sender = nodes[nodes.length - 1] as Node
    const t = now()
    const ev = await sender.replica.append('route.withdraw', { cidr: '192.0.2.0/24' }, Date.now())
    await until(() => nodes.every((x) => x.replica.log.has(ev.idHex)), 'the baseline event everywhere', 30_000)
    const propagation = now() - t
    figure(`propagation_${count}`, propagation, 'ms', null, { ratio_stable_to_propagation: round((done - lastJoin) / Math.max(propagation, 0.001)) })

    // A late joiner.
    const late = await startNode(count, [addr])
    nodes.push(late)
    await until(() => late.joinedAt !== undefined, 'the late join', 30_000)
    await until(() => allStable(nodes, count + 1), 'the late joiner stable everywhere', 60_000)
    figure(`late_joiner_${count}`, now() - (late.joinedAt as number), 'ms', '< 2000')
  } finally {
    await Promise.all(nodes.map(async (x) => { await x.stop().catch(() => {}) }))
  }
}

export async function run (): Promise<void> {
  await scenario(3)
  await scenario(10)
}
