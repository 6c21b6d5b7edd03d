import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { KubeConfig } from '@kubernetes/client-node'
import { KubeError, RESOURCES, isKubeError, type KubeClient, type KubeObject } from '../../src/adapters/kube/client.js'
import { createHttpKubeClient, loadKubeConfig } from '../../src/adapters/kube/http-client.js'
import type { EndpointSlice, Service, ServiceExport, ServiceImport } from '../../src/adapters/kube/types.js'
import { FAKE_KUBE_CERT } from '../support/fake-kube/tls.js'
import { eventually, startFakeKube, type FakeKube } from '../support/fake-kube.js'

const svc = (name: string, labels: Record<string, string> = {}, port = 80): Service => ({
  metadata: { name, labels },
  spec: { ports: [{ name: 'http', port, protocol: 'TCP' }], selector: { app: name } }
})

async function rejection(p: Promise<unknown>): Promise<KubeError> {
  try {
    await p
  } catch (err) {
    if (err instanceof KubeError) return err
    throw err
  }
  throw new Error('expected a KubeError, got success')
}

describe('http client against the fake API server', () => {
  let fake: FakeKube
  let client: KubeClient

  beforeAll(async () => {
    fake = await startFakeKube({ kubeSystemUid: '4d3c2b1a-0000-4000-8000-000000000001' })
    client = fake.client()
  })
  afterAll(async () => {
    await fake.close()
  })

  test('create, get, replace, delete a Service', async () => {
    const created = await client.create(RESOURCES.services, 'default', svc('web'))
    expect(created.apiVersion).toBe('v1')
    expect(created.kind).toBe('Service')
    expect(created.metadata.namespace).toBe('default')
    expect(created.metadata.uid).toMatch(/^[0-9a-f-]{36}$/)
    expect(created.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
    expect(Number(created.metadata.resourceVersion)).toBe(Number(fake.resourceVersion))

    const got = await client.get<Service>(RESOURCES.services, 'default', 'web')
    expect(got).toEqual(created)

    const changed = structuredClone(created)
    changed.spec!.ports = [{ name: 'http', port: 8080, protocol: 'TCP' }]
    const replaced = await client.replace(RESOURCES.services, 'default', changed)
    expect(replaced.spec?.ports?.[0]?.port).toBe(8080)
    expect(replaced.metadata.uid).toBe(created.metadata.uid)
    expect(Number(replaced.metadata.resourceVersion)).toBeGreaterThan(Number(created.metadata.resourceVersion))
    expect(fake.get<Service>(RESOURCES.services, 'default', 'web')?.spec?.ports?.[0]?.port).toBe(8080)

    expect(await client.delete(RESOURCES.services, 'default', 'web')).toBe(true)
    expect(await client.get(RESOURCES.services, 'default', 'web')).toBeUndefined()
    expect(await client.delete(RESOURCES.services, 'default', 'web')).toBe(false)
    expect(fake.get(RESOURCES.services, 'default', 'web')).toBeUndefined()
  })

  test('404s: get gives undefined, replace and replaceStatus a NotFound error', async () => {
    expect(await client.get(RESOURCES.serviceExports, 'default', 'nope')).toBeUndefined()
    const err = await rejection(client.replace(RESOURCES.services, 'default', { ...svc('ghost'), metadata: { name: 'ghost', resourceVersion: '1' } }))
    expect(err.code).toBe('NotFound')
    expect(err.status).toBe(404)
    expect(err.message).toContain('services "ghost" not found')
    // EndpointSlices have no status subresource: the path does not exist.
    const slice: EndpointSlice = { metadata: { name: 's1' }, addressType: 'IPv4', endpoints: [] }
    await client.create(RESOURCES.endpointSlices, 'default', slice)
    expect((await rejection(client.replaceStatus(RESOURCES.endpointSlices, 'default', slice))).code).toBe('NotFound')
  })

  test('create in a namespace that does not exist is NotFound', async () => {
    const err = await rejection(client.create(RESOURCES.services, 'no-such-ns', svc('web')))
    expect(err.code).toBe('NotFound')
    expect(err.message).toContain('namespaces "no-such-ns" not found')
  })

  test('409 AlreadyExists on create of a taken name', async () => {
    await client.create(RESOURCES.services, 'default', svc('dup'))
    const err = await rejection(client.create(RESOURCES.services, 'default', svc('dup', {}, 99)))
    expect(err.code).toBe('AlreadyExists')
    expect(err.status).toBe(409)
    expect(err.reason).toBe('AlreadyExists')
    expect(fake.get<Service>(RESOURCES.services, 'default', 'dup')?.spec?.ports?.[0]?.port).toBe(80)
    // The same name in another namespace is another object.
    await client.create(RESOURCES.namespaces, undefined, { metadata: { name: 'other' } })
    await client.create(RESOURCES.services, 'other', svc('dup'))
  })

  test('409 Conflict on a replace with a stale resourceVersion; the winner stays', async () => {
    const v1 = await client.create(RESOURCES.services, 'default', svc('race'))
    const a = structuredClone(v1)
    a.metadata.labels = { by: 'a' }
    const b = structuredClone(v1)
    b.metadata.labels = { by: 'b' }
    await client.replace(RESOURCES.services, 'default', a)
    const err = await rejection(client.replace(RESOURCES.services, 'default', b))
    expect(err.code).toBe('Conflict')
    expect(err.status).toBe(409)
    expect(err.message).toContain('the object has been modified')
    expect(fake.get(RESOURCES.services, 'default', 'race')?.metadata.labels).toEqual({ by: 'a' })
    // Retrying on the fresh object succeeds.
    const fresh = (await client.get<Service>(RESOURCES.services, 'default', 'race'))!
    fresh.metadata.labels = { by: 'b' }
    expect((await client.replace(RESOURCES.services, 'default', fresh)).metadata.labels).toEqual({ by: 'b' })
  })

  test('a PUT without resourceVersion: unconditional for built-ins, Invalid for custom resources', async () => {
    await client.create(RESOURCES.services, 'default', svc('blind'))
    const blind = svc('blind', { x: '1' })
    expect((await client.replace(RESOURCES.services, 'default', blind)).metadata.labels).toEqual({ x: '1' })

    await client.create<ServiceExport>(RESOURCES.serviceExports, 'default', { metadata: { name: 'blind' } })
    const err = await rejection(client.replace<ServiceExport>(RESOURCES.serviceExports, 'default', { metadata: { name: 'blind', labels: { x: '1' } } }))
    expect(err.code).toBe('Invalid')
    expect(err.status).toBe(422)
    expect(err.message).toContain('metadata.resourceVersion')
  })

  test('status subresource: PUT on the object ignores status, PUT on /status changes only status', async () => {
    const created = await client.create<ServiceExport>(RESOURCES.serviceExports, 'default', {
      metadata: { name: 'web', labels: { a: '1' } },
      spec: { exportedLabels: { tier: 'web' } },
      // Status on create is dropped, as for any resource with a status subresource.
      status: { conditions: [{ type: 'Valid', status: 'True', reason: 'Valid', message: '', lastTransitionTime: '2024-01-01T00:00:00Z' }] }
    })
    expect(created.status).toBeUndefined()
    expect(created.metadata.generation).toBe(1)

    const cond = { type: 'Valid', status: 'False' as const, reason: 'NoService', message: 'no Service', lastTransitionTime: '2024-01-02T00:00:00Z' }
    // Status writes change status only: the spec and label changes sent with it are ignored.
    const st = await client.replaceStatus<ServiceExport>(RESOURCES.serviceExports, 'default', {
      ...created,
      metadata: { ...created.metadata, labels: { a: 'changed' } },
      spec: { exportedLabels: { tier: 'changed' } },
      status: { conditions: [cond] }
    })
    expect(st.status?.conditions).toEqual([cond])
    expect(st.spec).toEqual({ exportedLabels: { tier: 'web' } })
    expect(st.metadata.labels).toEqual({ a: '1' })
    expect(st.metadata.generation).toBe(1) // status does not bump generation
    expect(Number(st.metadata.resourceVersion)).toBeGreaterThan(Number(created.metadata.resourceVersion))

    // A PUT on the object keeps the stored status, whatever it sends, and bumps generation on spec changes.
    const upd = await client.replace<ServiceExport>(RESOURCES.serviceExports, 'default', {
      ...st,
      spec: { exportedLabels: { tier: 'api' } },
      status: { conditions: [] }
    })
    expect(upd.spec).toEqual({ exportedLabels: { tier: 'api' } })
    expect(upd.status?.conditions).toEqual([cond])
    expect(upd.metadata.generation).toBe(2)

    // A label-only change does not bump generation; a write that changes nothing keeps the resourceVersion.
    const relabeled = await client.replace<ServiceExport>(RESOURCES.serviceExports, 'default', { ...upd, metadata: { ...upd.metadata, labels: { a: '2' } } })
    expect(relabeled.metadata.generation).toBe(2)
    const same = await client.replace<ServiceExport>(RESOURCES.serviceExports, 'default', relabeled)
    expect(same.metadata.resourceVersion).toBe(relabeled.metadata.resourceVersion)

    // A stale resourceVersion on /status is a Conflict too.
    const err = await rejection(client.replaceStatus(RESOURCES.serviceExports, 'default', st))
    expect(err.code).toBe('Conflict')
  })

  test('ServiceImport and its status round-trip', async () => {
    const imp = await client.create<ServiceImport>(RESOURCES.serviceImports, 'default', {
      metadata: { name: 'web' },
      spec: { type: 'ClusterSetIP', ports: [{ name: 'http', protocol: 'TCP', port: 80 }], ips: ['10.96.0.10'] }
    })
    const withStatus = await client.replaceStatus<ServiceImport>(RESOURCES.serviceImports, 'default', {
      ...imp,
      status: { clusters: [{ cluster: 'east' }, { cluster: 'west' }] }
    })
    expect(withStatus.status?.clusters).toEqual([{ cluster: 'east' }, { cluster: 'west' }])
    expect((await client.get<ServiceImport>(RESOURCES.serviceImports, 'default', 'web'))?.spec.ips).toEqual(['10.96.0.10'])
  })

  test('label selectors: =, ==, !=, in, notin, exists, !key, and combinations', async () => {
    await client.create(RESOURCES.namespaces, undefined, { metadata: { name: 'sel' } })
    const specs: [string, Record<string, string>][] = [
      ['a', { app: 'web', tier: 'front' }],
      ['b', { app: 'web', tier: 'back' }],
      ['c', { app: 'db' }],
      ['d', {}]
    ]
    for (const [name, labels] of specs) await client.create(RESOURCES.services, 'sel', svc(name, labels))
    const names = async (labelSelector: string): Promise<string[]> =>
      (await client.list(RESOURCES.services, 'sel', { labelSelector })).items.map((o) => o.metadata.name ?? '')
    expect(await names('app=web')).toEqual(['a', 'b'])
    expect(await names('app==web')).toEqual(['a', 'b'])
    expect(await names('app!=web')).toEqual(['c', 'd']) // != matches objects without the key
    expect(await names('tier in (front, back)')).toEqual(['a', 'b'])
    expect(await names('tier notin (front)')).toEqual(['b', 'c', 'd'])
    expect(await names('tier')).toEqual(['a', 'b'])
    expect(await names('!tier')).toEqual(['c', 'd'])
    expect(await names('app=web,tier!=front')).toEqual(['b'])
    expect(await names('app in (web,db),!tier')).toEqual(['c'])
    expect(await names('')).toEqual(['a', 'b', 'c', 'd'])
    const err = await rejection(client.list(RESOURCES.services, 'sel', { labelSelector: 'app in web' }))
    expect(err.code).toBe('BadRequest')
  })

  test('list: items carry apiVersion and kind, and the list resourceVersion is the latest', async () => {
    await client.create(RESOURCES.namespaces, undefined, { metadata: { name: 'lst' } })
    await client.create(RESOURCES.services, 'lst', svc('one'))
    await client.create<EndpointSlice>(RESOURCES.endpointSlices, 'lst', { metadata: { name: 'one-abc' }, addressType: 'IPv4', endpoints: [{ addresses: ['10.0.0.1'] }] })
    const list = await client.list<Service>(RESOURCES.services, 'lst')
    expect(list.resourceVersion).toBe(fake.resourceVersion)
    expect(list.items.map((o) => [o.apiVersion, o.kind, o.metadata.name])).toEqual([['v1', 'Service', 'one']])
    const slices = await client.list<EndpointSlice>(RESOURCES.endpointSlices, 'lst')
    expect(slices.items[0]?.apiVersion).toBe('discovery.k8s.io/v1')
    expect(slices.items[0]?.endpoints[0]?.addresses).toEqual(['10.0.0.1'])
    // The fake, like the API server, leaves apiVersion and kind out of built-in list items.
    const raw = await fetch(`${fake.url}/api/v1/namespaces/lst/services`, { headers: { Authorization: `Bearer ${fake.token}` } })
    const body = await raw.json() as { kind: string; items: KubeObject[] }
    expect(body.kind).toBe('ServiceList')
    expect(body.items[0]?.kind).toBeUndefined()
    // All namespaces.
    const all = await client.list(RESOURCES.services)
    expect(all.items.some((o) => o.metadata.namespace === 'lst')).toBe(true)
    expect(all.items.some((o) => o.metadata.namespace === 'default')).toBe(true)
  })

  test('deleting a namespace deletes what is in it', async () => {
    await client.create(RESOURCES.namespaces, undefined, { metadata: { name: 'doomed' } })
    await client.create(RESOURCES.services, 'doomed', svc('x'))
    await client.create<ServiceExport>(RESOURCES.serviceExports, 'doomed', { metadata: { name: 'x' } })
    expect(await client.delete(RESOURCES.namespaces, undefined, 'doomed')).toBe(true)
    expect(fake.objects(RESOURCES.services, 'doomed')).toEqual([])
    expect(fake.objects(RESOURCES.serviceExports, 'doomed')).toEqual([])
  })

  test('delete preconditions: a stale uid or resourceVersion is a Conflict and deletes nothing', async () => {
    const s = await client.create(RESOURCES.services, 'default', svc('pre'))
    expect((await rejection(client.delete(RESOURCES.services, 'default', 'pre', { preconditions: { uid: 'not-the-uid' } }))).code).toBe('Conflict')
    expect((await rejection(client.delete(RESOURCES.services, 'default', 'pre', { preconditions: { resourceVersion: '1' } }))).code).toBe('Conflict')
    expect(fake.get(RESOURCES.services, 'default', 'pre')).toBeDefined()
    expect(await client.delete(RESOURCES.services, 'default', 'pre', { preconditions: { uid: s.metadata.uid!, resourceVersion: s.metadata.resourceVersion! } })).toBe(true)
  })

  test('validation: names and labels as the API server checks them', async () => {
    // Service names are DNS-1035 labels: no leading digit.
    expect((await rejection(client.create(RESOURCES.services, 'default', svc('1abc')))).code).toBe('Invalid')
    expect((await rejection(client.create(RESOURCES.services, 'default', svc('ok', { 'bad key!': 'x' })))).code).toBe('Invalid')
    expect((await rejection(client.create(RESOURCES.services, 'default', svc('ok', { k: 'bad value!' })))).code).toBe('Invalid')
    // Creating an object that still has a resourceVersion fails on a real API server too.
    const err = await rejection(client.create(RESOURCES.services, 'default', { ...svc('rv'), metadata: { name: 'rv', resourceVersion: '3' } }))
    expect(err.code).toBe('Unavailable')
    expect(err.status).toBe(500)
    // generateName.
    const gen = await client.create(RESOURCES.endpointSlices, 'default', { metadata: { generateName: 'web-' }, addressType: 'IPv4', endpoints: [] } as EndpointSlice)
    expect(gen.metadata.name).toMatch(/^web-[a-z0-9]{5}$/)
  })

  test('errors map to codes: 401, 403, 503', async () => {
    const kc = new KubeConfig()
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: fake.url, skipTLSVerify: true }],
      users: [{ name: 'u', token: 'wrong' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x'
    })
    const bad = createHttpKubeClient(kc)
    const unauth = await rejection(bad.get(RESOURCES.services, 'default', 'x'))
    expect(unauth.code).toBe('Unauthorized')

    fake.failNext({ verb: 'list', resource: 'serviceimports' }, 403, { reason: 'Forbidden', message: 'serviceimports.multicluster.x-k8s.io is forbidden' })
    const forbidden = await rejection(client.list(RESOURCES.serviceImports, 'default'))
    expect(forbidden.code).toBe('Forbidden')
    expect(forbidden.retryable).toBe(false)
    expect(forbidden.message).toContain('is forbidden')

    fake.failNext({ verb: 'create' }, 503)
    const unavailable = await rejection(client.create(RESOURCES.services, 'default', svc('later')))
    expect(unavailable.code).toBe('Unavailable')
    expect(unavailable.retryable).toBe(true)
    // Only once.
    await client.create(RESOURCES.services, 'default', svc('later'))
  })

  test('a server that does not answer is Unavailable, with status 0', async () => {
    const kc = new KubeConfig()
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: 'http://127.0.0.1:1', skipTLSVerify: true }],
      users: [{ name: 'u', token: 't' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x'
    })
    const err = await rejection(createHttpKubeClient(kc).get(RESOURCES.services, 'default', 'x'))
    expect(err.code).toBe('Unavailable')
    expect(err.status).toBe(0)
  })

  test('scoping mistakes are caught before any request', async () => {
    const before = fake.requests.length
    await expect(client.get(RESOURCES.namespaces, 'default', 'x')).rejects.toThrow(/cluster-scoped/)
    await expect(client.create(RESOURCES.services, undefined, svc('x'))).rejects.toThrow(/namespaced/)
    expect(fake.requests.length).toBe(before)
  })
})

