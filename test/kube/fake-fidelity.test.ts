import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import YAML from 'yaml'
import { ENTANGLE_RESOURCES } from '../../src/node/entangle/resources.js'
import { isKubeError, RESOURCES, type KubeClient, type KubeObject, type ResourceRef } from '../../src/adapters/kube/client.js'
import { FAKE_RESOURCES, MANIFEST_RESOURCES, startFakeKube, type FakeKube } from '../support/fake-kube.js'

/**
 * The fake API server refuses what a real one refuses, for the objects Weft writes and the
 * manifests it ships (issue 14): the three failures seen against kube-apiserver v1.28 are the
 * first three tests. Messages are the real server's.
 */

const DEPLOY = fileURLToPath(new URL('../../deploy', import.meta.url))

async function refusal (p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (err) {
    expect(isKubeError(err, 'Invalid') || isKubeError(err, 'NotFound')).toBe(true)
    return (err as Error).message
  }
  throw new Error('the fake accepted it')
}

/** Every manifest file under deploy/, in the order `kubectl apply -R -f deploy/` reads them. */
function manifestFiles (dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) out.push(...manifestFiles(path))
    else if (/\.(ya?ml|json)$/.test(name)) out.push(path)
  }
  return out
}

function refOf (doc: KubeObject): ResourceRef {
  const r = FAKE_RESOURCES.find((f) => f.ref.kind === doc.kind && (f.ref.group === '' ? f.ref.version : `${f.ref.group}/${f.ref.version}`) === doc.apiVersion)
  if (r === undefined) throw new Error(`the fake does not serve ${doc.apiVersion ?? ''} ${doc.kind ?? ''}`)
  return r.ref
}

/** `kubectl apply` of one document: create, or replace what is there. */
async function apply (client: KubeClient, doc: KubeObject): Promise<void> {
  const ref = refOf(doc)
  const ns = ref.namespaced ? doc.metadata.namespace ?? 'default' : undefined
  const cur = await client.get(ref, ns, doc.metadata.name as string)
  if (cur === undefined) await client.create(ref, ns, doc)
  else await client.replace(ref, ns, { ...doc, metadata: { ...doc.metadata, resourceVersion: cur.metadata.resourceVersion } })
}

function docs (file: string): KubeObject[] {
  return YAML.parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS() as KubeObject).filter((d) => d !== null)
}

// One fake API server per test, for every test of this file.
let fake: FakeKube
let client: KubeClient
beforeEach(async () => {
  fake = await startFakeKube({ namespaces: ['default', 'kube-system', 'shop'] })
  client = fake.client()
})
afterEach(async () => { await fake.close() })

