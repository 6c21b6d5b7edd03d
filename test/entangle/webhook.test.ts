import { readFileSync } from 'node:fs'
import https from 'node:https'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import jsonpatch from 'fast-json-patch'
import YAML from 'yaml'
import { afterEach, describe, expect, it } from 'vitest'
import { isKubeError, type KubeObject } from '../../src/adapters/kube/client.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import { InjectionWebhook, WEBHOOK_CONFIGURATION } from '../../src/node/entangle/injection-webhook.js'
import { ENTANGLE_RESOURCES } from '../../src/node/entangle/resources.js'
import { review, SIDECAR_NAME, SIDECAR_UID, type SidecarSettings } from '../../src/node/entangle/sidecar.js'
import { certificateExpiry, makeCertificates, needsRotation } from '../../src/node/entangle/webhook-certs.js'
import { MANIFEST_RESOURCES, startFakeKube, type FakeKube } from '../support/fake-kube.js'
import { DEPLOY } from './support.js'

const settings: SidecarSettings = { image: 'ghcr.io/example/weft:0.1.0', cluster: 'east', peers: ['/ip4/10.0.0.5/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'] }

/** Pods as a user (or a Deployment's ReplicaSet) would send them. */
const PODS: Record<string, KubeObject & { spec: Record<string, unknown> }> = {
  nginx: {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: 'web', namespace: 'shop', labels: { app: 'web', 'entanglement.weft.io/name': 'web', 'entanglement.weft.io/port': '8080', 'entanglement.weft.io/direction': 'expose' } },
    spec: {
      containers: [{ name: 'nginx', image: 'nginx:1.27', ports: [{ name: 'http', containerPort: 8080 }], volumeMounts: [{ name: 'conf', mountPath: '/etc/nginx/conf.d' }] }],
      volumes: [{ name: 'conf', configMap: { name: 'nginx-conf' } }]
    }
  },
  // From a ReplicaSet: generateName, annotations present, no volumes, a security context.
  client: {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { generateName: 'client-7d9c5b-', namespace: 'shop', annotations: { 'kubectl.kubernetes.io/restartedAt': '2026-01-01T00:00:00Z' }, labels: { 'entanglement.weft.io/name': 'db', 'entanglement.weft.io/port': '5432', 'entanglement.weft.io/direction': 'consume', 'entanglement.weft.io/namespace': 'data', 'entanglement.weft.io/token-secret': 'net-token' } },
    spec: { securityContext: { runAsNonRoot: true }, restartPolicy: 'Always', containers: [{ name: 'psql', image: 'postgres:16', command: ['sleep', 'infinity'], env: [{ name: 'PGHOST', value: '127.0.0.1' }] }] }
  }
}

function admissionReview (pod: KubeObject, uid = 'b3a0f3f2-7a55-4f0e-9c4e-6d7d8e9f0a1b'): unknown {
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid, kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, namespace: pod.metadata.namespace, operation: 'CREATE', object: pod, dryRun: false } }
}

function patched (pod: KubeObject, answer: { response: { patch?: string } }): KubeObject & { spec: { containers: Array<Record<string, any>>, volumes?: unknown[] } } {
  const ops = JSON.parse(Buffer.from(answer.response.patch ?? 'W10=', 'base64').toString('utf8')) as jsonpatch.Operation[]
  return jsonpatch.applyPatch(structuredClone(pod), ops, true, false).newDocument as never
}

