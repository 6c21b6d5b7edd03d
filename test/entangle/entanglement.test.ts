import { afterEach, describe, expect, it } from 'vitest'
import { RESOURCES, isKubeError } from '../../src/adapters/kube/client.js'
import type { EndpointSlice, Service } from '../../src/adapters/kube/types.js'
import { Replica } from '../../src/adapters/replica.js'
import { identifiers, newToken } from '../../src/log/token.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import { replicaReducers, type ReplicaReducers } from '../../src/projections/reducers.js'
import { EntanglementController } from '../../src/node/entangle/entanglement-controller.js'
import { ENTANGLE_RESOURCES } from '../../src/node/entangle/resources.js'
import { exposeExportBody, type HostPort } from '../../src/node/service-registry.js'
import { startFakeKube, type FakeKube } from '../support/fake-kube.js'
import { identity, joinBody, memoryDb, NET, TEST_TOKEN } from '../support/fixtures.js'
import { waitFor } from '../net/support.js'
import { installCrds, putTokenSecret, readyOf, type Ent } from './support.js'

/**
 * The Entanglement controller against the fake API server (with deploy/crds/ installed, so the
 * CRD's schema, oneOf and CEL rule are enforced) and an in-process replica; the tunnels are
 * recorded rather than opened (the data path is test/entangle/daemon.test.ts's).
 */
