import { afterEach, describe, expect, it } from 'vitest'
import { joinBody } from '../support/fixtures.js'
import { startNode, stopAll, waitFor, type TestNode } from './support.js'

const INTERVAL = 300

let nodes: TestNode[] = []
afterEach(async () => { await stopAll(nodes); nodes = [] })

describe('periodic anti-entropy when idle', () => {
  it('skips peers already in sync while nothing changes, and still delivers an event gossip never carried', async () => {
    const a = await startNode(1, [], { syncIntervalMs: INTERVAL })
    const b = await startNode(2, [a.addr], { syncIntervalMs: INTERVAL })
    const c = await startNode(3, [a.addr], { syncIntervalMs: INTERVAL })
    nodes = [a, b, c]
    await waitFor(() => nodes.every((x) => x.mesh.host.getPeers().length === 2), 'a full mesh')
    // Quiet now: over 12 intervals each node opens far fewer than 2 sessions per interval.
    await waitFor(() => nodes.every((x) => x.mesh.sync.stats.sessions > 0), 'first sessions')
    const before = nodes.map((x) => x.mesh.sync.stats.sessions)
    const t0 = Date.now()
    await new Promise((resolve) => setTimeout(resolve, 12 * INTERVAL))
    const rounds = (Date.now() - t0) / INTERVAL
    nodes.forEach((x, i) => {
      const sessions = x.mesh.sync.stats.sessions - (before[i] as number)
      // Without the skip: 2 peers × rounds. With it: about 2 × rounds / 6.
      expect(sessions).toBeLessThan(rounds)
    })
    // An event appended on C and never published (gossip lost) reaches A and B by periodic sync:
    // C changed, so C syncs with everyone at its next round.
    const ev = await c.replica.append('node.join', joinBody('gamma'), 1000)
    await waitFor(() => a.replica.log.has(ev.idHex) && b.replica.log.has(ev.idHex), 'the event everywhere', 3 * INTERVAL + 2_000)
    expect(a.replica.log.has(ev.idHex)).toBe(true)
  }, 60_000)

  it('opens no session with a peer whose presence digest says its log is ours, and syncs once the logs differ', async () => {
    const opts = { syncIntervalMs: INTERVAL, presenceIntervalMs: INTERVAL }
    const a = await startNode(1, [], opts)
    const b = await startNode(2, [a.addr], opts)
    const c = await startNode(3, [a.addr], opts)
    nodes = [a, b, c]
    for (const x of nodes) await x.mesh.publish([await x.replica.append('node.join', joinBody(`n${x.n}`), 1000 + x.n)])
    await waitFor(() => nodes.every((x) => x.replica.log.size === 3), 'every join everywhere')
    // Each node has heard every peer's digest of the 3-event log (a heartbeat after the last join).
    await waitFor(() => nodes.every((x) => nodes.every((y) => x === y || x.mesh.presence.digestOf(y.mesh.host.peerId.toString()) !== undefined)), 'digests heard')
    await new Promise((resolve) => setTimeout(resolve, 3 * INTERVAL))
    const before = nodes.map((x) => x.mesh.sync.stats.sessions)
    await new Promise((resolve) => setTimeout(resolve, 15 * INTERVAL))
    // The quiet skip alone would open a session with each peer every 6 rounds: 2 or more here.
    nodes.forEach((x, i) => { expect(x.mesh.sync.stats.sessions - (before[i] as number), `sessions opened by node ${x.n}`).toBe(0) })
    // An event appended on C and never published: C's digest changes, so sessions resume.
    const ev = await c.replica.append('node.join', joinBody('gamma'), 2000)
    await waitFor(() => a.replica.log.has(ev.idHex) && b.replica.log.has(ev.idHex), 'the event everywhere', 3 * INTERVAL + 5_000)
    expect(nodes.reduce((n, x, i) => n + x.mesh.sync.stats.sessions - (before[i] as number), 0)).toBeGreaterThan(0)
  }, 60_000)
})
