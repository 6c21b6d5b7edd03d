import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdir, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { formatToken, newToken } from '../../src/log/token.js'
import { identityFromSeed } from '../../src/log/identity.js'
import { IDENTITY_FILE } from '../../src/adapters/identity-file.js'
import { startDaemon, tempDir, waitFor, type DaemonProc } from '../mesh/daemons.js'

/**
 * k3s roles with real `weft up` processes on loopback (issue 12): a quiet network reaches a
 * stable decision on its own (the agents' acknowledgements), and a node that was alone, whose
 * lamport-1 join sorts before the init master's, does not displace it once it syncs.
 */
interface ClusterView { cluster: string, status: string, master?: { author: string }, members: Array<{ author: string, hostname: string, role: string, stable: boolean }> }

async function roles (d: DaemonProc): Promise<ClusterView | undefined> {
  const s = await d.get('/api/v1/state')
  return (s.view.clusters as ClusterView[]).find((c) => c.cluster === 'default')
}

/** Every node shows `n` members, a stable decision for `master`, and every member's role stable. */
async function allStable (nodes: DaemonProc[], n: number, master: string): Promise<boolean> {
  const views = await Promise.all(nodes.map(roles))
  return views.every((v) => v !== undefined && v.status === 'stable' && v.master?.author === master && v.members.length === n && v.members.every((m) => m.stable))
}

describe('k3s roles between weft up processes', () => {
  const token = formatToken(newToken())
  let root: { dir: string, cleanup: () => Promise<void> }
  const nodes: DaemonProc[] = []
  let alphaAuthor = ''

  beforeAll(async () => { root = await tempDir('weft-roles-') })
  afterAll(async () => {
    await Promise.all(nodes.map(async (d) => await d.stop()))
    await root.cleanup()
  })

  it('liveness: 3 nodes started together reach a stable decision with no other traffic', async () => {
    const alpha = await startDaemon({ token, dataDir: join(root.dir, 'alpha'), name: 'alpha' })
    nodes.push(alpha)
    nodes.push(...await Promise.all(['beta', 'gamma'].map(async (n) => await startDaemon({ token, dataDir: join(root.dir, n), name: n, peers: [alpha.listen[0] as string] }))))
    alphaAuthor = (await alpha.get('/api/v1/status')).author as string
    // Generous: the bench measures the real figure (well under 2 s on loopback).
    await waitFor(async () => await allStable(nodes, 3, alphaAuthor), 'a stable decision on all 3 nodes', 30_000)
    const v = await roles(nodes[2] as DaemonProc)
    expect(v?.members.find((m) => m.hostname === 'alpha')?.role).toBe('init')
    // The joins waited for a first sync: the log says so.
    for (const d of nodes.slice(1)) expect(d.logs.some((l) => l.msg === 'first sync with a peer done: joining the network')).toBe(true)
  }, 60_000)

  it('regression: a node that was alone (its lamport-1 join sorts first) syncs, and alpha stays init, stable, everywhere', async () => {
    // A key that sorts before alpha's: at equal lamport, the smaller author comes first.
    let seed = randomBytes(32)
    while (identityFromSeed(seed).authorHex >= alphaAuthor) seed = randomBytes(32)
    const dir = join(root.dir, 'nine')
    await mkdir(dir, { recursive: true, mode: 0o700 })
    await writeFile(join(dir, IDENTITY_FILE), identityFromSeed(seed).exportPem(), { mode: 0o600 })
    // Alone: no peer, no mDNS, nothing known: it joins at once, at lamport 1, and makes itself init.
    let nine = await startDaemon({ token, dataDir: dir, name: 'nine' })
    const nineStatus = await nine.get('/api/v1/status')
    const nineAuthor = nineStatus.author as string
    expect(nineAuthor < alphaAuthor).toBe(true)
    await waitFor(async () => (await roles(nine))?.status === 'stable', 'nine alone to decide for itself')
    expect((await roles(nine))?.master?.author).toBe(nineAuthor)
    expect(nine.logs.some((l) => typeof l.msg === 'string' && l.msg.includes('joining the network alone'))).toBe(true)
    const events = await nine.get('/api/v1/events?limit=10')
    const join0 = (events.events as Array<{ type: string, lamport: number, author: string }>).find((e) => e.type === 'node.join' && e.author === nineStatus.peerId)
    expect(join0?.lamport).toBe(1)
    await nine.stop()
    // Back with a peer: it syncs; every node (nine included) shows alpha init, stable.
    nine = await startDaemon({ token, dataDir: dir, name: 'nine', peers: [nodes[0]?.listen[0] as string] })
    nodes.push(nine)
    await waitFor(async () => await allStable(nodes, 4, alphaAuthor), 'alpha stable init on all 4 nodes', 30_000)
    for (const d of nodes) {
      const v = await roles(d)
      expect(v?.members.find((m) => m.hostname === 'alpha')?.role).toBe('init')
      expect(v?.members.find((m) => m.hostname === 'nine')?.role).toBe('agent')
    }
  }, 90_000)
})
