import { createHash } from 'node:crypto'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { Mesh } from '../../src/net/mesh.js'
import { Replica } from '../../src/adapters/replica.js'
import { replicaReducers, type ReplicaReducers } from '../../src/projections/reducers.js'
import { identity, memoryDb, NET } from '../support/fixtures.js'
import { startLoopbackMesh } from '../net/support.js'

export { waitFor } from '../net/support.js'

/** An in-process node with the daemon's reducers (the network state), publishing its own events. */
export interface ServiceNode { n: number, replica: Replica<ReplicaReducers>, mesh: Mesh, addr: string, author: string }

export async function startServiceNode (n: number, peers: string[]): Promise<ServiceNode> {
  const replica = await Replica.open({ db: memoryDb(), net: NET, reducers: replicaReducers(), signer: identity(n), sync: false })
  const mesh = await startLoopbackMesh(identity(n), replica, peers)
  const author = identity(n).authorHex
  replica.onChange((added) => {
    const own = added.filter((e) => e.authorHex === author)
    if (own.length > 0) void mesh.publish(own)
  })
  return { n, replica, mesh, addr: mesh.listenAddrs()[0] as string, author }
}

export async function stopNodes (nodes: ServiceNode[]): Promise<void> {
  await Promise.all(nodes.map(async (t) => { await t.mesh.stop(); await t.replica.close() }))
}

const connections = new WeakMap<Server, Set<Socket>>()

export async function listen (server: Server): Promise<number> {
  const set = new Set<Socket>()
  connections.set(server, set)
  server.on('connection', (s: Socket) => { set.add(s); s.once('close', () => set.delete(s)) })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const a = server.address()
  if (typeof a !== 'object' || a === null) throw new Error('no address')
  return a.port
}

/** A TCP echo server (half-open: it ends when its client ends). */
export async function echoServer (): Promise<{ server: Server, port: number }> {
  const server = createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.pipe(s) })
  return { server, port: await listen(server) }
}

export async function closeServer (server: Server): Promise<void> {
  for (const s of connections.get(server) ?? []) s.destroy()
  await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
}

export interface Exchange { data: Buffer, error?: string, ended: boolean }

/** Connect, send `payload` (then FIN), read until the server ends. */
export async function exchange (port: number, payload: Buffer, timeoutMs = 60_000): Promise<Exchange> {
  return await new Promise((resolve) => {
    const s: Socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true })
    const chunks: Buffer[] = []
    let ended = false
    const timer = setTimeout(() => { s.destroy(); resolve({ data: Buffer.concat(chunks), error: 'timeout', ended }) }, timeoutMs)
    s.on('data', (c: Buffer) => chunks.push(c))
    s.on('end', () => { ended = true; s.end() })
    s.on('error', (err) => { clearTimeout(timer); resolve({ data: Buffer.concat(chunks), error: err.message, ended }) })
    s.on('close', () => { clearTimeout(timer); resolve({ data: Buffer.concat(chunks), ended }) })
    s.on('connect', () => { s.end(payload) })
  })
}

export function sha256 (b: Buffer): string {
  return createHash('sha256').update(b).digest('hex')
}