describe('Entanglement controller', () => {
  let fake: FakeKube | undefined
  let ctl: EntanglementController | undefined
  let replica: Replica<ReplicaReducers> | undefined
  afterEach(async () => {
    await ctl?.stop()
    await replica?.close()
    await fake?.close()
  })

  async function setup (): Promise<{ fake: FakeKube, ctl: EntanglementController, replica: Replica<ReplicaReducers>, exposes: Map<string, { target: HostPort, port: number }>, listeners: Set<string> }> {
    fake = await startFakeKube({ namespaces: ['default', 'kube-system', 'shop'] })
    installCrds(fake)
    putTokenSecret(fake, 'shop', 'weft-token', TEST_TOKEN)
    replica = await Replica.open({ db: memoryDb(), net: NET, reducers: replicaReducers(), signer: identity(1), sync: false })
    await replica.append('node.join', joinBody('node-a', 'east'), Date.now())
    const exposes = new Map<string, { target: HostPort, port: number }>()
    const listeners = new Set<string>()
    const r = replica
    ctl = new EntanglementController({
      kube: fake.client(),
      networkId: identifiers(TEST_TOKEN).networkId,
      state: () => r.states().network,
      tunnels: {
        expose: async (ns, name, target, port) => { exposes.set(`${ns}/${name}`, { target, port }); return {} },
        unexpose: async (ns, name) => { exposes.delete(`${ns}/${name}`) },
        listen: async (svc, port) => { listeners.add(`${svc}/${port}`); return { host: '192.0.2.10', port: 31000 + listeners.size } },
        close: async (svc, port) => { listeners.delete(`${svc}/${port}`) }
      },
      log: silentLogger,
      now: Date.now,
      retryMs: 50
    })
    r.onChange(() => { ctl?.update() })
    await ctl.start()
    return { fake, ctl, replica: r, exposes, listeners }
  }

  const ent = (name: string, spec: Record<string, unknown>): Ent => ({ apiVersion: 'weft.io/v1alpha1', kind: 'Entanglement', metadata: { name, namespace: 'shop' }, spec: { tokenSecretRef: { name: 'weft-token' }, ...spec } })

  it('the CRD refuses both or neither of expose/consume, with the CEL message', async () => {
    const { fake } = await setup()
    const client = fake.client()
    for (const spec of [{ service: 'web', port: 80 }, { service: 'web', port: 80, expose: { host: '10.0.0.1:80' }, consume: {} }]) {
      const err = await client.create(ENTANGLE_RESOURCES.entanglements, 'shop', ent('bad', spec)).catch((e: unknown) => e)
      expect(isKubeError(err, 'Invalid'), String(err)).toBe(true)
      expect((err as Error).message).toContain('exactly one of spec.expose and spec.consume must be set')
    }
    const noToken = await client.create(ENTANGLE_RESOURCES.entanglements, 'shop', { ...ent('bad', { service: 'web', port: 80, expose: { host: '10.0.0.1:80' } }), spec: { service: 'web', port: 80, expose: { host: '10.0.0.1:80' } } }).catch((e: unknown) => e)
    expect((noToken as Error).message).toContain('spec.tokenSecretRef: Required value')
    const badPort = await client.create(ENTANGLE_RESOURCES.entanglements, 'shop', ent('bad', { service: 'web', port: 70000, expose: { host: '10.0.0.1:80' } })).catch((e: unknown) => e)
    expect((badPort as Error).message).toContain('spec.port')
  })

  it('expose: a Service ref becomes an expose of its cluster IP; Ready with the address; deleting the object unexposes', async () => {
    const { fake, ctl, exposes } = await setup()
    fake.put(RESOURCES.services, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.43.0.50', ports: [{ port: 8080 }] } } as Service)
    await fake.client().create(ENTANGLE_RESOURCES.entanglements, 'shop', ent('web', { service: 'web', port: 80, expose: { serviceRef: { name: 'web', port: 8080 } } }))
    await waitFor(() => readyOf(fake.get(ENTANGLE_RESOURCES.entanglements, 'shop', 'web') as Ent)?.status === 'True', 'Ready=True', 5000)
    const e = fake.get(ENTANGLE_RESOURCES.entanglements, 'shop', 'web') as Ent
    expect(readyOf(e)?.reason).toBe('Exposed')
    expect(e.status?.service).toBe('shop/web')
    expect(e.status?.address).toBe('10.43.0.50:8080')
    expect(e.status?.observedGeneration).toBe(1)
    expect(exposes.get('shop/web')).toEqual({ target: { host: '10.43.0.50', port: 8080 }, port: 80 })
    fake.remove(ENTANGLE_RESOURCES.entanglements, 'shop', 'web')
    await waitFor(() => !exposes.has('shop/web'), 'the expose withdrawn', 5000)
    expect(ctl.status().objects).toEqual({})
  })

  it('errors have reasons: missing Service, missing Secret, a token of another network, a second Entanglement of the same name', async () => {
    const { fake, exposes } = await setup()
    const client = fake.client()
    await client.create(ENTANGLE_RESOURCES.entanglements, 'shop', ent('nosvc', { service: 'a', port: 80, expose: { serviceRef: { name: 'missing', port: 80 } } }))
    await client.create(ENTANGLE_RESOURCES.entanglements, 'shop', { ...ent('nosecret', { service: 'b', port: 80, expose: { host: '192.168.1.1:80' } }), spec: { service: 'b', port: 80, expose: { host: '192.168.1.1:80' }, tokenSecretRef: { name: 'nope' } } })
    putTokenSecret(fake, 'shop', 'other-net', newToken())
    await client.create(ENTANGLE_RESOURCES.entanglements, 'shop', { ...ent('othernet', {}), spec: { service: 'c', port: 80, expose: { host: '192.168.1.1:80' }, tokenSecretRef: { name: 'other-net' } } })
    await client.create(ENTANGLE_RESOURCES.entanglements, 'shop', ent('host1', { service: 'd', port: 80, expose: { host: '192.168.1.1:80' } }))
    await waitFor(() => readyOf(fake.get(ENTANGLE_RESOURCES.entanglements, 'shop', 'host1') as Ent)?.status === 'True', 'host1 Ready', 5000)
    await client.create(ENTANGLE_RESOURCES.entanglements, 'shop', ent('host2', { service: 'd', port: 81, expose: { host: '192.168.1.2:81' } }))
    const reasons = async (): Promise<Record<string, string | undefined>> => Object.fromEntries(['nosvc', 'nosecret', 'othernet', 'host1', 'host2'].map((n) => [n, readyOf(fake.get(ENTANGLE_RESOURCES.entanglements, 'shop', n) as Ent)?.reason]))
    await waitFor(async () => Object.values(await reasons()).every((r) => r !== undefined), 'every Entanglement to have a Ready condition', 5000)
    expect(await reasons()).toEqual({ nosvc: 'ServiceNotFound', nosecret: 'SecretNotFound', othernet: 'NetworkMismatch', host1: 'Exposed', host2: 'Conflict' })
    expect([...exposes.keys()]).toEqual(['shop/d'])
    expect(exposes.get('shop/d')?.target).toEqual({ host: '192.168.1.1', port: 80 })
    // The Service appears: the next pass (a Service watch event) exposes it.
    fake.put(RESOURCES.services, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'missing', namespace: 'shop' }, spec: { clusterIP: '10.43.0.51', ports: [{ port: 80 }] } } as Service)
    await waitFor(() => exposes.has('shop/a'), 'the expose once the Service exists', 5000)
  })

  it('consume: a selectorless Service and an EndpointSlice to the listener; NotExported until a cluster exports it; cleaned up on delete', async () => {
    const { fake, replica, listeners } = await setup()
    await fake.client().create(ENTANGLE_RESOURCES.entanglements, 'shop', ent('db', { service: 'db', port: 5432, consume: { servicePort: 15432 } }))
    await waitFor(() => readyOf(fake.get(ENTANGLE_RESOURCES.entanglements, 'shop', 'db') as Ent)?.reason === 'NotExported', 'NotExported', 5000)
    expect([...listeners]).toEqual(['shop/db/5432'])
    const svc = fake.get(RESOURCES.services, 'shop', 'db') as Service
    expect(svc.spec?.selector).toBeUndefined()
    expect(svc.spec?.ports?.[0]).toMatchObject({ port: 15432, targetPort: 31001 })
    expect(svc.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'Entanglement', name: 'db', controller: true })
    const slice = fake.get(RESOURCES.endpointSlices, 'shop', 'db-weft') as EndpointSlice
    expect(slice.endpoints[0]?.addresses).toEqual(['192.0.2.10'])
    expect(slice.ports?.[0]?.port).toBe(31001)
    expect(slice.metadata.labels?.['kubernetes.io/service-name']).toBe('db')
    // Another cluster exports shop/db: Ready.
    await replica.append('service.export', exposeExportBody('east', { namespace: 'shop', name: 'db', port: 5432 }), Date.now())
    await waitFor(() => readyOf(fake.get(ENTANGLE_RESOURCES.entanglements, 'shop', 'db') as Ent)?.status === 'True', 'Ready', 5000)
    const e = fake.get(ENTANGLE_RESOURCES.entanglements, 'shop', 'db') as Ent
    expect(e.status?.address).toBe(`${svc.spec?.clusterIP ?? ''}:15432`)
    fake.remove(ENTANGLE_RESOURCES.entanglements, 'shop', 'db')
    await waitFor(() => fake?.get(RESOURCES.services, 'shop', 'db') === undefined && fake.get(RESOURCES.endpointSlices, 'shop', 'db-weft') === undefined && listeners.size === 0, 'the Service, slice and listener gone', 5000)
  })
})
