import { afterEach, describe, expect, it } from 'vitest'
import { lpStream } from '@libp2p/utils'
import { encode } from 'cborg'
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

/**
 * Two linked nodes: `opener` (the larger peer id) opened their presence link, `other` did not,
 * so a stream `other` opens replaces the link without being replaced itself; `v3` the protocol.
 */
async function linkedPair (): Promise<{ other: TestNode, opener: TestNode, v3: string }> {
  const a = await startNode(1, [], { presenceIntervalMs: INTERVAL })
  const b = await startNode(2, [a.addr], { presenceIntervalMs: INTERVAL })
  nodes = [a, b]
  await waitFor('linked', 10_000, () => nodes.every((x) => x.mesh.presence.entries().some((e) => e.direct)))
  const [other, opener] = a.mesh.host.peerId.toString() < b.mesh.host.peerId.toString() ? [a, b] : [b, a]
  return { other, opener, v3: opener.mesh.host.getProtocols().find((p) => p.endsWith('/presence/3.0.0')) as string }
}

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
      // [null, [], seq, [seq, µs held], null]: ~12 bytes of CBOR; no keys, no vouches and no
      // digest (sent only when the log changed), whatever the network's size.
      expect(bytes / beats).toBeLessThanOrEqual(16)
    })

    // Adversarial: a member opens a presence stream and sends garbage. The link closes, the
    // receiver keeps running and still sees everyone else.
    const e = nodes[4] as TestNode
    const proto = a.mesh.host.getProtocols().find((p) => p.includes('/presence/'))
    expect(proto).toBeDefined()
    // The victim has the smaller peer id: the link is the other side's to open, and it accepts inbound streams.
    const victim = nodes.find((x) => x.mesh.host.peerId.toString() < e.mesh.host.peerId.toString()) as TestNode
    const stream = await e.mesh.host.dialProtocol(victim.mesh.host.peerId, proto as string)
    await lpStream(stream).write(new Uint8Array([0xff, 0x00, 0x13]))
    await waitFor('the garbage link to be closed', 5_000, () => stream.status !== 'open')
    expect(nodes.every((y) => y === victim || victim.mesh.presence.isOnline(author(y.n)))).toBe(true)
    // The opener links again on its next heartbeat.
    await waitFor('the link to come back', 5_000, () => victim.mesh.presence.entries().find((x) => x.author === author(e.n))?.direct === true)
  }, 60_000)

  it('measures each link\'s round trip from the heartbeats, at once for a new link, and sets it on the connection', async () => {
    // Heartbeats every 10 s: a round trip known within a few seconds came from the first
    // heartbeat's immediate answer, not from the next heartbeat.
    const a = await startNode(1, [], { presenceIntervalMs: 10_000 })
    const b = await startNode(2, [a.addr], { presenceIntervalMs: 10_000 })
    nodes = [a, b]
    await waitFor('both links measured', 5_000, () => nodes.every((x) => x.mesh.presence.entries().some((e) => e.rttMs !== undefined)))
    for (const [x, y] of [[a, b], [b, a]] as const) {
      const e = x.mesh.presence.entries().find((z) => z.author === author(y.n))
      expect(e?.rttMs).toBeGreaterThanOrEqual(0)
      expect(e?.rttMs).toBeLessThan(1_000) // loopback
      const conn = x.mesh.host.getConnections(y.mesh.host.peerId)[0]
      expect(conn?.rtt).toBe(e?.rttMs)
      expect(x.mesh.presence.carries(conn!)).toBe(true)
      expect(x.mesh.peers().find((p) => p.author === author(y.n))?.latencyMs).toBe(e?.rttMs)
    }
  }, 30_000)

  it('the side that did not open a link answers the opener\'s heartbeats instead of keeping its own time', async () => {
    const { other, opener } = await linkedPair()
    await new Promise((resolve) => setTimeout(resolve, 2 * INTERVAL))
    const before = [other, opener].map((x) => ({ ...x.mesh.presence.stats }))
    await new Promise((resolve) => setTimeout(resolve, 8 * INTERVAL))
    const [o, p] = [other, opener].map((x, i) => ({ beats: x.mesh.presence.stats.heartbeatsSent - (before[i]?.heartbeatsSent ?? 0), answers: x.mesh.presence.stats.answers - (before[i]?.answers ?? 0) }))
    // The opener keeps time (one heartbeat per interval, no answers); every heartbeat of the
    // other side is an answer to one of them (give or take the one in flight at each end).
    expect(p!.beats).toBeGreaterThanOrEqual(5)
    expect(p!.answers).toBe(0)
    expect(o!.answers).toBeGreaterThanOrEqual(o!.beats - 1)
    expect(Math.abs(o!.beats - p!.beats)).toBeLessThanOrEqual(1)
    expect(opener.mesh.presence.isOnline(author(other.n)) && other.mesh.presence.isOnline(author(opener.n))).toBe(true)
  }, 30_000)

  it('answers a member that floods heartbeats at most once per half interval', async () => {
    // The smaller peer id opens a second stream (it replaces the link on the other side, which
    // then answers on it) and sends 50 valid heartbeats at once.
    const { other, opener, v3 } = await linkedPair()
    const s = await other.mesh.host.dialProtocol(opener.mesh.host.peerId, v3)
    const lp = lpStream(s)
    await lp.write(encode([null, [], 0, null, null, null]))
    await waitFor('the flood\'s link attached', 5_000, () => opener.mesh.presence.stats.answers > 0)
    // Past half an interval since its last heartbeat, the first of the flood is answered.
    await new Promise((resolve) => setTimeout(resolve, INTERVAL))
    const before = opener.mesh.presence.stats.answers
    for (let seq = 1; seq <= 50; seq++) await lp.write(encode([null, [], seq, null, null, null]))
    await waitFor('the flood answered once', 5_000, () => opener.mesh.presence.stats.answers > before)
    await new Promise((resolve) => setTimeout(resolve, INTERVAL / 4))
    expect(s.status).toBe('open')
    expect(opener.mesh.presence.stats.answers - before).toBeLessThanOrEqual(2)
  }, 30_000)

  it('closes the connection of a peer whose presence link falls silent (a dead or stuck peer)', async () => {
    // The smaller peer id opens a second presence stream, which replaces the link on the other
    // side, and never sends on it: the link is silent while the connection stays open.
    const { other, opener, v3: proto } = await linkedPair()
    const silent = await other.mesh.host.dialProtocol(opener.mesh.host.peerId, proto)
    expect(silent.status).toBe('open')
    const conn = other.mesh.host.getConnections(opener.mesh.host.peerId).find((c) => c.streams.some((x) => x.id === silent.id))
    expect(conn).toBeDefined()
    await waitFor('the silent peer\'s connection closed', WINDOW + 2 * INTERVAL + 3_000, () => conn?.status !== 'open')
  }, 30_000)

  it('refuses a malformed v3 heartbeat (a digest of the wrong size, a negative seq, a bad or oversized diff) and still links a v2 peer', async () => {
    // Streams from the side that does not open links (the smaller peer id), so none is replaced.
    const { other, opener, v3 } = await linkedPair()
    const v2 = v3.replace('/3.0.0', '/2.0.0')
    const linked = (): boolean => opener.mesh.presence.entries().find((e) => e.author === author(other.n))?.direct === true
    const key = new Uint8Array(32)
    for (const bad of [[null, [], 0, null, new Uint8Array(7), null], [null, [], -1, null, null, null], [null, [], 0, [1], null, null], [null, [], 0, null, null, [[new Uint8Array(3)], []]], [null, [], 0, null, null, [Array(257).fill(key), []]], [null, []]]) {
      await waitFor('the link back', 5_000, linked)
      const s = await other.mesh.host.dialProtocol(opener.mesh.host.peerId, v3)
      await lpStream(s).write(encode(bad))
      await waitFor(`the link with ${JSON.stringify(bad)} closed`, 5_000, () => s.status !== 'open')
    }
    // An older node (v2) links: its 2-element heartbeats keep it online, with no round trip.
    const s = await other.mesh.host.dialProtocol(opener.mesh.host.peerId, v2)
    const lp = lpStream(s)
    for (let i = 0; i < 4; i++) {
      await lp.write(encode([null, []]))
      await new Promise((resolve) => setTimeout(resolve, INTERVAL))
    }
    expect(s.status).toBe('open')
    expect(opener.mesh.presence.isOnline(author(other.n))).toBe(true)
  }, 30_000)

  it('tells a change of the direct set as a diff: a node that goes costs each link one key, not the whole set', async () => {
    const a = await startNode(1, [], { presenceIntervalMs: INTERVAL })
    nodes = [a]
    for (const n of [2, 3, 4, 5, 6]) nodes.push(await startNode(n, [a.addr], { presenceIntervalMs: INTERVAL }))
    await waitFor('full mesh of presence links', 30_000, () => nodes.every((x) => x.mesh.presence.entries().filter((e) => e.direct).length === 5))
    await new Promise((resolve) => setTimeout(resolve, 2 * INTERVAL))
    const gone = nodes.pop() as TestNode
    const before = nodes.map((x) => x.mesh.presence.stats.directKeysSent)
    await gone.mesh.stop()
    await gone.replica.close()
    await waitFor('the others drop its link', 10_000, () => nodes.every((x) => x.mesh.presence.entries().filter((e) => e.direct).length === 4))
    await new Promise((resolve) => setTimeout(resolve, 3 * INTERVAL))
    // 4 links each: one removed key per link with diffs; whole sets would be 4 keys per link.
    nodes.forEach((x, i) => { expect(x.mesh.presence.stats.directKeysSent - (before[i] as number), `keys sent by node ${x.n}`).toBeLessThanOrEqual(4) })
    // And the views stay right: nobody holds the stopped node as a direct peer of another.
    await waitFor('the stopped node offline everywhere', WINDOW + INTERVAL + 3_000, () => nodes.every((x) => !x.mesh.presence.isOnline(author(gone.n))))
  }, 60_000)
})
