import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { RESOURCES } from '../../src/adapters/kube/client.js'
import { createHttpKubeClient } from '../../src/adapters/kube/http-client.js'
import { formatToken, newToken } from '../../src/log/token.js'
import { weft } from '../cli/helpers.js'
import { kubeconfigVia, startFakeKube, type FakeKube } from '../support/fake-kube.js'
import { startDaemon, tempDir, waitFor, type DaemonProc } from '../mesh/daemons.js'


/** `weft up --share-kube-api --allow` and `weft kube-proxy`, through real daemons. */
describe('sharing a cluster API server between daemons', () => {
  const token = formatToken(newToken())
  const procs: DaemonProc[] = []
  let fake: FakeKube | undefined
  let dir: { dir: string, cleanup: () => Promise<void> } | undefined
  afterAll(async () => {
    await Promise.all(procs.map(async (p) => await p.stop()))
    await fake?.close()
    await dir?.cleanup()
  })

  it('an allowed member reaches the API server through weft kube-proxy; another member is refused', async () => {
    dir = await tempDir('weft-kshare-')
    fake = await startFakeKube({ tls: true })
    const kubeconfig = join(dir.dir, 'east.kubeconfig')
    await fake.writeKubeconfig(kubeconfig)
    const a = await startDaemon({ token, dataDir: join(dir.dir, 'a'), name: 'alpha', extra: ['--cluster', 'east', '--share-kube-api', '--allow', 'beta', '--kubeconfig', kubeconfig] })
    procs.push(a)
    const b = await startDaemon({ token, dataDir: join(dir.dir, 'b'), name: 'beta', peers: [a.listen[0] as string], extra: ['--cluster', 'west'] })
    const c = await startDaemon({ token, dataDir: join(dir.dir, 'c'), name: 'gamma', peers: [a.listen[0] as string], extra: ['--cluster', 'west'] })
    procs.push(b, c)
    await waitFor(async () => (await b.get('/api/v1/state')).view.members.length === 3 && (await c.get('/api/v1/state')).view.members.length === 3, 'all three to know each other')

    const open = async (d: DaemonProc): Promise<string> => {
      const r = await weft(['kube-proxy', '--cluster', 'east', '--listen', '127.0.0.1:0', '--data-dir', d.dataDir, '--json'])
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
      return (JSON.parse(r.stdout) as { listen: string }).listen
    }
    const viaB = createHttpKubeClient(kubeconfigVia(fake, await open(b)))
    expect((await viaB.list(RESOURCES.namespaces)).items.map((n) => n.metadata.name)).toContain('kube-system')
    const viaC = createHttpKubeClient(kubeconfigVia(fake, await open(c)), { requestTimeoutMs: 10_000 })
    await expect(viaC.list(RESOURCES.namespaces)).rejects.toThrow()
    const shared = (await a.get('/api/v1/status')).kubeShare as { accepted: number, refused: number }
    expect(shared).toMatchObject({ accepted: 1 })
    expect(shared.refused).toBeGreaterThanOrEqual(1)
  }, 90_000)
})
