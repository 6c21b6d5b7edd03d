import { afterEach, describe, expect, it } from 'vitest'
import { RESOURCES, type KubeObject } from '../../src/adapters/kube/client.js'
import type { EndpointSlice, Service, ServiceImport } from '../../src/adapters/kube/types.js'
import { derivedServiceName } from '../../src/node/mcs/names.js'
import { condition, conditionsOf, startClusters, stopClusters, waitFor, type McsCluster } from './support.js'

let clusters: McsCluster[] = []
afterEach(async () => { await stopClusters(clusters); clusters = [] })

const NS = 'default'

function putService (c: McsCluster, name: string, spec: Service['spec'], namespace = NS): void {
  c.fake.put(RESOURCES.services, { metadata: { name, namespace }, spec })
}

function putExport (c: McsCluster, name: string, namespace = NS, spec: Record<string, unknown> = {}): void {
  c.fake.put(RESOURCES.serviceExports, { metadata: { name, namespace }, spec })
}

function serviceImport (c: McsCluster, name: string, namespace = NS): ServiceImport | undefined {
  return c.fake.get<ServiceImport>(RESOURCES.serviceImports, namespace, name)
}

function slices (c: McsCluster, name: string, namespace = NS): EndpointSlice[] {
  return c.fake.objects<EndpointSlice>(RESOURCES.endpointSlices, namespace)
    .filter((s) => s.metadata.labels?.['multicluster.kubernetes.io/service-name'] === name)
}

