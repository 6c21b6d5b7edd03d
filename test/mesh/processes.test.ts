import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { readFile } from 'node:fs/promises'
import { formatToken, newToken } from '../../src/log/token.js'
import { agreed, spawnUp, startDaemon, summary, tempDir, waitFor, type DaemonProc } from './daemons.js'

/**
 * Real `weft up` processes on loopback: libp2p over TCP with pnet, LevelDB on disk, the HTTP
 * API. Discovery is by --peer (mDNS is covered by the network-namespace system test).
 */
describe('weft up processes on loopback', () => {
  // An open network (legacy weft1 token, no owner): these tests change settings through the
  // daemon's own key; authority is tested in test/mesh/authority.test.ts.
  const token = formatToken({ secret: newToken().secret })
  let root: { dir: string, cleanup: () => Promise<void> }
  const nodes: DaemonProc[] = []
  const others: DaemonProc[] = []

  beforeAll(async () => { root = await tempDir() })
  afterAll(async () => {
    await Promise.all([...nodes, ...others].map(async (d) => await d.stop()))
    await root.cleanup()
  })

  it('5 nodes started with a token and one bootstrap peer converge on members, roles and addresses', async () => {
    const first = await startDaemon({ token, dataDir: join(root.dir, 'n0'), name: 'n0' })
    nodes.push(first)
    const rest = await Promise.all([1, 2, 3, 4].map(async (i) => await startDaemon({ token, dataDir: join(root.dir, `n${i}`), name: `n${i}`, peers: [first.listen[0] as string] })))
    nodes.push(...rest)
    await waitFor(async () => await agreed(nodes, 5), '5 nodes to agree', 60_000)
    const s = await summary(first)
    expect(s.members.map((m) => m.hostname)).toEqual(['n0', 'n1', 'n2', 'n3', 'n4'])
    expect(new Set(s.members.map((m) => m.address)).size).toBe(5)
    // One cluster: the first to join is its k3s init server.
    expect(s.members.filter((m) => m.role === 'init')).toHaveLength(1)
    const status = await first.get('/api/v1/status')
    expect(status.peers.connected).toBeGreaterThanOrEqual(1)
    await waitFor(async () => (await first.get('/api/v1/status')).peers.online === 4, 'presence of the 4 others')
  }, 90_000)

  it('a settings change on one node reaches all of them', async () => {
    await nodes[2]?.put('/api/v1/settings/mtu', { value: '1380' })
    await waitFor(async () => (await Promise.all(nodes.map(async (d) => (await d.get('/api/v1/settings')).values.mtu))).every((v) => v === 1380), 'mtu 1380 everywhere', 30_000)
  }, 40_000)

  it('a late joiner catches up from nothing', async () => {
    for (let i = 0; i < 20; i++) await nodes[i % 5]?.put('/api/v1/settings/mtu', { value: String(1300 + i) })
    const late = await startDaemon({ token, dataDir: join(root.dir, 'late'), name: 'late', peers: [nodes[3]?.listen[0] as string] })
    others.push(late)
    await waitFor(async () => await agreed([...nodes, late], 6), 'the late joiner to agree', 60_000)
    const settings = await late.get('/api/v1/settings')
    expect(settings.values.mtu).toBe((await nodes[0]?.get('/api/v1/settings')).values.mtu)
  }, 90_000)

  it('a restarted node keeps its identity and its data', async () => {
    const n4 = nodes[4] as DaemonProc
    const before = await summary(n4)
    const idBefore = n4.peerId
    expect(await n4.stop()).toBe(0)
    const again = await startDaemon({ token, dataDir: n4.dataDir, name: 'n4', peers: [nodes[0]?.listen[0] as string] })
    nodes[4] = again
    expect(again.peerId).toBe(idBefore)
    const after = await summary(again)
    expect(after.events).toBeGreaterThanOrEqual(before.events)
    // Same identity, same join: still five members plus the late one, and no new address claim.
    expect(after.members.find((m) => m.hostname === 'n4')?.address).toBe(before.members.find((m) => m.hostname === 'n4')?.address)
    const appended = again.logs.filter((l) => l.msg === 'node agent appended an event')
    expect(appended).toEqual([])
  }, 60_000)

  it('a second daemon on the same data dir is refused with a clear message', async () => {
    const s = spawnUp({ token, dataDir: (nodes[1] as DaemonProc).dataDir, name: 'dup' })
    expect(await s.exited).toBe(2)
    expect(s.stderr()).toMatch(/already running on .*n1.*another --data-dir/)
  }, 30_000)

  it('a node with another token cannot connect, and its log says why', async () => {
    const stranger = await startDaemon({ token: formatToken(newToken()), dataDir: join(root.dir, 'stranger'), name: 'stranger', peers: [nodes[0]?.listen[0] as string] })
    others.push(stranger)
    await waitFor(() => stranger.logs.some((l) => /same network token/.test(String(l.msg))), 'the stranger to log why it cannot connect', 30_000)
    const peers = await nodes[0]?.get('/api/v1/peers')
    expect(peers.peers.map((p: { peerId: string }) => p.peerId)).not.toContain(stranger.peerId)
    await waitFor(async () => (await summary(stranger)).members.length === 1, 'the stranger to join its own network')
    expect((await summary(stranger)).members.map((m) => m.hostname)).toEqual(['stranger'])
    expect((await summary(nodes[0] as DaemonProc)).members.map((m) => m.hostname)).not.toContain('stranger')
  }, 40_000)

  it('api.token is private to the daemon user', async () => {
    const { stat } = await import('node:fs/promises')
    expect((await stat(join((nodes[0] as DaemonProc).dataDir, 'api.token'))).mode & 0o077).toBe(0)
    expect((await readFile(join((nodes[0] as DaemonProc).dataDir, 'api.json'), 'utf8'))).not.toContain((nodes[0] as DaemonProc).token)
  })
})