describe('sidecar injection', () => {
  let fake: FakeKube | undefined
  let hook: InjectionWebhook | undefined
  afterEach(async () => {
    await hook?.stop()
    await fake?.close()
    hook = undefined
    fake = undefined
  })

  it('an AdmissionReview of a labelled pod gets a JSON patch whose pod the API server accepts', async () => {
    fake = await startFakeKube({ namespaces: ['default', 'shop'] })
    const client = fake.client()
    for (const [name, pod] of Object.entries(PODS)) {
      const r = review(admissionReview(pod), settings)
      expect(r.answer.response).toMatchObject({ uid: 'b3a0f3f2-7a55-4f0e-9c4e-6d7d8e9f0a1b', allowed: true, patchType: 'JSONPatch' })
      const out = patched(pod, r.answer)
      const created = await client.create(MANIFEST_RESOURCES.pods, 'shop', out).catch((e: unknown) => e)
      expect(isKubeError(created), `${name}: ${String(created)}`).toBe(false)
      const sidecar = out.spec.containers.find((c) => c.name === SIDECAR_NAME)
      expect(out.spec.containers.length).toBe(2)
      // Least privilege: not root, no capabilities, no escalation, no TUN device.
      expect(sidecar?.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: SIDECAR_UID, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } })
      expect(JSON.stringify(sidecar)).not.toContain('/dev/net/tun')
      expect(sidecar?.securityContext.privileged).toBeUndefined()
    }
    const nginx = patched(PODS.nginx as KubeObject, review(admissionReview(PODS.nginx as KubeObject), settings).answer)
    expect(nginx.spec.containers[1]?.args).toEqual(['sidecar', '--direction', 'expose', '--service', 'shop/web', '--port', '8080', '--cluster', 'east', '--hostname', '$(POD_NAME)', '--data-dir', '/var/lib/weft', '--peer', settings.peers[0]])
    expect(nginx.spec.volumes?.length).toBe(2)
    const client2 = patched(PODS.client as KubeObject, review(admissionReview(PODS.client as KubeObject), settings).answer)
    expect(client2.spec.containers[1]?.args.slice(0, 7)).toEqual(['sidecar', '--direction', 'consume', '--service', 'data/db', '--port', '5432'])
    expect(client2.spec.containers[1]?.env[0]).toEqual({ name: 'WEFT_TOKEN', valueFrom: { secretKeyRef: { name: 'net-token', key: 'token' } } })
    expect(client2.metadata.annotations?.['entanglement.weft.io/injected']).toBe('consume data/db:5432')
    // Injected once: a pod that has the sidecar already gets no patch.
    expect(review(admissionReview(nginx), settings).answer.response.patch).toBeUndefined()
  })

  it('fail-open: unparsable requests, unlabelled or wrongly labelled pods and other kinds are allowed unchanged', () => {
    for (const body of [undefined, 'garbage', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }, { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u1', object: 'not a pod' } }]) {
      const r = review(body, settings)
      expect(r.answer.response.allowed).toBe(true)
      expect(r.answer.response.patch).toBeUndefined()
    }
    expect(review({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u1', object: 'x' } }, settings).answer.response.uid).toBe('u1')
    const plain = { ...PODS.nginx, metadata: { name: 'p', namespace: 'shop', labels: { app: 'x' } } } as KubeObject
    expect(review(admissionReview(plain), settings).answer.response.patch).toBeUndefined()
    const wrong = { ...PODS.nginx, metadata: { name: 'p', namespace: 'shop', labels: { 'entanglement.weft.io/name': 'web', 'entanglement.weft.io/port': '99999', 'entanglement.weft.io/direction': 'expose' } } } as KubeObject
    const w = review(admissionReview(wrong), settings)
    expect(w.answer.response.patch).toBeUndefined()
    expect(w.answer.response.warnings?.[0]).toContain('entanglement.weft.io/port must be a port')
  })

  it('serves TLS with its own CA (a client trusting only that CA), writes the caBundle, and rotates', async () => {
    fake = await startFakeKube({ namespaces: ['default', 'weft-system'] })
    const docs = YAML.parseAllDocuments(readFileSync(join(DEPLOY, 'webhook.yaml'), 'utf8')).map((d) => d.toJS() as KubeObject)
    const mwc = docs.find((d) => d.kind === 'MutatingWebhookConfiguration') as KubeObject
    await fake.client().create(ENTANGLE_RESOURCES.mutatingWebhookConfigurations, undefined, mwc)
    // The agent's clock starts three weeks back, so that "two thirds later" is the real now
    // (certificates are checked against the real clock by TLS).
    let now = Date.now() - 21 * 86_400_000
    hook = new InjectionWebhook({ listen: { host: '127.0.0.1', port: 0 }, dnsNames: ['weft-webhook.weft-system.svc'], ips: ['127.0.0.1'], sidecar: () => settings, kube: fake.client(), log: silentLogger, now: () => now, validityMs: 30 * 86_400_000 })
    const at = await hook.start()
    const bundleOf = (): string => Buffer.from((fake?.get(ENTANGLE_RESOURCES.mutatingWebhookConfigurations, undefined, WEBHOOK_CONFIGURATION) as unknown as { webhooks: Array<{ clientConfig: { caBundle: string } }> }).webhooks[0]?.clientConfig.caBundle ?? '', 'base64').toString('utf8')
    const firstCa = bundleOf()
    expect(firstCa).toContain('BEGIN CERTIFICATE')
    expect(hook.status().caBundleSynced).toBe(true)
    const post = async (ca: string | undefined, body: unknown): Promise<{ status: number, json: any }> => await new Promise((resolve, reject) => {
      const text = JSON.stringify(body)
      const req = https.request({ host: at.host, port: at.port, path: '/mutate', method: 'POST', agent: false, ...(ca !== undefined ? { ca } : {}), headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } }, (resp) => {
        let got = ''
        resp.setEncoding('utf8').on('data', (d: string) => { got += d }).on('end', () => { resolve({ status: resp.statusCode ?? 0, json: JSON.parse(got) }) })
      })
      req.on('error', reject)
      req.end(text)
    })
    const r = await post(firstCa, admissionReview(PODS.nginx as KubeObject))
    expect(r.status).toBe(200)
    expect(r.json.response.patchType).toBe('JSONPatch')
    // The system trust store does not know the agent's CA.
    await expect(post(undefined, admissionReview(PODS.nginx as KubeObject))).rejects.toThrow(/self.signed|unable to verify|certificate/i)
    // An unparsable body is allowed unchanged, over the same TLS.
    const bad = await post(firstCa, 'not a review')
    expect(bad.json.response).toEqual({ uid: '', allowed: true })

    // Rotation: two thirds of the validity later; the bundle holds the new CA and the old one.
    now += 21 * 86_400_000
    await hook.check()
    const both = bundleOf()
    expect(both.match(/BEGIN CERTIFICATE/g)?.length).toBe(2)
    const newCa = both.replace(firstCa, '')
    expect(newCa).toContain('BEGIN CERTIFICATE')
    expect((await post(newCa, admissionReview(PODS.nginx as KubeObject))).status).toBe(200)
    await expect(post(firstCa, admissionReview(PODS.nginx as KubeObject))).rejects.toThrow()
    expect(hook.status().reviewed).toBeGreaterThanOrEqual(3)
  }, 30_000)

  it('without its MutatingWebhookConfiguration it still serves, says why the caBundle is not synced, and syncs once the configuration exists', async () => {
    fake = await startFakeKube({ namespaces: ['default', 'weft-system'] })
    hook = new InjectionWebhook({ listen: { host: '127.0.0.1', port: 0 }, dnsNames: ['weft-webhook.weft-system.svc'], sidecar: () => settings, kube: fake.client(), log: silentLogger, now: Date.now })
    await hook.start()
    expect(hook.status().caBundleSynced).toBe(false)
    expect(hook.status().lastError).toContain('MutatingWebhookConfiguration weft-sidecar-injector does not exist')
    const docs = YAML.parseAllDocuments(readFileSync(join(DEPLOY, 'webhook.yaml'), 'utf8')).map((d) => d.toJS() as KubeObject)
    fake.put(ENTANGLE_RESOURCES.mutatingWebhookConfigurations, docs.find((d) => d.kind === 'MutatingWebhookConfiguration') as KubeObject)
    await hook.check()
    expect(hook.status()).toMatchObject({ caBundleSynced: true })
    expect(hook.status().lastError).toBeUndefined()
    const bundle = (): string => Buffer.from((fake?.get(ENTANGLE_RESOURCES.mutatingWebhookConfigurations, undefined, WEBHOOK_CONFIGURATION) as unknown as { webhooks: Array<{ clientConfig: { caBundle?: string } }> }).webhooks[0]?.clientConfig.caBundle ?? '', 'base64').toString()
    expect(bundle()).toBe(hook.caBundle())
    // `kubectl apply -f deploy/webhook.yaml` again empties the caBundle: the next check restores it.
    fake.put(ENTANGLE_RESOURCES.mutatingWebhookConfigurations, docs.find((d) => d.kind === 'MutatingWebhookConfiguration') as KubeObject)
    expect(bundle()).toBe('')
    await hook.check()
    expect(bundle()).toBe(hook.caBundle())
  }, 30_000)

  it('certificates: CA and serving certificate verify with node:crypto; rotation is due with a third left', () => {
    const now = new Date()
    const c = makeCertificates({ dnsNames: ['weft-webhook.weft-system.svc', 'weft-webhook.weft-system.svc.cluster.local'], now, validityMs: 90 * 86_400_000 })
    const ca = new X509Certificate(c.caPem)
    const leaf = new X509Certificate(c.certPem)
    expect(ca.ca).toBe(true)
    expect(leaf.ca).toBe(false)
    expect(leaf.checkIssued(ca)).toBe(true)
    expect(leaf.verify(ca.publicKey)).toBe(true)
    expect(leaf.subjectAltName).toBe('DNS:weft-webhook.weft-system.svc, DNS:weft-webhook.weft-system.svc.cluster.local')
    expect(certificateExpiry(c.certPem).getTime()).toBe(Math.floor(c.notAfter.getTime() / 1000) * 1000)
    expect(needsRotation(c, new Date(now.getTime() + 59 * 86_400_000))).toBe(false)
    expect(needsRotation(c, new Date(now.getTime() + 61 * 86_400_000))).toBe(true)
  })
})
