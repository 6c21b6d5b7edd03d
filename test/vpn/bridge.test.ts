import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { formatToken, newToken } from '../../src/log/token.js'
import { startDaemon, summary, tempDir, waitFor, type DaemonProc } from '../mesh/daemons.js'
import { weft } from '../cli/helpers.js'

const why = process.getuid?.() !== 0 ? 'not root' : !existsSync('/dev/net/tun') ? 'no /dev/net/tun' : ''
if (why !== '') console.warn(`skipping the weft bridge test: ${why} (a bridge opens a TUN device)`)

/** `weft bridge`: a workstation joins as a client with an address on its own TUN device. */
describe.skipIf(why !== '')('weft bridge', () => {
  const token = formatToken(newToken())
  const procs: DaemonProc[] = []
  let dir: { dir: string, cleanup: () => Promise<void> } | undefined
  afterAll(async () => { await Promise.all(procs.map(async (p) => await p.stop())); await dir?.cleanup() })

  it('joins as a client: an overlay address on its device, no k3s role, nothing advertised', async () => {
    dir = await tempDir('weft-bridge-')
    const node = await startDaemon({ token, dataDir: join(dir.dir, 'node'), name: 'server1', extra: ['--advertise', '192.168.61.0/24'] })
    procs.push(node)
    const tunName = `wb${process.pid % 100000}`
    const bridge = await startDaemon({ token, dataDir: join(dir.dir, 'laptop'), name: 'laptop', command: 'bridge', peers: [node.listen[0] as string], extra: ['--tun-name', tunName] })
    procs.push(bridge)
    await waitFor(async () => (await summary(bridge)).members.length === 2 && (await summary(bridge)).members.every((m) => m.address !== undefined), 'the bridge to join and lease')
    const view = (await bridge.get('/api/v1/state')).view
    const me = view.members.find((m: { hostname: string }) => m.hostname === 'laptop')
    expect(me).toMatchObject({ requestedRole: 'client', role: 'none' })
    expect(view.routes.routes.filter((r: { kind: string, peerHost: string }) => r.kind === 'advertised').map((r: { peerHost: string }) => r.peerHost)).toEqual(['server1'])
    // Its device holds the address, and the server's advertised network is routed into it.
    await waitFor(() => execFileSync('ip', ['-4', 'addr', 'show', 'dev', tunName], { encoding: 'utf8' }).includes(`${me.address as string}/16`), 'the address on the bridge device')
    await waitFor(() => execFileSync('ip', ['route', 'show', 'dev', tunName], { encoding: 'utf8' }).includes('192.168.61.0/24'), 'the advertised route on the bridge device')
  }, 60_000)

  it('weft get-kubeconfig on a bridge says it is a bridge, and whose kubeconfig is missing (issue 17: not "this node")', async () => {
    const [node, bridge] = procs as [DaemonProc, DaemonProc]
    // server1 (no k3s here) is cluster default's stable init master; the bridge does not count.
    await waitFor(async () => (await bridge.get('/api/v1/state')).view.clusters.some((c: { cluster: string, status: string }) => c.cluster === 'default' && c.status === 'stable'), 'a stable master of cluster default')
    const r = await weft(['get-kubeconfig', '--data-dir', bridge.dataDir])
    expect(r.code).not.toBe(0)
    expect(r.stdout).toBe('')
    expect(r.stderr).toMatch(/this node is a bridge \(a client-only member\): it runs no k3s and holds no kubeconfig/)
    expect(r.stderr).toMatch(/the init master server1 of cluster default answered: no kubeconfig here yet: k3s is not running as a server of cluster default on this member \(weft up --k3s\)/)
    expect(r.stderr).not.toMatch(/on this node/)
    // A cluster nobody is in: the clusters that have a master are named.
    const other = await weft(['get-kubeconfig', '--data-dir', bridge.dataDir, '--cluster', 'nosuch'])
    expect(other.code).not.toBe(0)
    expect(other.stderr).toMatch(/this node is a bridge .*cluster nosuch has no members in the log .*ask one that has a master with --cluster <name> \(default\)/)
    // The master itself is no bridge: its own words.
    const own = await weft(['get-kubeconfig', '--data-dir', node.dataDir])
    expect(own.stderr).toMatch(/this node is the init master/)
    expect(own.stderr).not.toMatch(/bridge/)
  }, 60_000)
})
