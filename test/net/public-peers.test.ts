import { afterEach, describe, expect, it } from 'vitest'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify, type Identify } from '@libp2p/identify'
import { ping, type Ping } from '@libp2p/ping'
import { multiaddr } from '@multiformats/multiaddr'
import type { WeftHost } from '../../src/net/host.js'
import { identifiers } from '../../src/log/token.js'
import { isPlainConnection } from '../../src/net/transport-protector.js'
import { joinBody, TEST_TOKEN } from '../support/fixtures.js'
import { loopbackHost, startNode, stopAll, waitFor, type TestNode } from './support.js'
import '../../src/net/polyfill.js'

/**
 * Per-connection negotiation (docs/mesh.md, "Beyond the LAN"): with public discovery a Weft host
 * talks to public libp2p nodes over plain connections that reach only public protocols, and to
 * members over the token-keyed protection; without it, plain libp2p gets nothing (as before).
 */

type Plain = Libp2p<{ identify: Identify, ping: Ping }>
const stoppers: Array<() => Promise<void>> = []
afterEach(async () => { await Promise.all(stoppers.splice(0).map(async (s) => { await s() })) })

async function plainNode (): Promise<Plain> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), ping: ping() }
  })
  stoppers.push(async () => { await n.stop() })
  return n
}

async function weft (n: number, pub: boolean, members: string[] = []): Promise<WeftHost> {
  return await loopbackHost(n, stoppers, pub ? (id) => members.includes(id) : undefined)
}

const ids = identifiers(TEST_TOKEN)

describe('plain libp2p nodes and a Weft host', () => {
  it('with public discovery: a public node connects plain, sees only public protocols, and cannot open ours', async () => {
    const w = await weft(0, true)
    await w.handle(ids.syncProtocol, (s) => { s.send(new Uint8Array([1])) })
    const p = await plainNode()
    const conn = await p.dial(w.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(5_000) })
    expect(await p.services.ping.ping(w.peerId, { signal: AbortSignal.timeout(5_000) })).toBeGreaterThanOrEqual(0)
    const seen = await p.services.identify.identify(conn, { signal: AbortSignal.timeout(5_000) })
    expect(seen.protocols.length).toBeGreaterThan(0)
    // Nothing of the network shows: not its protocols, not gossip, not its private DHT.
    expect(seen.protocols.filter((x) => x.includes(ids.networkId) || x.startsWith('/weft/') || x.includes('meshsub') || x.includes('/hop'))).toEqual([])
    const read = async (h: { dialProtocol: Plain['dialProtocol'] }): Promise<string> => await h.dialProtocol(w.peerId, ids.syncProtocol, { signal: AbortSignal.timeout(5_000) }).then(async (s) => {
      // Negotiation may succeed (the name is registered); the guard then aborts the stream unserved.
      for await (const _ of s) return 'data'
      return 'closed'
    }).catch(() => 'refused')
    expect(await read(p)).not.toBe('data')
    // Control: a member (protected connection) is served by the same handler.
    const m = await weft(1, true, [w.peerId.toString()])
    await m.dial(w.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(5_000) })
    expect(await read(m)).toBe('data')
    const wc = w.getConnections(p.peerId)[0]
    expect(wc !== undefined && isPlainConnection(wc)).toBe(true)
  })

  it('with public discovery: the Weft host dials a non-member plain, and a member protected', async () => {
    const p = await plainNode()
    const member = await weft(1, true)
    const w = await weft(0, true, [member.peerId.toString()])
    const pc = await w.dial(p.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(5_000) })
    expect(isPlainConnection(pc)).toBe(true)
    const mc = await w.dial(member.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(5_000) })
    expect(isPlainConnection(mc)).toBe(false)
    await waitFor(() => member.getConnections(w.peerId).length > 0, 'the member sees the connection')
    expect(isPlainConnection(member.getConnections(w.peerId)[0]!)).toBe(false)
  })

  it('without public discovery (air-gapped): a plain libp2p node gets no connection at all', async () => {
    const w = await weft(0, false)
    const p = await plainNode()
    await expect(p.dial(w.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(8_000) })).rejects.toThrow()
    expect(w.getConnections()).toHaveLength(0)
  })
})

describe('members with public discovery on', () => {
  let nodes: TestNode[] = []
  afterEach(async () => { await stopAll(nodes); nodes = [] })

  it('connect protected through --peer and agree on the log', async () => {
    const a = await startNode(0, [], { public: { bootstrap: [] } })
    const b = await startNode(1, [a.addr], { public: { bootstrap: [] } })
    nodes.push(a, b)
    await waitFor(() => b.mesh.host.getPeers().length >= 1, 'b connected')
    for (const t of nodes) await t.mesh.publish([await t.replica.append('node.join', joinBody(`n${t.n}`), Date.now())])
    await waitFor(() => nodes.every((t) => t.replica.log.size === 2), 'both events on both nodes')
    expect(b.mesh.host.getConnections().every((c) => !isPlainConnection(c))).toBe(true)
  })

  it('count a plain public connection apart: not a peer, not connected (a non-member met through public discovery)', async () => {
    const a = await startNode(0, [], { public: { bootstrap: [] } })
    const b = await startNode(1, [a.addr], { public: { bootstrap: [] } })
    nodes.push(a, b)
    await waitFor(() => a.mesh.peers().some((x) => x.peerId === b.mesh.host.peerId.toString() && x.connected), 'b a connected peer of a')
    const p = await plainNode()
    await p.dial(multiaddr(a.addr), { signal: AbortSignal.timeout(5_000) })
    await waitFor(() => a.mesh.publicConnections() === 1, 'the plain connection seen by a')
    expect(a.mesh.host.getConnections(p.peerId).length).toBeGreaterThan(0)
    expect(a.mesh.peers().map((x) => x.peerId)).not.toContain(p.peerId.toString())
    expect(a.mesh.peers().filter((x) => x.connected)).toHaveLength(1)
  })

  it('replace a plain connection from a peer they hold to be a member with a protected one (it dialled before it knew)', async () => {
    // A does not know B yet, so A's dial is plain; B holds A to be a member (its log says so here).
    const a = await startNode(0, [], { public: { bootstrap: [] } })
    const aId = a.mesh.host.peerId.toString()
    const b = await startNode(1, [], { public: { bootstrap: [] }, isLogMember: (id) => id === aId })
    nodes.push(a, b)
    const ev = await a.replica.append('node.join', joinBody('alpha'), Date.now())
    const first = await a.mesh.host.dial(multiaddr(b.addr), { signal: AbortSignal.timeout(5_000) })
    expect(isPlainConnection(first)).toBe(true)
    // B closes it and dials A protected: the sync protocol runs and B gets A's event.
    await waitFor(() => b.replica.log.has(ev.idHex), 'A\'s event on B over a protected connection')
    const conns = b.mesh.host.getConnections(a.mesh.host.peerId)
    expect(conns.length).toBeGreaterThan(0)
    expect(conns.every((c) => !isPlainConnection(c))).toBe(true)
    expect(first.status).not.toBe('open')
  })
})
