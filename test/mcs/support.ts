import { Replica } from '../../src/adapters/replica.js'
import { replicaReducers, type ReplicaReducers } from '../../src/projections/reducers.js'
import { RESOURCES } from '../../src/adapters/kube/client.js'
import type { Condition, ServiceExport } from '../../src/adapters/kube/types.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import { McsAgent } from '../../src/node/mcs/agent.js'
import { startFakeKube, type FakeKube } from '../support/fake-kube.js'
import { identity, joinBody, memoryDb, NET } from '../support/fixtures.js'

export { waitFor } from '../net/support.js'

/**
 * Two clusters, each with a fake API server, one Weft node (an in-process replica with the real
 * projections) and its McsAgent. The replicas replicate by ingesting each other's own events,
 * the same events the mesh would carry; every log change drives the local agent's update().
 */
export interface McsCluster {
  name: string
  fake: FakeKube
  replica: Replica<ReplicaReducers>
  agent: McsAgent
  author: string
  /** The listeners the agent asked for: `namespace/name/port`. */
  listeners: Set<string>
}

export interface ClustersOptions {
  /** The address of a listener (default 192.0.2.10, a pod-reachable address as the API server wants). */
  listenHost?: (cluster: string, service: string) => string
}

export async function startClusters (names: string[] = ['east', 'west'], opts: ClustersOptions = {}): Promise<McsCluster[]> {
  const clusters: McsCluster[] = []
  let nextPort = 31000
  for (const [i, name] of names.entries()) {
    const fake = await startFakeKube()
    const replica = await Replica.open({ db: memoryDb(), net: NET, reducers: replicaReducers(), signer: identity(i + 1), sync: false })
    const author = identity(i + 1).authorHex
    const listeners = new Set<string>()
    const ports = new Map<string, number>()
    const agent = new McsAgent({
      kube: fake.client(),
      cluster: name,
      self: author,
      append: async (type, body) => await replica.append(type, body as never, Date.now()),
      state: () => replica.states().network,
      tunnels: {
        listen: (service, port) => {
          const key = `${service}/${port}`
          listeners.add(key)
          if (!ports.has(key)) ports.set(key, nextPort++)
          return { host: opts.listenHost?.(name, service) ?? '192.0.2.10', port: ports.get(key) as number }
        },
        close: (service, port) => { listeners.delete(`${service}/${port}`) }
      },
      log: silentLogger,
      now: () => Date.now(),
      retryMs: 100
    })
    clusters.push({ name, fake, replica, agent, author, listeners })
  }
  // Replication: each node's own events go to every other node, in order.
  for (const c of clusters) {
    c.replica.onChange((added) => {
      const own = added.filter((e) => e.authorHex === c.author)
      for (const d of clusters) if (d !== c && own.length > 0) void d.replica.ingest(own)
      c.agent.update()
    })
  }
  for (const c of clusters) await c.replica.append('node.join', joinBody(`node-${c.name}`, c.name), Date.now())
  for (const c of clusters) await c.agent.start()
  return clusters
}

export async function stopClusters (clusters: McsCluster[]): Promise<void> {
  for (const c of clusters) await c.agent.stop()
  for (const c of clusters) { await c.replica.close(); await c.fake.close() }
}

export function conditionsOf (c: McsCluster, namespace: string, name: string): Record<string, Pick<Condition, 'status' | 'reason' | 'message'>> {
  const se = c.fake.get<ServiceExport>(RESOURCES.serviceExports, namespace, name)
  const out: Record<string, Pick<Condition, 'status' | 'reason' | 'message'>> = {}
  for (const cond of se?.status?.conditions ?? []) out[cond.type] = { status: cond.status, reason: cond.reason, message: cond.message }
  return out
}

export function condition (c: McsCluster, namespace: string, name: string, type: string): string {
  const x = conditionsOf(c, namespace, name)[type]
  return x === undefined ? '' : `${x.status}/${x.reason}`
}
