import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { formatToken, k3sClusterToken, newToken } from '../../src/log/token.js'
import { weft } from '../cli/helpers.js'
import { startDaemon, tempDir, waitFor, type DaemonProc } from '../mesh/daemons.js'

const FAKE = fileURLToPath(new URL('./fake-k3s.mjs', import.meta.url))
const root = process.getuid?.() === 0
const tun = existsSync('/dev/net/tun')
const why = !root ? 'not root' : !tun ? 'no /dev/net/tun' : ''
if (why !== '') console.warn(`skipping the daemon k3s test: ${why} (it needs a TUN device)`)

/**
 * `weft up --k3s` end to end, with the stand-in k3s binary: the daemon waits for a stable
 * decision, then starts `k3s server --cluster-init` on its overlay address over weft0, with the
 * cluster token in a 0600 config file and nowhere in the log; `weft get-kubeconfig` fetches the
 * kubeconfig from it over the mesh with the server rewritten to the overlay address.
 */
describe.skipIf(why !== '')('weft up --k3s', () => {
  const token = newToken()
  let dir: { dir: string, cleanup: () => Promise<void> } | undefined
  let node: DaemonProc | undefined
  afterAll(async () => { await node?.stop(); await dir?.cleanup() })

  it('starts k3s as the init server once the decision is stable, and serves its kubeconfig to members', async () => {
    dir = await tempDir('weft-k3s-')
    const record = join(dir.dir, 'k3s-record.jsonl')
    const tunName = `wk${process.pid % 100000}`
    process.env.FAKE_K3S_RECORD = record
    node = await startDaemon({ token: formatToken(token), dataDir: join(dir.dir, 'n'), name: 'k1', tun: true, extra: ['--tun-name', tunName, '--k3s', '--k3s-bin', FAKE, '--k3s-kubeconfig', join(dir.dir, 'k3s.yaml'), '--k3s-arg=--disable=traefik'] })
    const starts = async (): Promise<Array<{ event: string, argv: string[], config: Record<string, unknown>, configMode: string }>> =>
      existsSync(record) ? (await readFile(record, 'utf8')).trim().split('\n').map((l) => JSON.parse(l)) : []
    await waitFor(async () => (await starts()).length > 0, 'the stand-in k3s to start', 40_000)
    const address = (await node.get('/api/v1/status')).self.address as string
    const [first] = await starts()
    expect(first?.argv).toEqual(['server', '--config', join(node.dataDir, 'k3s', 'config.yaml'), '--cluster-init', '--node-ip', address, '--flannel-iface', tunName, '--tls-san', address, '--disable=traefik'])
    expect(first?.configMode).toBe('600')
    const clusterToken = k3sClusterToken(token, 'default')
    expect(first?.config.token).toBe(clusterToken)
    const events = await weft(['log', 'export', '--data-dir', node.dataDir])
    expect(events.code).toBe(0)
    expect(events.stdout).not.toContain(clusterToken)

    // The daemon holds the data dir, so the CLI asks it through its API; the stand-in k3s writes
    // its kubeconfig a moment after it starts, and until then the answer says so.
    const fetchIt = async (): Promise<Awaited<ReturnType<typeof weft>>> => await weft(['get-kubeconfig', '--data-dir', node?.dataDir ?? ''], { env: { WEFT_TOKEN: formatToken(token) } })
    let kube = await fetchIt()
    await waitFor(async () => {
      if (kube.code === 0) return true
      expect(kube.stderr).toMatch(/has not written a kubeconfig yet/)
      kube = await fetchIt()
      return kube.code === 0
    }, 'the kubeconfig through the daemon', 20_000)
    expect(kube.stderr).toBe('')
    expect(kube.code).toBe(0)
    expect(kube.stdout).toContain(`server: https://${address}:6443`)
  }, 90_000)
})