describe('kubeconfig sources', () => {
  let dir: string
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT, kubeconfig: process.env.KUBECONFIG }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weft-kube-'))
  })
  afterEach(() => {
    for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port], ['KUBECONFIG', saved.kubeconfig]] as const) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  test('--kubeconfig file, over TLS checked against the file\'s CA', async () => {
    const fake = await startFakeKube({ tls: true })
    try {
      const path = join(dir, 'kubeconfig')
      await fake.writeKubeconfig(path)
      const client = createHttpKubeClient(loadKubeConfig({ kubeconfig: path }))
      expect((await client.get(RESOURCES.namespaces, undefined, 'default'))?.metadata.name).toBe('default')

      // Without the CA the server's certificate is refused.
      const kc = new KubeConfig()
      kc.loadFromOptions({
        clusters: [{ name: 'c', server: fake.url }],
        users: [{ name: 'u', token: fake.token }],
        contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
        currentContext: 'x'
      })
      const err = await rejection(createHttpKubeClient(kc).get(RESOURCES.namespaces, undefined, 'default'))
      expect(err.code).toBe('Unavailable')
      expect(err.message).toMatch(/certificate/i)
    } finally {
      await fake.close()
    }
  })

  test('in a pod: the service account token and CA', async () => {
    const fake = await startFakeKube({ tls: true })
    try {
      const sa = join(dir, 'var/run/secrets/kubernetes.io/serviceaccount')
      await mkdir(sa, { recursive: true })
      await writeFile(join(sa, 'token'), fake.token)
      await writeFile(join(sa, 'ca.crt'), FAKE_KUBE_CERT)
      await writeFile(join(sa, 'namespace'), 'weft-system')
      const url = new URL(fake.url)
      process.env.KUBERNETES_SERVICE_HOST = url.hostname
      process.env.KUBERNETES_SERVICE_PORT = url.port
      const client = createHttpKubeClient(loadKubeConfig({ inClusterRoot: dir }))
      expect((await client.get(RESOURCES.namespaces, undefined, 'kube-system'))?.metadata.name).toBe('kube-system')
      expect(fake.requests.at(-1)?.verb).toBe('get')
      // Watches (the library's Watch class) get the same CA and token.
      const ac = new AbortController()
      const names: string[] = []
      const watching = client.watch(RESOURCES.services, 'default', { resourceVersion: fake.resourceVersion, signal: ac.signal }, (_t, o) => {
        names.push(o.metadata.name ?? '')
        ac.abort()
      })
      await eventually(() => fake.watchCount === 1, 5000, 'the watch over TLS')
      fake.put(RESOURCES.services, { metadata: { name: 'tls-watched', namespace: 'default' } })
      await watching
      expect(names).toEqual(['tls-watched'])
    } finally {
      await fake.close()
    }
  })

  test('no kubeconfig anywhere is an error, not localhost:8080', () => {
    delete process.env.KUBERNETES_SERVICE_HOST
    process.env.KUBECONFIG = ''
    const home = process.env.HOME
    process.env.HOME = dir
    try {
      expect(() => loadKubeConfig()).toThrow(/no kubeconfig/)
    } finally {
      process.env.HOME = home
    }
  })
})

describe('isKubeError', () => {
  test('narrows by code', () => {
    const e = KubeError.fromStatus(409, { kind: 'Status', reason: 'AlreadyExists', message: 'x' })
    expect(isKubeError(e, 'AlreadyExists')).toBe(true)
    expect(isKubeError(e, 'Conflict')).toBe(false)
    expect(KubeError.fromStatus(409, { kind: 'Status', reason: 'Conflict' }).code).toBe('Conflict')
    expect(KubeError.fromStatus(410).code).toBe('Gone')
    expect(isKubeError(new Error('x'))).toBe(false)
  })
})