describe('McsAgent (two clusters, two fake API servers, replicated logs)', () => {
  it('exports a ServiceExport: ServiceImport, derived Service and EndpointSlices in both clusters; unexport removes them', async () => {
    clusters = await startClusters()
    const [east, west] = clusters as [McsCluster, McsCluster]
    putService(east, 'web', { type: 'ClusterIP', clusterIP: '10.43.0.10', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }], sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } } })
    putExport(east, 'web', NS, { exportedLabels: { tier: 'front' } })

    for (const c of [east, west]) {
      await waitFor(() => serviceImport(c, 'web') !== undefined && slices(c, 'web').length === 1 && c.fake.get(RESOURCES.services, NS, derivedServiceName(NS, 'web')) !== undefined, `imports in ${c.name}`)
      const si = serviceImport(c, 'web') as ServiceImport
      expect(si.metadata.labels).toEqual({ tier: 'front', 'app.kubernetes.io/managed-by': 'weft' })
      expect(si.spec).toMatchObject({ type: 'ClusterSetIP', ports: [{ name: 'http', protocol: 'TCP', port: 80 }], sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } } })
      await waitFor(() => serviceImport(c, 'web')?.status?.clusters !== undefined, 'status.clusters')
      expect(serviceImport(c, 'web')?.status?.clusters).toEqual([{ cluster: 'east' }])
      const svc = c.fake.get<Service>(RESOURCES.services, NS, derivedServiceName(NS, 'web')) as Service
      expect(svc.metadata.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'weft', 'multicluster.kubernetes.io/service-name': 'web' })
      expect(svc.spec?.selector).toBeUndefined()
      expect(svc.spec?.ports).toEqual([{ name: 'http', protocol: 'TCP', port: 80, targetPort: 80 }])
      const [slice] = slices(c, 'web') as [EndpointSlice]
      expect(slice.metadata.labels).toMatchObject({
        'multicluster.kubernetes.io/source-cluster': 'east',
        'endpointslice.kubernetes.io/managed-by': 'weft.io',
        'kubernetes.io/service-name': derivedServiceName(NS, 'web')
      })
      expect(slice.addressType).toBe('IPv4')
      expect(slice.endpoints.map((e) => e.addresses)).toEqual([['192.0.2.10']])
      expect(slice.ports?.[0]?.name).toBe('http')
      expect(c.listeners).toEqual(new Set(['default/web/80']))
    }
    await waitFor(() => condition(east, NS, 'web', 'Ready') === 'True/Exported', 'Ready=True on the export')
    expect(conditionsOf(east, NS, 'web')).toMatchObject({ Valid: { status: 'True', reason: 'Valid' }, Conflict: { status: 'False', reason: 'NoConflicts' } })

    // The API server allocates the derived Service's clusterIP: it becomes spec.ips.
    const derived = west.fake.get<Service>(RESOURCES.services, NS, derivedServiceName(NS, 'web')) as Service
    west.fake.put(RESOURCES.services, { ...derived, spec: { ...derived.spec, clusterIP: '10.96.7.7' } })
    await waitFor(() => serviceImport(west, 'web')?.spec.ips?.[0] === '10.96.7.7', 'spec.ips from the derived clusterIP')

    // Unexport: the ServiceExport goes; everything Weft created goes, in both clusters.
    east.fake.remove(RESOURCES.serviceExports, NS, 'web')
    for (const c of [east, west]) {
      await waitFor(() => serviceImport(c, 'web') === undefined && slices(c, 'web').length === 0 && c.fake.get(RESOURCES.services, NS, derivedServiceName(NS, 'web')) === undefined, `cleanup in ${c.name}`)
      await waitFor(() => c.listeners.size === 0, 'listener closed')
    }
    expect(east.fake.get(RESOURCES.services, NS, 'web')).toBeDefined() // the exported Service itself stays
    expect(east.replica.states().network.services.exports.size).toBe(0)
  })

  it('the last exporting cluster leaving the network removes the imports everywhere else', async () => {
    clusters = await startClusters()
    const [east, west] = clusters as [McsCluster, McsCluster]
    putService(east, 'api', { type: 'ClusterIP', clusterIP: '10.43.0.11', ports: [{ protocol: 'TCP', port: 443 }] })
    putExport(east, 'api')
    await waitFor(() => serviceImport(west, 'api') !== undefined && slices(west, 'api').length === 1, 'the import in west')
    // east's agent node leaves (its cluster has no member left): nothing exports api any more.
    await east.replica.append('node.leave', { reason: 'decommissioned' }, Date.now())
    await waitFor(() => serviceImport(west, 'api') === undefined && slices(west, 'api').length === 0 && west.fake.get(RESOURCES.services, NS, derivedServiceName(NS, 'api')) === undefined, 'cleanup in west')
  })

  it('a Service that goes unexports; one that comes back exports again', async () => {
    clusters = await startClusters()
    const [east, west] = clusters as [McsCluster, McsCluster]
    putService(east, 'api', { ports: [{ protocol: 'TCP', port: 443 }] })
    putExport(east, 'api')
    await waitFor(() => serviceImport(west, 'api') !== undefined, 'import in west')
    east.fake.remove(RESOURCES.services, NS, 'api')
    await waitFor(() => serviceImport(west, 'api') === undefined, 'import gone in west')
    await waitFor(() => condition(east, NS, 'api', 'Valid') === 'False/NoService', 'NoService')
    putService(east, 'api', { ports: [{ protocol: 'TCP', port: 443 }] })
    await waitFor(() => serviceImport(west, 'api') !== undefined && condition(east, NS, 'api', 'Valid') === 'True/Valid', 'exported again')
  })

  it('conflicts: ports are unioned, the oldest type wins, Conflict=True on both exports', async () => {
    clusters = await startClusters()
    const [east, west] = clusters as [McsCluster, McsCluster]
    // Ports: east exports 80, then west exports 81.
    putService(east, 'web', { ports: [{ name: 'a', protocol: 'TCP', port: 80 }] })
    putExport(east, 'web')
    await waitFor(() => serviceImport(west, 'web') !== undefined, 'east export imported')
    putService(west, 'web', { ports: [{ name: 'b', protocol: 'TCP', port: 81 }] })
    putExport(west, 'web')
    for (const c of [east, west]) {
      await waitFor(() => serviceImport(c, 'web')?.spec.ports.length === 2 && serviceImport(c, 'web')?.status?.clusters?.length === 2 && slices(c, 'web').length === 2, `union in ${c.name}`)
      expect(serviceImport(c, 'web')?.spec.ports.map((p) => p.port)).toEqual([80, 81])
      // Each cluster's slice carries only the ports that cluster exports.
      const bySource = Object.fromEntries(slices(c, 'web').map((s) => [s.metadata.labels?.['multicluster.kubernetes.io/source-cluster'], s.ports?.map((p) => p.name)]))
      expect(bySource).toEqual({ east: ['a'], west: ['b'] })
    }
    for (const c of [east, west]) await waitFor(() => condition(c, NS, 'web', 'Conflict') === 'True/PortConflict', `PortConflict on ${c.name}'s export`)

    // Types: east exports db as Headless first, west as ClusterSetIP.
    putService(east, 'db', { clusterIP: 'None', ports: [{ protocol: 'TCP', port: 5432 }] })
    putExport(east, 'db')
    await waitFor(() => serviceImport(west, 'db') !== undefined, 'east db imported')
    putService(west, 'db', { clusterIP: '10.43.1.1', ports: [{ protocol: 'TCP', port: 5432 }] })
    putExport(west, 'db')
    for (const c of [east, west]) await waitFor(() => condition(c, NS, 'db', 'Conflict') === 'True/TypeConflict', `TypeConflict on ${c.name}'s export`)
    expect(condition(west, NS, 'db', 'Ready')).toBe('False/Failed')
    expect(condition(east, NS, 'db', 'Ready')).toBe('True/Exported')
    for (const c of [east, west]) {
      expect(serviceImport(c, 'db')?.spec.type).toBe('Headless')
      expect(serviceImport(c, 'db')?.status?.clusters).toEqual([{ cluster: 'east' }])
      expect(c.fake.get<Service>(RESOURCES.services, NS, derivedServiceName(NS, 'db'))?.spec?.clusterIP).toBe('None')
    }
  })

  it('ExternalName → Valid=False InvalidServiceType; no Service → Valid=False NoService; neither is exported', async () => {
    clusters = await startClusters()
    const [east, west] = clusters as [McsCluster, McsCluster]
    putService(east, 'ext', { type: 'ExternalName', externalName: 'example.com' })
    putExport(east, 'ext')
    putExport(east, 'ghost')
    await waitFor(() => condition(east, NS, 'ext', 'Valid') === 'False/InvalidServiceType', 'InvalidServiceType')
    await waitFor(() => condition(east, NS, 'ghost', 'Valid') === 'False/NoService', 'NoService')
    expect(condition(east, NS, 'ext', 'Ready')).toBe('False/Failed')
    await east.agent.idle()
    await west.agent.idle()
    expect(east.replica.states().network.services.exports.size).toBe(0)
    expect(serviceImport(west, 'ext')).toBeUndefined()
    expect(serviceImport(east, 'ghost')).toBeUndefined()
  })

  it('never touches an object without Weft\'s label: it is left alone and reported', async () => {
    clusters = await startClusters()
    const [east, west] = clusters as [McsCluster, McsCluster]
    west.fake.put(RESOURCES.serviceImports, { metadata: { name: 'web', namespace: NS }, spec: { type: 'ClusterSetIP', ports: [{ port: 1 }] } })
    const before = serviceImport(west, 'web') as ServiceImport
    putService(east, 'web', { ports: [{ protocol: 'TCP', port: 80 }] })
    putExport(east, 'web')
    await waitFor(() => serviceImport(east, 'web') !== undefined, 'import in east')
    await waitFor(() => west.agent.status().foreign.some((f) => f.kind === 'ServiceImport' && f.name === 'web'), 'reported in west')
    const after = serviceImport(west, 'web') as ServiceImport
    expect(after.metadata.resourceVersion).toBe(before.metadata.resourceVersion)
    expect(after.spec.ports).toEqual([{ port: 1 }])
    expect(slices(west, 'web')).toEqual([])
    // Unexport: the foreign object still stays.
    east.fake.remove(RESOURCES.serviceExports, NS, 'web')
    await waitFor(() => serviceImport(east, 'web') === undefined, 'gone in east')
    await west.agent.idle()
    expect(serviceImport(west, 'web')?.metadata.resourceVersion).toBe(before.metadata.resourceVersion)
  })

  it('imports only where the namespace exists', async () => {
    clusters = await startClusters()
    const [east, west] = clusters as [McsCluster, McsCluster]
    east.fake.put(RESOURCES.namespaces, { metadata: { name: 'shop' } })
    putService(east, 'cart', { ports: [{ protocol: 'TCP', port: 80 }] }, 'shop')
    putExport(east, 'cart', 'shop')
    await waitFor(() => serviceImport(east, 'cart', 'shop') !== undefined, 'import in east')
    await west.agent.idle()
    expect(west.agent.status().imports).toEqual([])
    west.fake.put(RESOURCES.namespaces, { metadata: { name: 'shop' } })
    await waitFor(() => serviceImport(west, 'cart', 'shop') !== undefined, 'import in west once the namespace exists')
  })

  it('retries a status write that meets 409 Conflict, and an API error, until it lands', async () => {
    clusters = await startClusters()
    const [east, west] = clusters as [McsCluster, McsCluster]
    east.fake.failNext({ verb: 'update-status', resource: 'serviceexports' }, 409, { times: 2 })
    west.fake.failNext({ verb: 'create', resource: 'serviceimports' }, 503, { times: 1 })
    putService(east, 'web', { ports: [{ protocol: 'TCP', port: 80 }] })
    putExport(east, 'web')
    await waitFor(() => condition(east, NS, 'web', 'Ready') === 'True/Exported', 'Ready despite the 409s')
    await waitFor(() => serviceImport(west, 'web') !== undefined, 'import in west despite the 503')
    expect(east.fake.count('update-status', 'serviceexports')).toBeGreaterThanOrEqual(3)
  })
})

