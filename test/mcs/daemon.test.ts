import { connect, createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { RESOURCES } from '../../src/adapters/kube/client.js'
import type { ServiceExport } from '../../src/adapters/kube/types.js'
import { formatToken, newToken } from '../../src/log/token.js'
import { startFakeKube, type FakeKube } from '../support/fake-kube.js'
import { startDaemon, tempDir, waitFor, type DaemonProc } from '../mesh/daemons.js'

interface Slice { metadata: { namespace?: string, labels?: Record<string, string> }, endpoints?: Array<{ addresses: string[] }>, ports?: Array<{ port?: number }> }

/**
 * Two clusters, each a fake API server with a `weft up --kubeconfig` agent, joined over real
 * libp2p on loopback: a ServiceExport in cluster a becomes a ServiceImport and EndpointSlices in
 * cluster b, and a TCP connection to b's endpoint reaches the Service's backend in a.
 */
describe('weft up --kubeconfig: multi-cluster services across two clusters', () => {
  const token = formatToken(newToken())
  const procs: DaemonProc[] = []
  const fakes: FakeKube[] = []
  let backend: Server | undefined
  let dir: { dir: string, cleanup: () => Promise<void> } | undefined
  afterAll(async () => {
    await Promise.all(procs.map(async (p) => await p.stop()))
    await Promise.all(fakes.map(async (f) => { await f.close() }))
    await new Promise<void>((resolve) => { if (backend === undefined) resolve(); else backend.close(() => { resolve() }) })
    await dir?.cleanup()
  })

  it('exports in a, imports in b, and carries a TCP connection from b to the backend in a', async () => {
    dir = await tempDir('weft-mcs-')
    backend = createServer((s) => { s.pipe(s) })
    await new Promise<void>((resolve) => backend?.listen(0, '127.0.0.1', resolve))
    const backendPort = (backend.address() as { port: number }).port
    const uidA = '0b7e2c9a-5d1f-4c3e-9a8b-7f6e5d4c3b2a'
    const [fa, fb] = [await startFakeKube({ namespaces: ['default', 'kube-system', 'shop'], kubeSystemUid: uidA }), await startFakeKube({ namespaces: ['default', 'kube-system', 'shop'] })]
    fakes.push(fa, fb)
    await fa.writeKubeconfig(join(dir.dir, 'a.kubeconfig'))
    await fb.writeKubeconfig(join(dir.dir, 'b.kubeconfig'))
    // No --cluster: the cluster id comes from Kubernetes (KEP-2149): b has a ClusterProperty,
    // a falls back to its kube-system namespace's uid.
    fb.put(RESOURCES.clusterProperties, { apiVersion: 'about.k8s.io/v1alpha1', kind: 'ClusterProperty', metadata: { name: 'cluster.clusterset.k8s.io' }, spec: { value: 'east' } })
    const a = await startDaemon({ token, dataDir: join(dir.dir, 'a'), name: 'agent-a', extra: ['--kubeconfig', join(dir.dir, 'a.kubeconfig')] })
    const b = await startDaemon({ token, dataDir: join(dir.dir, 'b'), name: 'agent-b', peers: [a.listen[0] as string], extra: ['--kubeconfig', join(dir.dir, 'b.kubeconfig')] })
    procs.push(a, b)
    expect((await a.get('/api/v1/status')).cluster).toBe(uidA)
    expect((await b.get('/api/v1/status')).cluster).toBe('east')
    // The Service's cluster IP stands in for a real one: here it is where the backend listens.
    fa.put(RESOURCES.services, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { type: 'ClusterIP', clusterIP: '127.0.0.1', ports: [{ name: 'http', protocol: 'TCP', port: backendPort }] } })
    fa.put(RESOURCES.serviceExports, { apiVersion: 'multicluster.x-k8s.io/v1beta1', kind: 'ServiceExport', metadata: { name: 'web', namespace: 'shop' } })

    const client = fb.client()
    await waitFor(async () => (await client.get(RESOURCES.serviceImports, 'shop', 'web')) !== undefined, 'the ServiceImport in cluster b', 20_000)
    let slice: Slice | undefined
    await waitFor(async () => {
      const slices = await client.list<Slice>(RESOURCES.endpointSlices, 'shop', { labelSelector: 'multicluster.kubernetes.io/service-name=web' })
      slice = slices.items.find((s) => s.metadata.labels?.['multicluster.kubernetes.io/source-cluster'] === uidA && (s.endpoints?.length ?? 0) > 0)
      return slice !== undefined
    }, 'an EndpointSlice for cluster a in cluster b', 20_000)
    const host = slice?.endpoints?.[0]?.addresses[0] as string
    const port = slice?.ports?.[0]?.port as number
    expect(host).toBe('127.0.0.1')
    const reply = await new Promise<string>((resolve, reject) => {
      const s = connect(port, host, () => { s.end('GET / through the mesh') })
      let got = ''
      s.setEncoding('utf8').on('data', (d: string) => { got += d }).on('end', () => { resolve(got) }).on('error', reject)
    })
    expect(reply).toBe('GET / through the mesh')
    // Per the KEP the exporting cluster imports too; its own endpoint connects locally.
    let own: Slice | undefined
    await waitFor(async () => {
      const slices = await fa.client().list<Slice>(RESOURCES.endpointSlices, 'shop', { labelSelector: 'multicluster.kubernetes.io/service-name=web' })
      own = slices.items.find((s) => (s.endpoints?.length ?? 0) > 0)
      return own !== undefined
    }, 'the EndpointSlice in cluster a', 20_000)
    const ownReply = await new Promise<string>((resolve, reject) => {
      const s = connect(own?.ports?.[0]?.port as number, own?.endpoints?.[0]?.addresses[0] as string, () => { s.end('inside a') })
      let got = ''
      s.setEncoding('utf8').on('data', (d: string) => { got += d }).on('end', () => { resolve(got) }).on('error', reject)
    })
    expect(ownReply).toBe('inside a')
    // The export in a is Valid and Ready, written back through the status subresource.
    const exp = await fa.client().get<ServiceExport>(RESOURCES.serviceExports, 'shop', 'web')
    expect(exp?.status?.conditions?.find((c) => c.type === 'Valid')?.status).toBe('True')
  }, 90_000)
})
