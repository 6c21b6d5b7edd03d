import { connect, createServer, type Server } from 'node:net'
import { Resolver } from 'node:dns/promises'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { RESOURCES, type KubeObject } from '../../src/adapters/kube/client.js'
import type { ServiceExport } from '../../src/adapters/kube/types.js'
import { formatToken, newToken } from '../../src/log/token.js'
import { startFakeKube, type FakeKube } from '../support/fake-kube.js'
import { startDaemon, tempDir, waitFor, type DaemonProc } from '../mesh/daemons.js'

/** A non-loopback address of this machine: what pods would reach the node at (--service-address). */
const hostIp = Object.values(networkInterfaces()).flat().find((a) => a !== undefined && !a.internal && a.family === 'IPv4')?.address

function echo (host: string, port: number, text: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const s = connect(port, host, () => { s.end(text) })
    let got = ''
    s.setEncoding('utf8').on('data', (d: string) => { got += d }).on('end', () => { resolve(got) }).on('error', reject)
  })
}

interface Slice { metadata: { namespace?: string, labels?: Record<string, string> }, endpoints?: Array<{ addresses: string[] }>, ports?: Array<{ port?: number }> }

/**
 * Two clusters, each a fake API server with a `weft up --kubeconfig` agent, joined over real
 * libp2p on loopback: a ServiceExport in cluster a becomes a ServiceImport and EndpointSlices in
 * cluster b, and a TCP connection to b's endpoint reaches the Service's backend in a.
 */
if (hostIp === undefined) console.log('skipping the two-cluster daemon test: this machine has no non-loopback IPv4 address for --service-address')
describe.skipIf(hostIp === undefined)('weft up --kubeconfig: multi-cluster services across two clusters', () => {
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
    const a = await startDaemon({ token, dataDir: join(dir.dir, 'a'), name: 'agent-a', extra: ['--kubeconfig', join(dir.dir, 'a.kubeconfig'), '--service-address', hostIp as string] })
    const b = await startDaemon({ token, dataDir: join(dir.dir, 'b'), name: 'agent-b', peers: [a.listen[0] as string], extra: ['--kubeconfig', join(dir.dir, 'b.kubeconfig'), '--service-address', hostIp as string, '--dns', '127.0.0.1:0'] })
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
    // A pod-reachable address, never loopback (a real API server refuses it).
    expect(host).toBe(hostIp)
    expect(await echo(host, port, 'GET / through the mesh')).toBe('GET / through the mesh')

    // By name, from a Kubernetes node of the importing cluster: b's DNS answers the ClusterSetIP
    // of b's ServiceImport (MCS DNS 2.3.1), where kube-proxy would balance over the slices.
    const status = await b.get('/api/v1/status') as { dns?: { listen: string[] } }
    const dnsPort = Number(/^udp:\/\/127\.0\.0\.1:(\d+)$/.exec(status.dns?.listen.find((l) => l.startsWith('udp://')) ?? '')?.[1])
    const resolver = new Resolver()
    resolver.setServers([`127.0.0.1:${dnsPort}`])
    let ips: string[] = []
    await waitFor(async () => {
      const si = await client.get<KubeObject & { spec: { ips?: string[] } }>(RESOURCES.serviceImports, 'shop', 'web')
      ips = await resolver.resolve4('web.shop.svc.clusterset.local').catch(() => [])
      return si?.spec.ips !== undefined && ips.length === 1 && ips[0] === si.spec.ips[0]
    }, 'b\'s DNS to answer the ClusterSetIP of its ServiceImport', 20_000)
    expect(ips[0]).toMatch(/^10\.43\./) // allocated by the fake's Service CIDR, as a real API server would
    // kube-proxy: ClusterSetIP → the selectorless Service with that IP → its EndpointSlices.
    const svc = (await client.list<KubeObject & { spec: { clusterIP?: string } }>(RESOURCES.services, 'shop')).items.find((x) => x.spec.clusterIP === ips[0])
    const backing = (await client.list<Slice>(RESOURCES.endpointSlices, 'shop', { labelSelector: `kubernetes.io/service-name=${svc?.metadata.name ?? ''}` })).items.find((x) => (x.endpoints?.length ?? 0) > 0)
    expect(await echo(backing?.endpoints?.[0]?.addresses[0] as string, backing?.ports?.[0]?.port as number, 'by name from a Kubernetes node')).toBe('by name from a Kubernetes node')
    // Per the KEP the exporting cluster imports too; its own endpoint connects locally.
    let own: Slice | undefined
    await waitFor(async () => {
      const slices = await fa.client().list<Slice>(RESOURCES.endpointSlices, 'shop', { labelSelector: 'multicluster.kubernetes.io/service-name=web' })
      own = slices.items.find((s) => (s.endpoints?.length ?? 0) > 0)
      return own !== undefined
    }, 'the EndpointSlice in cluster a', 20_000)
    expect(await echo(own?.endpoints?.[0]?.addresses[0] as string, own?.ports?.[0]?.port as number, 'inside a')).toBe('inside a')
    // The export in a is Valid and Ready, written back through the status subresource.
    const exp = await fa.client().get<ServiceExport>(RESOURCES.serviceExports, 'shop', 'web')
    expect(exp?.status?.conditions?.find((c) => c.type === 'Valid')?.status).toBe('True')
  }, 90_000)
})
