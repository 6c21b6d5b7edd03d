/**
 * Sockets that share a listener's port (src/net/reuseport-socket.ts): the outgoing half of TCP
 * hole punching. A listener and a dialler on one port, in one process; the dial's source port is
 * the listener's (seen by the peer it reaches); without the shared port the same bind fails.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { dialFromPort, EADDRINUSE, sharePort, socketCalls, SocketCallError } from '../../src/net/reuseport-socket.js'

const servers: Server[] = []
const sockets: Socket[] = []

async function listen (onSocket: (s: Socket) => void = () => {}): Promise<{ server: Server, port: number }> {
  const server = createServer(onSocket)
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const a = server.address()
  if (a === null || typeof a === 'string') throw new Error('no port')
  return { server, port: a.port }
}

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy()
  await Promise.all(servers.splice(0).map(async (s) => { await new Promise((resolve) => s.close(resolve)) }))
})

const supported = process.platform === 'linux' && socketCalls() !== null
if (!supported) console.warn('skipping the reuseport socket tests: not Linux or koffi cannot load libc')

describe.skipIf(!supported)('dials from a listening port (SO_REUSEPORT)', () => {
  it('connects from the port a listener holds, carries bytes both ways, and the listener keeps accepting', async () => {
    const own = await listen((s) => { s.end('still listening') })
    expect(sharePort(own.server)).toBe(true)
    let seenPort = 0
    const peer = await listen((s) => {
      seenPort = s.remotePort ?? 0
      s.on('data', (d) => s.write(d))
    })
    const sock = await dialFromPort({ localIp: '127.0.0.1', localPort: own.port, remoteIp: '127.0.0.1', remotePort: peer.port, signal: AbortSignal.timeout(5_000) })
    sockets.push(sock)
    expect(sock.localPort).toBe(own.port)
    const echoed = new Promise<string>((resolve) => sock.once('data', (d) => { resolve(d.toString()) }))
    sock.write('hello')
    expect(await echoed).toBe('hello')
    expect(seenPort).toBe(own.port)
    // The listener on the shared port still gets its own connections.
    const { connect } = await import('node:net')
    const c = connect(own.port, '127.0.0.1')
    sockets.push(c)
    const got = await new Promise<string>((resolve) => c.once('data', (d) => { resolve(d.toString()) }))
    expect(got).toBe('still listening')
  })

  it('fails to bind a listener port that was not shared (the flag is what makes it work)', async () => {
    const own = await listen()
    const peer = await listen()
    const err = await dialFromPort({ localIp: '127.0.0.1', localPort: own.port, remoteIp: '127.0.0.1', remotePort: peer.port, signal: AbortSignal.timeout(5_000) }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SocketCallError)
    expect((err as SocketCallError).errno).toBe(EADDRINUSE)
  })

  it('reports a refused connection with its errno, and an abort with its reason', async () => {
    const own = await listen()
    sharePort(own.server)
    // A port nobody listens on: a closed server's.
    const gone = await listen()
    await new Promise((resolve) => gone.server.close(resolve))
    servers.splice(servers.indexOf(gone.server), 1)
    const refused = await dialFromPort({ localIp: '127.0.0.1', localPort: own.port, remoteIp: '127.0.0.1', remotePort: gone.port, signal: AbortSignal.timeout(5_000) }).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(SocketCallError)
    expect((refused as SocketCallError).errno).toBe(111) // ECONNREFUSED
    const ac = new AbortController()
    ac.abort(new Error('given up'))
    await expect(dialFromPort({ localIp: '127.0.0.1', localPort: own.port, remoteIp: '127.0.0.1', remotePort: gone.port, signal: ac.signal })).rejects.toThrow('given up')
  })
})
