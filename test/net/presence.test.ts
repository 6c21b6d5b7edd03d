import { afterEach, describe, expect, it } from 'vitest'
import { lpStream } from '@libp2p/utils'
import { toHex } from '../../src/log/bytes.js'
import { identity } from '../support/fixtures.js'
import { startNode, stopAll, type TestNode } from './support.js'

/** Short heartbeats so the test runs in seconds; online = heard of within 3 of them. */
const INTERVAL = 300
const WINDOW = 3 * INTERVAL

const author = (n: number): string => toHex(identity(n).publicKey)

async function waitFor (what: string, timeoutMs: number, cond: () => boolean): Promise<number> {
  const t0 = Date.now()
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return Date.now() - t0
}

/** Mesh options refusing the given peers (by peer id string), both ways. */
function refusing (...peers: string[]): { denyPeer: (p: string) => boolean } {
  return { denyPeer: (p) => peers.includes(p) }
}

let nodes: TestNode[] = []
afterEach(async () => { await stopAll(nodes); nodes = [] })

describe('presence', () => {
  it('a stopped node is seen offline by every other within the deadline', async () => {
    const a = await startNode(1, [], { presenceIntervalMs: INTERVAL })
    nodes = [a]
    for (const n of [2, 3, 4]) nodes.push(await startNode(n, [a.addr], { presenceIntervalMs: INTERVAL }))
    await waitFor('all see all online', 20_000, () => nodes.every((x) => nodes.every((y) => x === y || x.mesh.presence.isOnline(author(y.n)))))
    const gone = nodes.pop() as TestNode
    await gone.mesh.stop()
    await gone.replica.close()
    // The deadline: the window, one heartbeat for the last vouch to age out, and slack for load.
    const took = await waitFor('all see the stopped node offline', WINDOW + INTERVAL + 3_000, () => nodes.every((x) => !x.mesh.presence.isOnline(author(gone.n))))
    expect(took).toBeLessThanOrEqual(WINDOW + INTERVAL + 3_000)
    // The others stay online.
    expect(nodes.every((x) => nodes.every((y) => x === y || x.mesh.presence.isOnline(author(y.n))))).toBe(true)
  }, 60_000)

  it('a node reachable only through another is online, and offline once the one between goes', async () => {
    // A — B — C: A and C refuse each other, so C is online to A only because B vouches.
    const b = await startNode(2, [], { presenceIntervalMs: INTERVAL })
    const a = await startNode(1, [b.addr], { presenceIntervalMs: INTERVAL, ...refusing(identity(3).peerId) })
    const c = await startNode(3, [b.addr], { presenceIntervalMs: INTERVAL, ...refusing(identity(1).peerId) })
    nodes = [a, b, c]
    await waitFor('A and C see each other online through B', 20_000, () => a.mesh.presence.isOnline(author(3)) && c.mesh.presence.isOnline(author(1)))
    expect(a.mesh.host.getConnections(c.mesh.host.peerId)).toHaveLength(0)
    const seenByA = a.mesh.presence.entries().find((e) => e.author === author(3))
    expect(seenByA?.direct).toBe(false)
    // It stays online over many windows (the vouches are refreshed, not a one-off).
    const until = Date.now() + 4 * WINDOW
    while (Date.now() < until) {
      expect(a.mesh.presence.isOnline(author(3))).toBe(true)
      await new Promise((resolve) => setTimeout(resolve, INTERVAL / 2))
    }
    // Without B nobody vouches for C: A sees both offline (ages only grow as they are passed on).
    nodes = [a, c]
    await b.mesh.stop()
    await b.replica.close()
    await waitFor('A sees B and C offline', WINDOW + INTERVAL + 3_000, () => !a.mesh.presence.isOnline(author(2)) && !a.mesh.presence.isOnline(author(3)))
  }, 60_000)

  it('idle heartbeats in a full mesh carry no per-node data, and a malformed one only closes that link', async () => {
    const a = await startNode(1, [], { presenceIntervalMs: INTERVAL })
    nodes = [a]
    for (const n of [2, 3, 4, 5]) nodes.push(await startNode(n, [a.addr], { presenceIntervalMs: INTERVAL }))
    await waitFor('full mesh of presence links', 30_000, () => nodes.every((x) => x.mesh.presence.entries().filter((e) => e.direct).length === 4))
    // Let direct sets settle, then measure over a window.
    await new Promise((resolve) => setTimeout(resolve, 2 * INTERVAL))
    const before = nodes.map((x) => ({ ...x.mesh.presence.stats }))
    await new Promise((resolve) => setTimeout(resolve, 4 * INTERVAL))
    nodes.forEach((x, i) => {
      const beats = x.mesh.presence.stats.heartbeatsSent - (before[i]?.heartbeatsSent ?? 0)
      const bytes = x.mesh.presence.stats.bytesSent - (before[i]?.bytesSent ?? 0)
      expect(beats).toBeGreaterThan(0)
      // [null, []]: 3 bytes of CBOR; no keys, no vouches, whatever the network's size.
      expect(bytes / beats).toBeLessThanOrEqual(3)
    })

    // Adversarial: a member opens a presence stream and sends garbage. The link closes, the
    // receiver keeps running and still sees everyone else.
    const e = nodes[4] as TestNode
    const proto = a.mesh.host.getProtocols().find((p) => p.includes('/presence/'))
    expect(proto).toBeDefined()
    // The victim has the smaller peer id, so it opened the link and accepts one inbound stream.
    const victim = nodes.find((x) => x.mesh.host.peerId.toString() < e.mesh.host.peerId.toString()) as TestNode
    const stream = await e.mesh.host.dialProtocol(victim.mesh.host.peerId, proto as string)
    await lpStream(stream).write(new Uint8Array([0xff, 0x00, 0x13]))
    await waitFor('the garbage link to be closed', 5_000, () => stream.status !== 'open')
    expect(nodes.every((y) => y === victim || victim.mesh.presence.isOnline(author(y.n)))).toBe(true)
    // The opener links again on its next heartbeat.
    await waitFor('the link to come back', 5_000, () => victim.mesh.presence.entries().find((x) => x.author === author(e.n))?.direct === true)
  }, 60_000)
})
