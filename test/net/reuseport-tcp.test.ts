/**
 * Hole punching's parts that run in one process (docs/mesh.md "4. Hole punching"):
 * - roles of a TCP simultaneous open, settled on the wire (src/net/simultaneous-open.ts): both
 *   ends of one connection send punch nonces and come out as one initiator and one responder
 *   with the same nonces; a punch dial that reached a listener initiates;
 * - the transport (src/net/reuseport-tcp.ts) between two libp2p hosts with public discovery on
 *   loopback (127.0.0.0/8 made public, as `--public-ranges` does): a dial to a public address
 *   leaves from the dialler's listening port (the peer sees that port), and with the calls
 *   unavailable (WEFT_REUSEPORT=off) it does not, and `reusePortProblem` says why.
 * The crossing SYNs themselves need two NATs: test/system/netns-reach.test.ts.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import type { WeftHost } from '../../src/net/host.js'
import { PUNCH_FIRST_BYTE, settleOnSocket, settleRoles } from '../../src/net/simultaneous-open.js'
import { resetReusePortProblem, reusePortProblem } from '../../src/net/reuseport-tcp.js'
import { socketCalls } from '../../src/net/reuseport-socket.js'
import { isProtectedConnection } from '../../src/net/transport-protector.js'
import { treatAsPublic } from '../../src/net/public-ranges.js'
import { loopbackHost, waitFor } from './support.js'

const stoppers: Array<() => Promise<void>> = []
const servers: Server[] = []
const sockets: Socket[] = []
afterEach(async () => {
  await Promise.all(stoppers.splice(0).map(async (stop) => { await stop() }))
  for (const s of sockets.splice(0)) s.destroy()
  await Promise.all(servers.splice(0).map(async (s) => { await new Promise((resolve) => s.close(resolve)) }))
  delete process.env.WEFT_REUSEPORT
  resetReusePortProblem()
  treatAsPublic([])
})

/** Both ends of one loopback TCP connection. */
async function socketPair (): Promise<[Socket, Socket]> {
  const server = createServer()
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const a = server.address()
  if (a === null || typeof a === 'string') throw new Error('no port')
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve))
  const dialled = connect(a.port, '127.0.0.1')
  await new Promise<void>((resolve) => dialled.once('connect', resolve))
  const other = await accepted
  sockets.push(dialled, other)
  return [dialled, other]
}

describe('roles of a simultaneous open', () => {
  it('two punch dials on one connection: one initiates, one responds, both hold the same nonces, and later bytes stay for the next reader', async () => {
    const [a, b] = await socketPair()
    const signal = AbortSignal.timeout(5_000)
    const [ra, rb] = await Promise.all([settleOnSocket(a, signal), settleOnSocket(b, signal)])
    expect(ra.initiator).not.toBe(rb.initiator)
    expect(Buffer.from(ra.nI).equals(Buffer.from(rb.nI))).toBe(true)
    expect(Buffer.from(ra.nR).equals(Buffer.from(rb.nR))).toBe(true)
    expect(ra.nI[0]).toBe(PUNCH_FIRST_BYTE)
    // What follows the nonces reaches the next 'data' listener (libp2p's), in order.
    const got = new Promise<string>((resolve) => b.once('data', (d) => { resolve(d.toString()) }))
    a.write('after the nonce')
    expect(await got).toBe('after the nonce')
  })

  it('a punch dial answered by a listener (a responder nonce) initiates', () => {
    const own = new Uint8Array(32).fill(1)
    own[0] = PUNCH_FIRST_BYTE
    const reply = new Uint8Array(32).fill(0xff)
    const r = settleRoles(own, reply)
    expect(r).toEqual({ initiator: true, nI: own, nR: reply })
    expect(() => settleRoles(own, own)).toThrow(/own nonce/)
  })
})

/** A host with public discovery on loopback; every peer is a member. */
async function publicHost (n: number): Promise<WeftHost> {
  return await loopbackHost(n, stoppers, () => true)
}

/** The listening port, read before 127.0.0.0/8 turns public (a public listen address is announced only once confirmed). */
function portOf (h: WeftHost): number {
  const a = h.getMultiaddrs().find((m) => m.toString().includes('/tcp/'))
  return Number(a?.getComponents().find((c) => c.name === 'tcp')?.value)
}

/** The remote port B sees on its connection from A (A's source port). */
async function sourcePortSeen (a: WeftHost, b: WeftHost, bPort: number): Promise<number> {
  await a.dial(multiaddr(`/ip4/127.0.0.1/tcp/${bPort}/p2p/${b.peerId.toString()}`), { signal: AbortSignal.timeout(10_000) })
  await waitFor(() => b.getConnections(a.peerId).length > 0, 'B sees the connection from A', 10_000)
  const conn = b.getConnections(a.peerId)[0]
  return Number(conn?.remoteAddr.getComponents().find((c) => c.name === 'tcp')?.value)
}

describe.skipIf(process.platform !== 'linux' || socketCalls() === null)('dials from the listening port between libp2p hosts', () => {
  it('a dial to a public address leaves from the listening port, and the connection works', async () => {
    const [a, b] = [await publicHost(1), await publicHost(2)]
    const [pa, pb] = [portOf(a), portOf(b)]
    treatAsPublic(['127.0.0.0/8'])
    expect(await sourcePortSeen(a, b, pb)).toBe(pa)
    // A member: the dial settled punch roles with B's listener (we initiate) and the protected
    // handshake, noise, yamux and identify ran over it.
    const conn = a.getConnections(b.peerId)[0]
    expect(conn !== undefined && isProtectedConnection(conn)).toBe(true)
    await waitFor(async () => (await b.peerStore.get(a.peerId)).protocols.length > 0, 'identify over the connection', 10_000)
    expect(reusePortProblem()).toBeUndefined()
  })

  it('private addresses are dialled from an ephemeral port, as before', async () => {
    const [a, b] = [await publicHost(3), await publicHost(4)]
    expect(await sourcePortSeen(a, b, portOf(b))).not.toBe(portOf(a))
  })

  it('without the calls (WEFT_REUSEPORT=off) dials fall back to an ephemeral port and the problem is said', async () => {
    process.env.WEFT_REUSEPORT = 'off'
    const [a, b] = [await publicHost(5), await publicHost(6)]
    const [pa, pb] = [portOf(a), portOf(b)]
    treatAsPublic(['127.0.0.0/8'])
    expect(await sourcePortSeen(a, b, pb)).not.toBe(pa)
    expect(reusePortProblem()?.message).toMatch(/WEFT_REUSEPORT=off.*hole punching cannot work/)
  })
})
