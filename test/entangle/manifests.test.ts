import { createServer, type Server } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import type { KubeObject } from '../../src/adapters/kube/client.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import { ManifestsController, type TargetTunnel } from '../../src/node/entangle/manifests-controller.js'
import { ENTANGLE_RESOURCES, type Manifests } from '../../src/node/entangle/resources.js'
import { MANIFEST_RESOURCES, startFakeKube, type FakeKube } from '../support/fake-kube.js'
import { RESOURCES } from '../../src/adapters/kube/client.js'
import { waitFor } from '../net/support.js'
import { installCrds, readyOf, type Ent } from './support.js'

const configMap = (data: Record<string, string>): KubeObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: 'apps' }, data } as KubeObject)
const deployment: KubeObject = {
  apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'apps' },
  spec: { replicas: 1, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] } } }
} as KubeObject

/**
 * The Manifests controller against two fake API servers: the control cluster (with the CRDs)
 * and the target, reached here directly ("the tunnel" is the target's own address; the mesh
 * path and a real refusal are in test/entangle/daemon.test.ts).
 */
describe('Manifests controller', () => {
  let control: FakeKube | undefined
  let target: FakeKube | undefined
  let ctl: ManifestsController | undefined
  let closer: Server | undefined
  afterEach(async () => {
    await ctl?.stop()
    await control?.close()
    await target?.close()
    closer?.close()
  })

  async function setup (tunnel?: TargetTunnel): Promise<{ control: FakeKube, target: FakeKube }> {
    control = await startFakeKube({ namespaces: ['default', 'ops'] })
    target = await startFakeKube({ namespaces: ['default', 'apps'] })
    installCrds(control)
    control.put(ENTANGLE_RESOURCES.secrets, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'target-b', namespace: 'ops' }, data: { kubeconfig: Buffer.from(target.kubeconfigYaml()).toString('base64') } } as KubeObject)
    const url = new URL(target.url)
    ctl = new ManifestsController({
      kube: control.client(),
      connect: async () => tunnel ?? { listen: { host: url.hostname, port: Number(url.port) }, lastError: () => undefined },
      log: silentLogger,
      now: Date.now,
      retryMs: 50
    })
    await ctl.start()
    return { control, target }
  }

  const manifests = (objects: KubeObject[]): Manifests => ({ apiVersion: 'weft.io/v1alpha1', kind: 'Manifests', metadata: { name: 'b-apps', namespace: 'ops' }, spec: { cluster: 'b', credentialsSecretRef: { name: 'target-b' }, manifests: objects as never } })

  it('applies a ConfigMap and a Deployment with server-side apply, reports each, prunes, and deletes them with the object', async () => {
    const { control, target } = await setup()
    const client = control.client()
    await client.create(ENTANGLE_RESOURCES.manifests, 'ops', manifests([configMap({ a: '1' }), deployment]))
    await waitFor(() => readyOf(control.get(ENTANGLE_RESOURCES.manifests, 'ops', 'b-apps') as Ent)?.status === 'True', 'Ready', 10_000)
    const m = control.get(ENTANGLE_RESOURCES.manifests, 'ops', 'b-apps') as Manifests
    expect(m.metadata.finalizers).toEqual(['weft.io/manifests'])
    expect(m.status?.objects?.map((o) => `${o.kind} ${o.namespace ?? ''}/${o.name} ${o.result}`)).toEqual(['ConfigMap apps/settings Applied', 'Deployment apps/web Applied'])
    expect((target.get(RESOURCES.configMaps, 'apps', 'settings') as unknown as { data: unknown }).data).toEqual({ a: '1' })
    expect(target.get(MANIFEST_RESOURCES.deployments, 'apps', 'web')).toBeDefined()
    // Applied by field manager weft: the PATCH requests say so.
    expect(target.requests.filter((r) => r.verb === 'apply').every((r) => r.query.fieldManager === 'weft')).toBe(true)

    // A change of the spec: the ConfigMap is re-applied (a dropped key goes), the Deployment leaves the spec and is deleted.
    const cur = control.get(ENTANGLE_RESOURCES.manifests, 'ops', 'b-apps') as Manifests
    await client.replace(ENTANGLE_RESOURCES.manifests, 'ops', { ...cur, spec: { ...cur.spec, manifests: [configMap({ b: '2' })] as never } })
    await waitFor(() => target?.get(MANIFEST_RESOURCES.deployments, 'apps', 'web') === undefined, 'the Deployment pruned', 10_000)
    expect((target.get(RESOURCES.configMaps, 'apps', 'settings') as unknown as { data: unknown }).data).toEqual({ b: '2' })

    // Deleting the Manifests: it waits (finalizer) until the ConfigMap is deleted in the target.
    await client.delete(ENTANGLE_RESOURCES.manifests, 'ops', 'b-apps')
    await waitFor(() => control.get(ENTANGLE_RESOURCES.manifests, 'ops', 'b-apps') === undefined, 'the Manifests gone', 10_000)
    expect(target.get(RESOURCES.configMaps, 'apps', 'settings')).toBeUndefined()
  })

  it('a refused object is reported per object; the others are applied', async () => {
    const { control, target } = await setup()
    const bad = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'broken', namespace: 'apps' }, spec: { selector: { matchLabels: { app: 'x' } }, template: { metadata: { labels: { app: 'y' } }, spec: { containers: [] } } } } as KubeObject
    const unknown = { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w', namespace: 'apps' } } as KubeObject
    await control.client().create(ENTANGLE_RESOURCES.manifests, 'ops', manifests([configMap({ a: '1' }), bad, unknown]))
    await waitFor(() => readyOf(control.get(ENTANGLE_RESOURCES.manifests, 'ops', 'b-apps') as Ent)?.reason === 'ApplyFailed', 'ApplyFailed', 10_000)
    const m = control.get(ENTANGLE_RESOURCES.manifests, 'ops', 'b-apps') as Manifests
    expect(m.status?.objects?.map((o) => o.result)).toEqual(['Applied', 'Failed', 'Failed'])
    expect(m.status?.objects?.[1]?.message).toContain('`selector` does not match template `labels`')
    expect(m.status?.objects?.[2]?.message).toContain('is not a kind Manifests applies')
    expect(target.get(RESOURCES.configMaps, 'apps', 'settings')).toBeDefined()
  })

  it('a target that refuses the tunnel: Ready=False Refused with the reason; nothing applied', async () => {
    closer = createServer((s) => { s.destroy() })
    await new Promise<void>((resolve) => closer?.listen(0, '127.0.0.1', resolve))
    const port = (closer.address() as { port: number }).port
    const { control, target } = await setup({ listen: { host: '127.0.0.1', port }, lastError: () => 'not-member: this node shares its Kubernetes API only with the peers in its --allow list: 12D3KooW… (agent-c) is not allowed' })
    await control.client().create(ENTANGLE_RESOURCES.manifests, 'ops', manifests([configMap({ a: '1' })]))
    await waitFor(() => readyOf(control.get(ENTANGLE_RESOURCES.manifests, 'ops', 'b-apps') as Ent)?.reason === 'Refused', 'Refused', 10_000)
    expect(readyOf(control.get(ENTANGLE_RESOURCES.manifests, 'ops', 'b-apps') as Ent)?.message).toContain('is not allowed')
    expect(target.objects(RESOURCES.configMaps, 'apps')).toEqual([])
  })
})