describe('fake API server: what a real one refuses (issue 14 regressions)', () => {
  const slice = (addresses: string[], addressType = 'IPv4'): KubeObject => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'web-abc', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType,
    endpoints: [{ addresses }],
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }]
  } as KubeObject)

  it('1. an EndpointSlice with a loopback endpoint is refused, as by kube-apiserver', async () => {
    const msg = await refusal(client.create(RESOURCES.endpointSlices, 'shop', slice(['127.0.0.1'])))
    expect(msg).toContain('endpoints[0].addresses[0]: Invalid value: "127.0.0.1": may not be in the loopback range')
    for (const [addr, why] of [['169.254.1.1', 'link-local'], ['0.0.0.0', 'unspecified'], ['224.0.0.5', 'link-local multicast']]) {
      expect(await refusal(client.create(RESOURCES.endpointSlices, 'shop', slice([addr as string])))).toContain(why)
    }
    for (const [addr, why] of [['::1', 'loopback'], ['fe80::1', 'link-local'], ['::', 'unspecified']]) {
      expect(await refusal(client.create(RESOURCES.endpointSlices, 'shop', slice([addr as string], 'IPv6')))).toContain(why)
    }
    expect(await refusal(client.create(RESOURCES.endpointSlices, 'shop', slice(['fd00::1'])))).toContain('must be an IPv4 address')
    await client.create(RESOURCES.endpointSlices, 'shop', slice(['10.1.0.5']))
  })

  it('2. a CRD in a protected group (about.k8s.io) without the approval annotation is refused; deploy/ has it', async () => {
    const [crd] = docs(join(DEPLOY, 'crds', 'about.k8s.io_clusterproperties.yaml')) as [KubeObject]
    const { 'api-approved.kubernetes.io': approval, ...rest } = crd.metadata.annotations ?? {}
    expect(approval).toBe('https://github.com/kubernetes/enhancements/pull/3084')
    const bare = { ...crd, metadata: { ...crd.metadata, annotations: rest } }
    const msg = await refusal(client.create(MANIFEST_RESOURCES.customResourceDefinitions, undefined, bare))
    expect(msg).toContain('metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval annotation')
    const junk = { ...crd, metadata: { ...crd.metadata, annotations: { 'api-approved.kubernetes.io': 'yes please' } } }
    expect(await refusal(client.create(MANIFEST_RESOURCES.customResourceDefinitions, undefined, junk))).toContain('protected groups must have approval annotation')
    await client.create(MANIFEST_RESOURCES.customResourceDefinitions, undefined, crd)
    // multicluster.x-k8s.io is not protected ("x-k8s.io" is not a subdomain of k8s.io).
    for (const f of ['multicluster.x-k8s.io_serviceexports.yaml', 'multicluster.x-k8s.io_serviceimports.yaml']) {
      await client.create(MANIFEST_RESOURCES.customResourceDefinitions, undefined, docs(join(DEPLOY, 'crds', f))[0] as KubeObject)
    }
  })

  it('3. every manifest in deploy/ applies in `kubectl apply -R -f deploy/` order; agent.yaml alone is refused without its namespace', async () => {
    const files = manifestFiles(DEPLOY)
    expect(files[0]?.endsWith('00-namespace.yaml')).toBe(true)
    const agent = docs(join(DEPLOY, 'agent.yaml'))[0] as KubeObject
    expect(await refusal(client.create(refOf(agent), 'weft-system', agent))).toContain('namespaces "weft-system" not found')
    for (const file of files) {
      for (const doc of docs(file)) await apply(client, doc)
    }
    // Applying again changes nothing and fails nothing.
    for (const file of files) for (const doc of docs(file)) await apply(client, doc)
    expect(fake.objects(MANIFEST_RESOURCES.customResourceDefinitions).map((c) => c.metadata.name).sort()).toEqual([
      'clusterproperties.about.k8s.io', 'entanglements.weft.io', 'manifests.weft.io', 'serviceexports.multicluster.x-k8s.io', 'serviceimports.multicluster.x-k8s.io'
    ])
    expect(fake.get(MANIFEST_RESOURCES.deployments, 'weft-system', 'weft-agent')).toBeDefined()
    // The entangle pieces (docs/entangle.md): webhook configuration, its Service, the target Role.
    expect(fake.get(ENTANGLE_RESOURCES.mutatingWebhookConfigurations, undefined, 'weft-sidecar-injector')).toBeDefined()
    expect(fake.get(RESOURCES.services, 'weft-system', 'weft-webhook')).toBeDefined()
    expect(fake.get(MANIFEST_RESOURCES.roles, 'weft-managed', 'weft-manifests')).toBeDefined()
  })

  it('4. what the entangle objects need refused: a webhook that could block pods, a pod mounting a missing volume, apply without a field manager', async () => {
    const hook = { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: 'bad' }, webhooks: [{ name: 'x.weft.io', admissionReviewVersions: [], failurePolicy: 'Maybe', clientConfig: { url: 'https://x', service: { namespace: 'a', name: 'b' } }, timeoutSeconds: 60, rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }] }] } as KubeObject
    const msg = await refusal(client.create(ENTANGLE_RESOURCES.mutatingWebhookConfigurations, undefined, hook))
    for (const part of ['webhooks[0].admissionReviewVersions: Required value', 'webhooks[0].sideEffects: Required value', 'webhooks[0].failurePolicy: Unsupported value: "Maybe"', 'webhooks[0].clientConfig: Required value: exactly one of url or service', 'webhooks[0].timeoutSeconds']) expect(msg).toContain(part)
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'default' }, spec: { containers: [{ name: 'a', image: 'x', volumeMounts: [{ name: 'nope', mountPath: '/d' }], securityContext: { runAsNonRoot: true, runAsUser: 0 } }] } } as KubeObject
    const pmsg = await refusal(client.create(MANIFEST_RESOURCES.pods, 'default', pod))
    expect(pmsg).toContain('spec.containers[0].volumeMounts[0].name: Not found: "nope"')
    expect(pmsg).toContain('runAsNonRoot')
    const r = await fetch(`${fake.url}/api/v1/namespaces/default/configmaps/c`, { method: 'PATCH', headers: { authorization: `Bearer ${fake.token}`, 'content-type': 'application/apply-patch+yaml' }, body: JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' } }) })
    expect(r.status).toBe(400)
    expect(JSON.stringify(await r.json())).toContain('fieldManager: Required value: is required for apply patch')
  })
})

