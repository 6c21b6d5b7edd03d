/**
 * Mesh bench, gossip part (`npm run bench -- mesh-gossip`, also run by `mesh`): 30 Mesh nodes in
 * THIS process (memory replicas, TCP on loopback, one event loop for all of them). Each node
 * dials a few random earlier nodes; discovery (identify, the DHT) does the rest. Once every
 * node's gossipsub mesh has formed, events are published from random nodes and the time from
 * publish to acceptance at every other node (`onGossipAccepted`) is recorded. Target: p99 < 1 s.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import type { PeerId } from '@libp2p/interface'
import type { SignedEvent } from '../src/log/event.js'
import { identifiers } from '../src/log/token.js'
import { Mesh } from '../src/net/mesh.js'
import type { Replica } from '../src/adapters/replica.js'
import { identity, joinBody, memoryReplica, TEST_TOKEN, type reducers } from '../test/support/fixtures.js'
import { now, progress, prng, round } from './_lib.js'
import { startLoopbackMesh } from '../test/net/support.js'

const NODES = 30
const DIALS = 3
const WARMUP = 20
const EVENTS = 200
const GAP_MS = 50

function figure (metric: string, value: number, unit: string, target: string | null = null, extra: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ bench: 'mesh', metric, value: round(value), unit, target, ...extra }) + '\n')
}

/** The parts of the gossipsub instance the bench reads (the exported type hides them). */
interface GossipInternals {
  getMeshPeers: (topic: string) => string[]
  getSubscribers: (topic: string) => unknown[]
  score: { params: { IPColocationFactorWeight: number } }
}

const internals = (m: Mesh): GossipInternals => m.host.services.pubsub as unknown as GossipInternals

interface GossipNode {
  n: number
  replica: Replica<typeof reducers>
  mesh: Mesh
  addr: string
}

function quantile (sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number
}

