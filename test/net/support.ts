import { Ed25519Verifier, type NodeIdentity } from '../../src/log/identity.js'
import { Mesh, type MeshOptions } from '../../src/net/mesh.js'
import { replicaPort } from '../../src/net/replica-port.js'
import { silentLogger, type MeshLogger } from '../../src/net/mesh-logger.js'
import { identity, memoryReplica, TEST_TOKEN, type reducers } from '../support/fixtures.js'
import type { Replica } from '../../src/adapters/replica.js'
import { createHost, type WeftHost } from '../../src/net/host.js'
import { networkIdBytes } from '../../src/log/token.js'

export interface TestNode { n: number, replica: Replica<typeof reducers>, mesh: Mesh, addr: string }

/** Poll `cond` until it holds or the deadline passes (no sleeps as synchronisation). */
export async function waitFor (cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/**
 * A Mesh for `replica` on TCP loopback with the test token, no mDNS and a 1 s sync interval
 * (`extra` overrides any of it): the one way tests and benches start an in-process node.
 */
export async function startLoopbackMesh (id: NodeIdentity, replica: Parameters<typeof replicaPort>[0], peers: string[], extra: Partial<MeshOptions> = {}): Promise<Mesh> {
  return await Mesh.start({
    token: TEST_TOKEN,
    identity: id,
    verifier: new Ed25519Verifier(),
    replica: replicaPort(replica),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    peers,
    mdns: false,
    syncIntervalMs: 1_000,
    log: silentLogger,
    now: () => Date.now(),
    ...extra
  })
}

export async function startNode (n: number, peers: string[], extra: Partial<MeshOptions> = {}, log: MeshLogger = silentLogger): Promise<TestNode> {
  const replica = await memoryReplica(n)
  const mesh = await startLoopbackMesh(identity(n), replica, peers, { log, ...extra })
  const addr = mesh.listenAddrs()[0] as string
  return { n, replica, mesh, addr }
}

export async function stopAll (nodes: TestNode[]): Promise<void> {
  await Promise.all(nodes.map(async (t) => { await t.mesh.stop(); await t.replica.close() }))
}

/**
 * A bare Weft libp2p host on TCP loopback with the test token and no mDNS; with `isMember`, public
 * discovery is on (plain connections to non-members). `stoppers` gets its stop.
 */
export async function loopbackHost (n: number, stoppers: Array<() => Promise<void>>, isMember?: (peerId: string) => boolean): Promise<WeftHost> {
  const h = await createHost({
    token: TEST_TOKEN,
    net: networkIdBytes(TEST_TOKEN),
    identity: identity(n),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    mdns: false,
    ...(isMember !== undefined ? { public: { bootstrap: [], isMember } } : {})
  })
  stoppers.push(async () => { await h.stop() })
  return h
}
