import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { RESOURCES, type KubeStatus } from '../../src/adapters/kube/client.js'
import type { Namespace } from '../../src/adapters/kube/types.js'
import { startFakeKube, type FakeKube } from '../support/fake-kube.js'

// The fake's own behaviour at the HTTP level, where the client would hide it.
describe('fake API server, raw HTTP', () => {
  let fake: FakeKube
  const req = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown; text: string }> => {
    const r = await fetch(fake.url + path, {
      method,
      headers: { Authorization: `Bearer ${fake.token}`, 'Content-Type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await r.text()
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    return { status: r.status, json, text }
  }

  beforeAll(async () => {
    fake = await startFakeKube()
  })
  afterAll(async () => {
    await fake.close()
  })

  test('unknown paths and resources: 404 with the real Status', async () => {
    for (const path of ['/apis/example.com/v1/widgets', '/api/v1/leases', '/apis/multicluster.x-k8s.io/v1alpha1/namespaces/default/serviceexports', '/healthz']) {
      const r = await req('GET', path)
      expect(r.status, path).toBe(404)
      expect(r.json).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, message: 'the server could not find the requested resource' })
    }
    // A cluster-scoped resource under a namespace does not exist either.
    expect((await req('GET', '/apis/about.k8s.io/v1alpha1/namespaces/default/clusterproperties')).status).toBe(404)
  })

  test('object 404s name the resource, with details', async () => {
    const r = await req('GET', '/apis/multicluster.x-k8s.io/v1beta1/namespaces/default/serviceexports/web')
    expect(r.status).toBe(404)
    const st = r.json as KubeStatus
    expect(st.message).toBe('serviceexports.multicluster.x-k8s.io "web" not found')
    expect(st.details).toEqual({ name: 'web', group: 'multicluster.x-k8s.io', kind: 'serviceexports' })
  })

  test('what it refuses rather than pretends: PATCH, fieldSelector, dryRun, deletecollection', async () => {
    fake.put(RESOURCES.services, { metadata: { name: 'web', namespace: 'default' } })
    expect((await req('PATCH', '/api/v1/namespaces/default/services/web', {})).status).toBe(405)
    expect((await req('GET', '/api/v1/services?fieldSelector=metadata.name%3Dweb')).status).toBe(400)
    expect((await req('PUT', '/api/v1/namespaces/default/services/web?dryRun=All', { metadata: { name: 'web' } })).status).toBe(400)
    expect((await req('DELETE', '/api/v1/namespaces/default/services')).status).toBe(405)
    expect(fake.get(RESOURCES.services, 'default', 'web')).toBeDefined()
    expect((await req('POST', '/api/v1/services', { metadata: { name: 'x', namespace: 'default' } })).status).toBe(405)
  })

  test('without credentials: 401', async () => {
    const r = await fetch(`${fake.url}/api/v1/namespaces`)
    expect(r.status).toBe(401)
    expect(await r.json()).toMatchObject({ kind: 'Status', reason: 'Unauthorized', code: 401 })
  })

  test('namespaces are defaulted as the real server does', async () => {
    const r = await req('POST', '/api/v1/namespaces', { metadata: { name: 'team-a' } })
    expect(r.status).toBe(201)
    const ns = r.json as Namespace
    expect(ns.status?.phase).toBe('Active')
    expect(ns.spec?.finalizers).toEqual(['kubernetes'])
    expect(ns.metadata.labels).toEqual({ 'kubernetes.io/metadata.name': 'team-a' })
    expect(ns.metadata.generation).toBeUndefined()
  })

  test('mismatched apiVersion, kind, name or namespace in the body: 400', async () => {
    expect((await req('POST', '/api/v1/namespaces/default/services', { apiVersion: 'v2', kind: 'Service', metadata: { name: 'a' } })).status).toBe(400)
    expect((await req('POST', '/api/v1/namespaces/default/services', { kind: 'Pod', metadata: { name: 'a' } })).status).toBe(400)
    expect((await req('POST', '/api/v1/namespaces/default/services', { metadata: { name: 'a', namespace: 'kube-system' } })).status).toBe(400)
    // Custom resources need a kind in the body.
    expect((await req('POST', '/apis/multicluster.x-k8s.io/v1beta1/namespaces/default/serviceexports', { metadata: { name: 'a' } })).status).toBe(400)
    fake.put(RESOURCES.services, { metadata: { name: 'b', namespace: 'default' } })
    expect((await req('PUT', '/api/v1/namespaces/default/services/b', { metadata: { name: 'c' } })).status).toBe(400)
  })

  test('a watch without resourceVersion starts with the current objects as ADDED', async () => {
    fake.put(RESOURCES.serviceImports, { metadata: { name: 'one', namespace: 'default' }, spec: { type: 'Headless', ports: [] } } as never)
    const ac = new AbortController()
    const r = await fetch(`${fake.url}/apis/multicluster.x-k8s.io/v1beta1/namespaces/default/serviceimports?watch=true`, {
      headers: { Authorization: `Bearer ${fake.token}` },
      signal: ac.signal
    })
    expect(r.status).toBe(200)
    const reader = r.body!.getReader()
    const { value } = await reader.read()
    const line = JSON.parse(new TextDecoder().decode(value).split('\n')[0]!) as { type: string; object: { kind: string; metadata: { name: string } } }
    expect(line.type).toBe('ADDED')
    expect(line.object.kind).toBe('ServiceImport')
    expect(line.object.metadata.name).toBe('one')
    ac.abort()
  })
})
