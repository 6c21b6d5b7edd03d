import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { PEER_BOOK_LIMITS, PeerBook } from '../../src/net/peer-book.js'
import { identityFromSeed } from '../../src/log/identity.js'
import { identity, memoryReplica } from '../support/fixtures.js'
import { startLoopbackMesh, startNode, stopAll, waitFor, type TestNode } from './support.js'

/** A distinct peer id per n (fixtures' identity(n) repeats after 256). */
const ID = (n: number): string => { const seed = new Uint8Array(32); seed[0] = n & 0xff; seed[1] = n >> 8; seed[2] = 7; return identityFromSeed(seed).peerId }

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'weft-book-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

describe('the peer book file', () => {
  it('keeps addresses across a reopen, newest peer first, without wildcards or bad entries', async () => {
    let t = 1_000
    const path = join(dir, 'peers.json')
    const book = await PeerBook.open(path, { now: () => t })
    book.add(ID(1), ['/ip4/192.0.2.1/tcp/4001', '/ip4/0.0.0.0/tcp/4001', 'not a multiaddr'])
    t = 2_000
    book.add(ID(2), [`/ip4/192.0.2.2/tcp/4001/p2p/${ID(2)}`])
    book.add('not-a-peer-id', ['/ip4/192.0.2.3/tcp/4001'])
    await book.flush()
    const again = await PeerBook.open(path, { now: () => t })
    expect(again.entries()).toEqual([
      { id: ID(2), addrs: ['/ip4/192.0.2.2/tcp/4001'], seen: 2_000 },
      { id: ID(1), addrs: ['/ip4/192.0.2.1/tcp/4001'], seen: 1_000 }
    ])
  })

  it('is bounded in peers (least recently seen dropped) and in addresses per peer', async () => {
    let t = 0
    const book = await PeerBook.open(join(dir, 'peers.json'), { now: () => ++t })
    for (let n = 0; n < PEER_BOOK_LIMITS.peers + 5; n++) book.add(ID(n), ['/ip4/192.0.2.1/tcp/1'])
    expect(book.entries()).toHaveLength(PEER_BOOK_LIMITS.peers)
    expect(book.entries().map((e) => e.id)).not.toContain(ID(0))
    book.add(ID(300), Array.from({ length: 20 }, (_, i) => `/ip4/192.0.2.1/tcp/${i + 1}`))
    expect(book.entries()[0]?.addrs).toHaveLength(PEER_BOOK_LIMITS.addrs)
  })

  it('a damaged file is an empty book and a warning, not a failed start', async () => {
    const path = join(dir, 'peers.json')
    await writeFile(path, '{"v":1,"peers":[{"id":3}]')
    const warnings: string[] = []
    const log = { debug: () => {}, info: () => {}, error: () => {}, warn: (_o: object, m: string) => { warnings.push(m) } }
    const book = await PeerBook.open(path, { now: () => 0, log })
    expect(book.entries()).toEqual([])
    expect(warnings.join()).toMatch(/peer book/)
  })
})

describe('a restarted node and its peer book', () => {
  let nodes: TestNode[] = []
  afterEach(async () => { await stopAll(nodes); nodes = [] })

  it('reconnects to the member it knew without --peer or mDNS', async () => {
    const a = await startNode(0, [])
    nodes.push(a)
    const path = join(dir, 'peers.json')
    const replica = await memoryReplica(1)
    const book = await PeerBook.open(path, { now: Date.now })
    const first = await startLoopbackMesh(identity(1), replica, [a.addr], { peerBook: book })
    await waitFor(() => book.entries().some((e) => e.id === a.mesh.host.peerId.toString()), 'the first run identified a through --peer and noted it')
    await first.stop()
    const saved = JSON.parse(await readFile(path, 'utf8')) as { peers: Array<{ id: string, addrs: string[] }> }
    expect(saved.peers.find((p) => p.id === a.mesh.host.peerId.toString())?.addrs).toContain(a.addr.replace(/\/p2p\/.*$/, ''))
    await waitFor(() => a.mesh.host.getPeers().length === 0, 'a saw the first run go')

    const second = await startLoopbackMesh(identity(1), replica, [], { peerBook: await PeerBook.open(path, { now: Date.now }) })
    try {
      await waitFor(() => second.host.getPeers().some((p) => p.equals(a.mesh.host.peerId)), 'the restarted node reconnected from its peer book', 10_000)
      // It dialled (a cannot know the new random port of the restarted node).
      expect(second.host.getConnections(a.mesh.host.peerId).some((c) => c.direction === 'outbound')).toBe(true)
    } finally {
      await second.stop()
      await replica.close()
    }
  })
})