async function until (cond: () => boolean, what: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

export async function run (): Promise<void> {
  const rnd = prng(30)
  const topic = identifiers(TEST_TOKEN).gossipTopic
  const publishedAt = new Map<string, { at: number, by: number }>()
  /** Publish → acceptance at each other node, by gossip. */
  const gossipMs: number[] = []
  /** Publish → arrival at each other node by any path (gossip, or a pull after a parked event). */
  const arrivals = new Map<string, number>()
  const anyPathMs: number[] = []
  let measuring = false
  const nodes: GossipNode[] = []
  progress(`gossip: starting ${NODES} in-process nodes on loopback`)
  const t0 = now()
  try {
    for (let n = 0; n < NODES; n++) {
      const replica = await memoryReplica(n)
      const peers: string[] = []
      const pool = nodes.map((x) => x.addr)
      for (let k = 0; k < Math.min(DIALS, pool.length); k++) peers.push(pool.splice(Math.floor(rnd() * pool.length), 1)[0] as string)
      const mesh = await startLoopbackMesh(identity(n), replica, peers, {
        // Anti-entropy only on connect and when a parked event calls for it: delivery here is
        // gossip's, not a periodic pull's.
        syncIntervalMs: 600_000,
        onGossipAccepted: (ev: SignedEvent, _from: PeerId) => {
          const p = publishedAt.get(ev.idHex)
          if (measuring && p !== undefined) gossipMs.push(now() - p.at)
        }
      })
      replica.onChange((added) => {
        if (!measuring) return
        for (const ev of added) {
          const p = publishedAt.get(ev.idHex)
          if (p === undefined || p.by === n) continue
          anyPathMs.push(now() - p.at)
          arrivals.set(ev.idHex, (arrivals.get(ev.idHex) ?? 0) + 1)
        }
      })
      // All 30 nodes share 127.0.0.1: gossipsub's IP-colocation penalty (more than 10 peers on
      // one IP: -5 × surplus²) would graylist them and the meshes collapse. On a LAN each node
      // has its own address; here the penalty is switched off (see the report in README).
      internals(mesh).score.params.IPColocationFactorWeight = 0
      nodes.push({ n, replica, mesh, addr: mesh.listenAddrs()[0] as string })
    }
    progress(`gossip: ${NODES} nodes up in ${Math.round(now() - t0)} ms; waiting for the gossipsub mesh`)
    const meshOf = (x: GossipNode): number => internals(x.mesh).getMeshPeers(topic).length
    const subsOf = (x: GossipNode): number => internals(x.mesh).getSubscribers(topic).length
    // Formed: every node has a gossip mesh of at least D_lo (4) peers, or all its subscribed
    // peers when it knows fewer.
    await until(() => nodes.every((x) => subsOf(x) > 0 && meshOf(x) >= Math.min(4, subsOf(x))),
      () => `gossip meshes (sizes ${nodes.map(meshOf).join(',')})`, 60_000)
    const formedMs = now() - t0
    const conns = nodes.map((x) => x.mesh.host.getConnections().length)
    progress(`gossip: mesh formed ${Math.round(formedMs)} ms after the first start; connections per node ${Math.min(...conns)}..${Math.max(...conns)}`)

    // Every node joins first (gossiped, unmeasured), so later events' deps are known everywhere.
    const publish = async (x: GossipNode, i: number, record: boolean): Promise<void> => {
      const ev = x.replica.log.authors().includes(x.replica.authorHex as string)
        ? await x.replica.append('ip.claim', { addr: `10.1.${(i >> 8) & 255}.${i & 255}` }, Date.now())
        : await x.replica.append('node.join', joinBody(`g${x.n}`), Date.now())
      if (record) publishedAt.set(ev.idHex, { at: now(), by: x.n })
      await x.mesh.publish([ev])
    }
    for (const x of nodes) await publish(x, 0, false)
    for (let i = 0; i < WARMUP; i++) {
      await publish(nodes[Math.floor(rnd() * NODES)] as GossipNode, 1 + i, false)
      await new Promise((resolve) => setTimeout(resolve, GAP_MS))
    }
    const warmTotal = NODES + WARMUP
    await until(() => nodes.every((x) => x.replica.log.size === warmTotal), () => `warm-up events everywhere (${nodes.map((x) => x.replica.log.size).join(',')}) ${JSON.stringify(nodes.map((x) => [x.mesh.gossip.stats, x.mesh.sync.stats, x.replica.log.pendingCount]))}`, 30_000)

    progress(`gossip: publishing ${EVENTS} events from random nodes, one every ${GAP_MS} ms`)
    measuring = true
    const loop = monitorEventLoopDelay({ resolution: 10 })
    loop.enable()
    for (let i = 0; i < EVENTS; i++) {
      await publish(nodes[Math.floor(rnd() * NODES)] as GossipNode, 1000 + i, true)
      await new Promise((resolve) => setTimeout(resolve, GAP_MS))
    }
    const total = warmTotal + EVENTS
    await until(() => nodes.every((x) => x.replica.log.size === total), () => `every event everywhere (${nodes.map((x) => x.replica.log.size).join(',')})`, 30_000)
    measuring = false
    loop.disable()

    const expected = EVENTS * (NODES - 1)
    gossipMs.sort((a, b) => a - b)
    anyPathMs.sort((a, b) => a - b)
    const setup = `${NODES} in-process Mesh nodes (one Node.js event loop, memory replicas) on TCP loopback, each dialling ${DIALS} random earlier nodes (discovery dials the rest); ` +
      `gossipsub IP-colocation penalty off (all on 127.0.0.1); ${EVENTS} events from random nodes, one every ${GAP_MS} ms`
    figure('gossip_30_p50_ms', quantile(gossipMs, 0.5), 'ms', null, { setup })
    figure('gossip_30_p99_ms', quantile(gossipMs, 0.99), 'ms', '< 1000', { samples: gossipMs.length, expected })
    figure('gossip_30_max_ms', gossipMs.at(-1) ?? NaN, 'ms')
    figure('gossip_30_delivered_by_gossip', gossipMs.length / expected, 'ratio', null, { note: 'share of (event, receiver) pairs accepted from gossip; the rest arrived by anti-entropy pulls' })
    figure('gossip_30_any_path_p99_ms', quantile(anyPathMs, 0.99), 'ms', null, { samples: anyPathMs.length, note: 'publish to arrival by gossip or pull' })
    figure('gossip_30_event_loop_delay_p99_ms', loop.percentile(99) / 1e6, 'ms', null, { note: 'all 30 nodes share this one event loop: its delay is part of every propagation figure' })
    figure('gossip_30_mesh_formed_ms', formedMs, 'ms', null, { note: 'from the first node start until every gossipsub mesh had >= min(4, subscribers) peers', connectionsPerNode: `${Math.min(...conns)}..${Math.max(...conns)}` })
  } finally {
    measuring = false
    progress('gossip: stopping')
    await Promise.all(nodes.map(async (x) => { await x.mesh.stop().catch(() => {}); await x.replica.close() }))
  }
}