describe('McsAgent: one object the API server refuses does not stop the others (issue 14)', () => {
  it('a refused EndpointSlice: the other import is written, the failure is on the ServiceExport and in an Event, and is retried with backoff', async () => {
    // "bad" gets a loopback listener, which the API server refuses in an EndpointSlice.
    clusters = await startClusters(['east', 'west'], { listenHost: (_cluster, service) => (service === `${NS}/bad` ? '127.0.0.1' : '192.0.2.10') })
    const [east, west] = clusters as [McsCluster, McsCluster]
    putService(east, 'bad', { type: 'ClusterIP', clusterIP: '10.43.0.11', ports: [{ name: 'http', protocol: 'TCP', port: 80 }] })
    putExport(east, 'bad')
    putService(east, 'web', { type: 'ClusterIP', clusterIP: '10.43.0.10', ports: [{ name: 'http', protocol: 'TCP', port: 80 }] })
    putExport(east, 'web')
    for (const c of [east, west]) {
      await waitFor(() => serviceImport(c, 'web') !== undefined && slices(c, 'web').length === 1, `web imported in ${c.name}`)
      await waitFor(() => c.agent.status().failures.some((f) => f.key === `import:${NS}/bad`), `the failure of bad in ${c.name}`)
      expect(slices(c, 'bad')).toEqual([])
      expect(c.agent.status().failures.find((f) => f.key === `import:${NS}/bad`)?.message).toContain('may not be in the loopback range')
    }
    // The exporting cluster's ServiceExport says so; the failure is an Event on it.
    await waitFor(() => conditionsOf(east, NS, 'bad')['weft.io/Synced']?.status === 'False', 'the Synced condition on east\'s ServiceExport')
    expect(conditionsOf(east, NS, 'bad')['weft.io/Synced']).toMatchObject({ reason: 'ImportFailed' })
    expect(conditionsOf(east, NS, 'web')['weft.io/Synced']).toBeUndefined()
    const events = east.fake.objects<{ involvedObject: { kind: string, name: string }, reason: string, type: string } & KubeObject>(RESOURCES.events, NS)
    expect(events.some((e) => e.involvedObject.kind === 'ServiceExport' && e.involvedObject.name === 'bad' && e.reason === 'ImportFailed' && e.type === 'Warning')).toBe(true)
    // In west (no ServiceExport), the Event is on the ServiceImport; one Event per failure, not one per retry.
    await waitFor(() => west.fake.objects<{ involvedObject: { kind: string } } & KubeObject>(RESOURCES.events, NS).some((e) => e.involvedObject.kind === 'ServiceImport'), 'an Event in west')
    const attempts = (): number => west.agent.status().failures.find((f) => f.key === `import:${NS}/bad`)?.attempts ?? 0
    await waitFor(() => attempts() >= 3, 'a few retries of bad')
    expect(west.fake.objects(RESOURCES.events, NS)).toHaveLength(1)
    // Backoff: the retries of the one object are spaced (100 ms doubling), not a tight loop.
    expect(west.fake.count('create', 'endpointslices')).toBeLessThan(20)
  })
})
