import { randomBytes } from 'node:crypto'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { multiaddr } from '@multiformats/multiaddr'
import type { PeerId } from '@libp2p/interface'
import { afterEach, describe, expect, it } from 'vitest'
import { identifiers } from '../../src/log/token.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import { ServiceListener, TunnelClient, TunnelError, TunnelServer, type ResolveResult, type TunnelLimits } from '../../src/net/tcp-tunnel.js'
import { TEST_TOKEN } from '../support/fixtures.js'
import { startNode, stopAll, waitFor, type TestNode } from '../net/support.js'
import { closeServer, echoServer, exchange, listen, sha256 } from './support.js'

const protocol = identifiers(TEST_TOKEN).tcpProtocol

interface Rig {
  a: TestNode
  b: TestNode
  server: TunnelServer
  client: TunnelClient
  listener: ServiceListener
  port: number
}

describe('TCP tunnels over the mesh', () => {
  let nodes: TestNode[] = []
  let servers: Server[] = []
  let stoppers: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const s of stoppers) await s()
    for (const s of servers) await closeServer(s)
    await stopAll(nodes)
    nodes = []
    servers = []
    stoppers = []
  })

  async function pair (): Promise<[TestNode, TestNode]> {
    const a = await startNode(0, [])
    const b = await startNode(1, [a.addr])
    nodes.push(a, b)
    await waitFor(() => b.mesh.host.getConnections(a.mesh.host.peerId).length > 0, 'B connected to A')
    return [a, b]
  }

  /** A serves `resolve`; B listens for `service` and sends every connection to `pick` (default: A). */
  async function rig (resolve: (service: string, port: number) => ResolveResult, opts: { service?: string, limits?: Partial<TunnelLimits>, pick?: (r: { a: TestNode, b: TestNode }) => PeerId[] } = {}): Promise<Rig> {
    const [a, b] = await pair()
    const server = new TunnelServer({ host: a.mesh.host, protocol, resolve, limits: opts.limits, log: silentLogger })
    await server.start()
    const client = new TunnelClient({ host: b.mesh.host, protocol, limits: opts.limits, log: silentLogger })
    const listener = new ServiceListener({
      client,
      listen: { host: '127.0.0.1', port: 0 },
      service: opts.service ?? 'default/echo',
      port: 7,
      pick: () => opts.pick?.({ a, b }) ?? [a.mesh.host.peerId],
      log: silentLogger
    })
    const bound = await listener.start()
    stoppers.push(async () => { await listener.stop(); await server.stop() })
    return { a, b, server, client, listener, port: bound.port }
  }

  it('carries 20 MB both ways intact, and counts it', async () => {
    const echo = await echoServer()
    servers.push(echo.server)
    const r = await rig((service, port) => service === 'default/echo' && port === 7 ? { host: '127.0.0.1', port: echo.port } : { refuse: 'unknown-service', message: 'no' })
    const payload = randomBytes(20 * 1024 * 1024)
    const got = await exchange(r.port, payload)
    expect(got.error).toBeUndefined()
    expect(got.ended).toBe(true)
    expect(got.data.byteLength).toBe(payload.byteLength)
    expect(sha256(got.data)).toBe(sha256(payload))
    await waitFor(() => r.listener.stats().active === 0 && r.server.stats()['default/echo']?.active === 0, 'tunnel closed on both ends')
    expect(r.listener.stats()).toMatchObject({ opened: 1, failed: 0, refused: 0, bytesIn: payload.byteLength, bytesOut: payload.byteLength })
    expect(r.server.stats()['default/echo']).toMatchObject({ opened: 1, failed: 0, bytesIn: payload.byteLength, bytesOut: payload.byteLength })
  })

  it('propagates half-close: the client ends, the server sees the end, replies, then ends', async () => {
    let sawEnd = false
    const server = createServer({ allowHalfOpen: true }, (s) => {
      let n = 0
      s.on('data', (c: Buffer) => { n += c.byteLength })
      s.on('end', () => {
        sawEnd = true
        s.end(`got ${n} bytes after your FIN`)
      })
    })
    servers.push(server)
    const port = await listen(server)
    const r = await rig(() => ({ host: '127.0.0.1', port }))
    const got = await exchange(r.port, Buffer.from('hello'))
    expect(sawEnd).toBe(true)
    expect(got.error).toBeUndefined()
    expect(got.ended).toBe(true)
    expect(got.data.toString()).toBe('got 5 bytes after your FIN')
  })

  it('carries what the server says first (a greeting before any request)', async () => {
    const server = createServer({ allowHalfOpen: true }, (s) => { s.end('220 hello\r\n') })
    servers.push(server)
    const port = await listen(server)
    const r = await rig(() => ({ host: '127.0.0.1', port }))
    const got = await exchange(r.port, Buffer.alloc(0))
    expect(got.data.toString()).toBe('220 hello\r\n')
    expect(got.ended).toBe(true)
  })

  it('a refused service gives a clean close (EOF, no reset) and is counted', async () => {
    const r = await rig(() => ({ refuse: 'unknown-service', message: 'this node does not expose default/nope' }), { service: 'default/nope' })
    const got = await exchange(r.port, Buffer.from('anyone?'))
    expect(got.error).toBeUndefined()
    expect(got.ended).toBe(true)
    expect(got.data.byteLength).toBe(0)
    expect(r.listener.stats()).toMatchObject({ opened: 0, refused: 1, failed: 0 })
    expect(r.listener.stats().lastError).toContain('does not expose default/nope')
    expect(r.server.stats()['default/nope']).toMatchObject({ refused: 1, opened: 0 })
    // The opener sees the refusal as a TunnelError with the server's code.
    await expect(r.client.open(r.a.mesh.host.peerId, 'default/nope', 7)).rejects.toMatchObject({ code: 'unknown-service' })
    await waitFor(() => r.client.active === 0 && r.server.active === 0, 'refused streams released')
  })

  it('an unreachable target: the client gets a clean close, both ends count a failure', async () => {
    const closed = createServer()
    const deadPort = await listen(closed)
    await closeServer(closed)
    const r = await rig(() => ({ host: '127.0.0.1', port: deadPort }))
    const got = await exchange(r.port, Buffer.from('x'))
    expect(got.ended).toBe(true)
    expect(got.data.byteLength).toBe(0)
    expect(r.listener.stats()).toMatchObject({ opened: 0, failed: 1 })
    expect(r.listener.stats().lastError).toMatch(/cannot connect to its target.*ECONNREFUSED/)
    expect(r.server.stats()['default/echo']).toMatchObject({ failed: 1, opened: 0 })
  })

  it('tries the next peer when the first refuses', async () => {
    const echo = await echoServer()
    servers.push(echo.server)
    const c = await startNode(2, [])
    nodes.push(c)
    // C does not serve the protocol at all; A does.
    const r = await rig(() => ({ host: '127.0.0.1', port: echo.port }), { pick: ({ a }) => [c.mesh.host.peerId, a.mesh.host.peerId] })
    await r.b.mesh.host.dial(multiaddr(c.addr))
    const got = await exchange(r.port, Buffer.from('ping'))
    expect(got.data.toString()).toBe('ping')
    expect(r.listener.stats()).toMatchObject({ opened: 1, failed: 0 })
    await expect(r.client.open(c.mesh.host.peerId, 'default/echo', 7)).rejects.toBeInstanceOf(TunnelError)
  })

  it('enforces the per-peer concurrency limit with a clean refusal, and frees slots when tunnels close', async () => {
    const echo = await echoServer()
    servers.push(echo.server)
    const r = await rig(() => ({ host: '127.0.0.1', port: echo.port }), { limits: { maxPerPeer: 2 } })
    const open = async (): Promise<Socket> => {
      const s = connect({ host: '127.0.0.1', port: r.port, allowHalfOpen: true })
      s.on('error', () => {})
      s.write('x')
      await new Promise<void>((resolve, reject) => {
        s.once('data', () => { resolve() })
        s.once('end', () => { reject(new Error('closed')) })
      })
      return s
    }
    const s1 = await open()
    const s2 = await open()
    expect(r.server.active).toBe(2)
    const third = await exchange(r.port, Buffer.from('y'))
    expect(third.ended).toBe(true)
    expect(third.data.byteLength).toBe(0)
    expect(r.listener.stats().refused).toBe(1)
    expect(r.listener.stats().lastError).toMatch(/busy|2 tunnels/)
    s1.end()
    s1.resume()
    await waitFor(() => r.server.active === 1, 'a slot freed')
    const fourth = await exchange(r.port, Buffer.from('z'))
    expect(fourth.data.toString()).toBe('z')
    s2.destroy()
  })

  it('a reset on one side resets the other', async () => {
    let serverSide: Socket | undefined
    const server = createServer({ allowHalfOpen: true }, (s) => { serverSide = s; s.on('error', () => {}) })
    servers.push(server)
    const port = await listen(server)
    const r = await rig(() => ({ host: '127.0.0.1', port }))
    const s = connect({ host: '127.0.0.1', port: r.port, allowHalfOpen: true })
    const err = new Promise<string>((resolve) => {
      s.on('error', (e: NodeJS.ErrnoException) => { resolve(e.code ?? e.message) })
      s.on('close', () => { resolve('closed without error') })
    })
    await waitFor(() => serverSide !== undefined, 'the target accepted')
    serverSide?.resetAndDestroy()
    expect(await err).toBe('ECONNRESET')
    await waitFor(() => r.listener.stats().active === 0, 'the tunnel is gone')
    expect(r.listener.stats().failed).toBe(1)
  })

  it('holds back a fast sender when the reader is slow: queues stay bounded, then every byte arrives', async () => {
    // Loopback sockets buffer ~10 MB here before the source stalls; 64 MB leaves plenty unsent.
    const total = 64 * 1024 * 1024
    const chunk = 64 * 1024
    let written = 0
    let stalledAt = 0
    // Writes a counting pattern until its socket says stop, and goes on at each 'drain'.
    const server = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {})
      const pump = (): void => {
        while (written < total) {
          const buf = Buffer.allocUnsafe(chunk)
          for (let i = 0; i < chunk; i += 4) buf.writeUInt32BE(((written + i) / 4) >>> 0, i)
          written += chunk
          if (!s.write(buf)) { stalledAt = Date.now(); s.once('drain', pump); return }
        }
        s.end()
      }
      pump()
    })
    servers.push(server)
    const port = await listen(server)
    const limits = { streamWindowBytes: 1024 * 1024 }
    const r = await rig(() => ({ host: '127.0.0.1', port }), { limits })
    const reader = connect({ host: '127.0.0.1', port: r.port, allowHalfOpen: true })
    reader.pause()
    await waitFor(() => r.listener.stats().active === 1 && written > 0, 'the tunnel carries data')
    // The reader reads nothing: the source must stall (its socket stops draining) well before the end.
    let last = -1
    await waitFor(async () => {
      const before = written
      await new Promise((resolve) => setTimeout(resolve, 400))
      const stable = written === before && written === last
      last = written
      return stable
    }, 'the source to stall', 30_000)
    expect(written).toBeLessThan(total)
    expect(stalledAt).toBeGreaterThan(0)
    const far = r.server.pipeInfo()
    const near = r.listener.pipeInfo()
    expect(far).toHaveLength(1)
    expect(near).toHaveLength(1)
    // Far end: the target socket is paused because the stream is full; little waits to be sent.
    expect(far[0]?.socketPaused).toBe(true)
    expect(far[0]?.queuedToStream).toBeLessThan(1024 * 1024)
    // Near end: the stream is paused because the client socket is full; at most one window waits.
    expect(near[0]?.streamPaused).toBe(true)
    expect(near[0]?.queuedToSocket).toBeLessThan(limits.streamWindowBytes + 2 * 1024 * 1024)
    // Now read everything: the pattern must be intact and complete, and the near stream's buffer
    // must stay within its window all along (pausing again while resuming works).
    let maxBuffered = 0
    const sampler = setInterval(() => {
      for (const p of [...r.listener.pipeInfo(), ...r.server.pipeInfo()]) maxBuffered = Math.max(maxBuffered, p.streamBuffered)
    }, 5)
    let received = 0
    let bad = -1
    let carry: Buffer = Buffer.alloc(0)
    await new Promise<void>((resolve, reject) => {
      reader.on('data', (c: Buffer) => {
        const buf = carry.byteLength > 0 ? Buffer.concat([carry, c]) : c
        const whole = buf.byteLength - (buf.byteLength % 4)
        for (let i = 0; i < whole && bad < 0; i += 4) if (buf.readUInt32BE(i) !== ((received + i) / 4) >>> 0) bad = received + i
        received += whole
        carry = buf.subarray(whole)
      })
      reader.on('end', () => { resolve() })
      reader.on('error', reject)
      reader.resume()
    })
    clearInterval(sampler)
    expect(r.listener.stats().lastError).toBeUndefined()
    expect(maxBuffered).toBeLessThanOrEqual(limits.streamWindowBytes)
    expect(bad).toBe(-1)
    expect(received).toBe(total)
  })
})
