import { afterEach, describe, expect, test } from 'vitest'
import { CLUSTER_ID_PROPERTY, KubeError, RESOURCES, clusterId, type ClusterProperty } from '../../src/adapters/kube/client.js'
import { FAKE_RESOURCES, startFakeKube, type FakeKube } from '../support/fake-kube.js'

const KUBE_SYSTEM_UID = '0b8f3f4e-5d6c-4a3b-9e1f-2a7c8d9e0f11'

let fake: FakeKube | undefined
afterEach(async () => {
  await fake?.close()
  fake = undefined
})

describe('clusterId (KEP-2149)', () => {
  test('the cluster.clusterset.k8s.io ClusterProperty, when there is one', async () => {
    fake = await startFakeKube({ kubeSystemUid: KUBE_SYSTEM_UID })
    const client = fake.client()
    await client.create<ClusterProperty>(RESOURCES.clusterProperties, undefined, { metadata: { name: CLUSTER_ID_PROPERTY }, spec: { value: 'east-1' } })
    // Another property is not the id.
    await client.create<ClusterProperty>(RESOURCES.clusterProperties, undefined, { metadata: { name: 'clusterset.k8s.io' }, spec: { value: 'prod' } })
    expect(await clusterId(client)).toBe('east-1')
    expect(fake.requests.filter((r) => r.resource === 'namespaces').length).toBe(0)
  })

  test('else the kube-system namespace uid', async () => {
    fake = await startFakeKube({ kubeSystemUid: KUBE_SYSTEM_UID })
    const client = fake.client()
    await client.create<ClusterProperty>(RESOURCES.clusterProperties, undefined, { metadata: { name: 'clusterset.k8s.io' }, spec: { value: 'prod' } })
    expect(await clusterId(client)).toBe(KUBE_SYSTEM_UID)
    // Adding the property later changes the answer.
    fake.put(RESOURCES.clusterProperties, { metadata: { name: CLUSTER_ID_PROPERTY }, spec: { value: 'west' } } as ClusterProperty)
    expect(await clusterId(client)).toBe('west')
  })

  test('a cluster without the ClusterProperty CRD falls back to the kube-system uid', async () => {
    fake = await startFakeKube({ kubeSystemUid: KUBE_SYSTEM_UID, resources: FAKE_RESOURCES.filter((r) => r.ref.plural !== 'clusterproperties') })
    const client = fake.client()
    expect(await client.get(RESOURCES.clusterProperties, undefined, CLUSTER_ID_PROPERTY)).toBeUndefined()
    expect(await clusterId(client)).toBe(KUBE_SYSTEM_UID)
  })

  test('Forbidden is an error, not a silent fallback', async () => {
    fake = await startFakeKube({ kubeSystemUid: KUBE_SYSTEM_UID })
    fake.failNext({ verb: 'get', resource: 'clusterproperties' }, 403, { reason: 'Forbidden' })
    const err = await clusterId(fake.client()).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(KubeError)
    expect((err as KubeError).code).toBe('Forbidden')
  })

  test('the kube-system uid is stable across calls and unique per fake cluster', async () => {
    fake = await startFakeKube()
    const other = await startFakeKube()
    try {
      const a = await clusterId(fake.client())
      expect(await clusterId(fake.client())).toBe(a)
      expect(await clusterId(other.client())).not.toBe(a)
    } finally {
      await other.close()
    }
  })
})
