import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { formatToken, newToken } from '../../src/log/token.js'
import { startDaemon, summary, tempDir, waitFor, type DaemonProc } from '../mesh/daemons.js'

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
})