describe('fake API server: validation and defaulting of the objects Weft writes', () => {
  type Svc = KubeObject & { spec: Record<string, unknown>, status?: unknown }
  const service = (spec: Record<string, unknown>): Svc => ({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec } as Svc)

  it('defaults a Service server-side: type, clusterIP from the Service CIDR, protocol, targetPort, families, status', async () => {
    const created = await client.create<Svc>(RESOURCES.services, 'shop', service({ ports: [{ port: 80 }] }))
    expect(created.spec).toMatchObject({
      type: 'ClusterIP', sessionAffinity: 'None', internalTrafficPolicy: 'Cluster', ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack',
      ports: [{ port: 80, protocol: 'TCP', targetPort: 80 }]
    })
    expect(created.spec.clusterIP).toMatch(/^10\.43\./)
    expect(created.spec.clusterIPs).toEqual([created.spec.clusterIP])
    expect(created.status).toEqual({ loadBalancer: {} })
    // An update that leaves clusterIP out keeps it; one that changes it is refused.
    const kept = await client.replace<Svc>(RESOURCES.services, 'shop', { ...service({ ports: [{ port: 81 }] }), metadata: { name: 'web', namespace: 'shop', resourceVersion: created.metadata.resourceVersion } })
    expect(kept.spec.clusterIP).toBe(created.spec.clusterIP)
    const msg = await refusal(client.replace(RESOURCES.services, 'shop', { ...service({ ports: [{ port: 81 }], clusterIP: 'None' }), metadata: { name: 'web', namespace: 'shop', resourceVersion: kept.metadata.resourceVersion } }))
    expect(msg).toContain('may not change once set')
  })

  it('refuses a Service with a port out of range, two unnamed ports, or a clusterIP outside the range', async () => {
    expect(await refusal(client.create(RESOURCES.services, 'shop', service({ ports: [{ port: 70000 }] })))).toContain('spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive')
    expect(await refusal(client.create(RESOURCES.services, 'shop', service({ ports: [{ port: 80 }, { port: 81 }] })))).toContain('spec.ports[0].name: Required value')
    expect(await refusal(client.create(RESOURCES.services, 'shop', service({ clusterIP: '127.0.0.1', ports: [{ port: 80 }] })))).toContain('provided IP is not in the valid range')
  })

  it('keeps EndpointSlice addressType immutable and checks port numbers', async () => {
    const s = { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'x', namespace: 'shop' }, addressType: 'IPv4', endpoints: [], ports: [{ port: 0 }] } as unknown as KubeObject
    expect(await refusal(client.create(RESOURCES.endpointSlices, 'shop', s))).toContain('ports[0].port: Invalid value: 0')
    const ok = await client.create<KubeObject>(RESOURCES.endpointSlices, 'shop', { ...s, ports: [] } as KubeObject)
    const msg = await refusal(client.replace(RESOURCES.endpointSlices, 'shop', { ...ok, addressType: 'IPv6' } as KubeObject))
    expect(msg).toContain('addressType: Invalid value: "IPv6": field is immutable')
  })

  it('checks names and label lengths and syntax', async () => {
    expect(await refusal(client.create(RESOURCES.services, 'shop', { ...service({ ports: [{ port: 80 }] }), metadata: { name: '1web', namespace: 'shop' } }))).toContain('DNS-1035')
    const long = { ...service({ ports: [{ port: 80 }] }), metadata: { name: 'web', namespace: 'shop', labels: { app: 'x'.repeat(64) } } }
    expect(await refusal(client.create(RESOURCES.services, 'shop', long))).toContain('metadata.labels')
  })

  it('checks conditions written through a status subresource, and an Event\'s namespace', async () => {
    const se = await client.create<KubeObject>(RESOURCES.serviceExports, 'shop', { apiVersion: 'multicluster.x-k8s.io/v1beta1', kind: 'ServiceExport', metadata: { name: 'web', namespace: 'shop' } })
    const bad = { ...se, status: { conditions: [{ type: 'Ready', status: 'Maybe', reason: 'no spaces allowed', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }] } }
    const msg = await refusal(client.replaceStatus(RESOURCES.serviceExports, 'shop', bad as KubeObject))
    expect(msg).toContain('status.conditions[0].status: Unsupported value')
    expect(msg).toContain('status.conditions[0].reason')
    const ev = { apiVersion: 'v1', kind: 'Event', metadata: { name: 'web.1', namespace: 'shop' }, involvedObject: { kind: 'ServiceExport', namespace: 'default', name: 'web' }, reason: 'ImportFailed', message: 'x', type: 'Warning' }
    expect(await refusal(client.create(RESOURCES.events, 'shop', ev as KubeObject))).toContain('does not match event.namespace')
  })
})
