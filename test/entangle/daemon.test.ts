import { spawn, type ChildProcess } from 'node:child_process'
import { connect, createServer, type Server } from 'node:net'
import { networkInterfaces } from 'node:os'
import https from 'node:https'
import { join } from 'node:path'
import jsonpatch from 'fast-json-patch'
import { afterAll, describe, expect, it } from 'vitest'
import { RESOURCES, type KubeObject } from '../../src/adapters/kube/client.js'
import type { EndpointSlice } from '../../src/adapters/kube/types.js'
import { formatToken, newToken } from '../../src/log/token.js'
import { ENTANGLE_RESOURCES, type Manifests } from '../../src/node/entangle/resources.js'
import { CLI } from '../cli/helpers.js'
import { startDaemon, tempDir, waitFor, type DaemonProc } from '../mesh/daemons.js'
import { MANIFEST_RESOURCES, startFakeKube, type FakeKube } from '../support/fake-kube.js'
import { readFileSync } from 'node:fs'
import YAML from 'yaml'
import { DEPLOY, installCrds, putTokenSecret, readyOf, type Ent } from './support.js'

/** A non-loopback address of this machine: what pods reach the agent at (--service-address). */
const hostIp = Object.values(networkInterfaces()).flat().find((a) => a !== undefined && !a.internal && a.family === 'IPv4')?.address

function echoServer (prefix: string): Promise<{ server: Server, port: number }> {
  return new Promise((resolve) => {
    const server = createServer((s) => { s.once('data', (d: Buffer) => { s.end(prefix + d.toString()) }) })
    server.listen(0, '127.0.0.1', () => { resolve({ server, port: (server.address() as { port: number }).port }) })
  })
}

async function freePort (): Promise<number> {
  const { server, port } = await echoServer('')
  await new Promise<void>((resolve) => server.close(() => { resolve() }))
  return port
}

function ask (host: string, port: number, text: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const s = connect(port, host, () => { s.write(text) })
    let got = ''
    s.setTimeout(5000, () => s.destroy(new Error('timeout')))
    s.setEncoding('utf8').on('data', (d: string) => { got += d }).on('end', () => { resolve(got) }).on('error', reject)
  })
}

const ent = (name: string, spec: Record<string, unknown>): Ent => ({ apiVersion: 'weft.io/v1alpha1', kind: 'Entanglement', metadata: { name, namespace: 'shop' }, spec: { tokenSecretRef: { name: 'weft-token' }, ...spec } })

/**
 * Three agents (`weft up --kubeconfig … --entangle`) on fake clusters a, b and c, over real
 * libp2p on loopback: an Entanglement in a exposes a TCP echo server, consumed in b through the
 * Service the agent creates and through an injected sidecar (a `weft sidecar` process started
 * with exactly the args the webhook injected); a pod of b exposes its port through a sidecar,
 * consumed in a; a Manifests object in a applies a ConfigMap and a Deployment to b through b's
 * shared API and deletes them when removed; c, not in b's --allow, is refused.
 */
if (hostIp === undefined) console.log('skipping the entangle daemon test: this machine has no non-loopback IPv4 address for --service-address')
describe.skipIf(hostIp === undefined)('entangle end to end: Entanglement, sidecars and Manifests across clusters', () => {
  const token = newToken()
  const tokenText = formatToken(token)
  const procs: DaemonProc[] = []
  const sidecars: ChildProcess[] = []
  const fakes: FakeKube[] = []
  const servers: Server[] = []
  let dir: { dir: string, cleanup: () => Promise<void> } | undefined
  afterAll(async () => {
    for (const s of sidecars) s.kill('SIGTERM')
    await Promise.all(procs.map(async (p) => await p.stop()))
    await Promise.all(fakes.map(async (f) => { await f.close() }))
    for (const s of servers) s.close()
    await dir?.cleanup()
  })

  it('exposes, consumes (Service and sidecar, both directions), applies manifests and refuses a non-allowed cluster', async () => {
    dir = await tempDir('weft-entangle-')
    const d = dir.dir
    const [fa, fb, fc] = [await startFakeKube({ namespaces: ['default', 'kube-system', 'shop', 'ops'] }), await startFakeKube({ namespaces: ['default', 'kube-system', 'shop', 'apps', 'weft-system'] }), await startFakeKube({ namespaces: ['default', 'kube-system', 'ops'] })]
    fakes.push(fa, fb, fc)
    for (const f of [fa, fb, fc]) installCrds(f)
    // b runs the injection webhook: its configuration (deploy/webhook.yaml) gets b's caBundle.
    const hookCfg = YAML.parseAllDocuments(readFileSync(join(DEPLOY, 'webhook.yaml'), 'utf8')).map((x) => x.toJS() as KubeObject).find((x) => x.kind === 'MutatingWebhookConfiguration') as KubeObject
    fb.put(ENTANGLE_RESOURCES.mutatingWebhookConfigurations, hookCfg)
    for (const f of [fa, fb]) putTokenSecret(f, 'shop', 'weft-token', token)
    await fa.writeKubeconfig(join(d, 'a.kubeconfig'))
    await fb.writeKubeconfig(join(d, 'b.kubeconfig'))
    await fc.writeKubeconfig(join(d, 'c.kubeconfig'))
    const common = (c: string): string[] => ['--kubeconfig', join(d, `${c}.kubeconfig`), '--cluster', c, '--service-address', hostIp as string, '--entangle']
    const a = await startDaemon({ token: tokenText, dataDir: join(d, 'a'), name: 'agent-a', extra: common('a') })
    procs.push(a)
    const b = await startDaemon({ token: tokenText, dataDir: join(d, 'b'), name: 'agent-b', peers: [a.listen[0] as string], extra: [...common('b'), '--entangle-webhook', '127.0.0.1:0', '--sidecar-image', 'weft:test', '--share-kube-api', '--allow', 'agent-a'] })
    procs.push(b)
    const c = await startDaemon({ token: tokenText, dataDir: join(d, 'c'), name: 'agent-c', peers: [a.listen[0] as string], extra: common('c') })
    procs.push(c)

    // 1. a exposes an echo server of its host network; b consumes it through a Service.
    const echoA = await echoServer('a:')
    servers.push(echoA.server)
    const port = await freePort()
    await fa.client().create(ENTANGLE_RESOURCES.entanglements, 'shop', ent('echo', { service: 'echo', port, expose: { host: `127.0.0.1:${echoA.port}` } }))
    await fb.client().create(ENTANGLE_RESOURCES.entanglements, 'shop', ent('echo', { service: 'echo', port, consume: { servicePort: 80 } }))
    await waitFor(() => readyOf(fb.get(ENTANGLE_RESOURCES.entanglements, 'shop', 'echo') as Ent)?.status === 'True', 'the consuming Entanglement in b to be Ready', 30_000)
    // a writes its own status when its agent sees the export folded; b can be Ready first
    // (one full run saw no condition on a yet at this point).
    await waitFor(() => readyOf(fa.get(ENTANGLE_RESOURCES.entanglements, 'shop', 'echo') as Ent)?.reason === 'Exposed', 'the exposing Entanglement in a to say Exposed', 30_000)
    const slice = fb.get(RESOURCES.endpointSlices, 'shop', 'echo-weft') as EndpointSlice
    expect(slice.endpoints[0]?.addresses[0]).toBe(hostIp)
    // What kube-proxy does for the Service: to its EndpointSlice's endpoint.
    expect(await ask(slice.endpoints[0]?.addresses[0] as string, slice.ports?.[0]?.port as number, 'hello')).toBe('a:hello')

    // 2. A pod of b labelled to consume echo: the webhook's patch, the pod accepted by b's API
    // server, and its sidecar run as a process (the pod's localhost is this host's).
    const status = await b.get('/api/v1/status') as { entangle: { webhook: { listen: string, caBundleSynced: boolean } } }
    const hook = status.entangle.webhook.listen
    expect(status.entangle.webhook.caBundleSynced).toBe(true)
    // The API server's view: trust only the caBundle b wrote, check the Service's DNS name.
    const caBundle = Buffer.from((fb.get(ENTANGLE_RESOURCES.mutatingWebhookConfigurations, undefined, 'weft-sidecar-injector') as unknown as { webhooks: Array<{ clientConfig: { caBundle: string } }> }).webhooks[0]?.clientConfig.caBundle ?? '', 'base64').toString()
    const review = async (labels: Record<string, string>, name: string): Promise<KubeObject & { spec: { containers: Array<{ name: string, args: string[] }> } }> => {
      const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop', labels }, spec: { containers: [{ name: 'app', image: 'busybox:1.36', command: ['sleep', '3600'] }] } }
      const body = JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: `uid-${name}`, kind: { group: '', version: 'v1', kind: 'Pod' }, namespace: 'shop', operation: 'CREATE', object: pod } })
      const answer = await new Promise<{ response: { patch?: string } }>((resolve, reject) => {
        const [host, p] = [hook.slice(0, hook.lastIndexOf(':')), Number(hook.slice(hook.lastIndexOf(':') + 1))]
        const req = https.request({ host, port: p, path: '/mutate', method: 'POST', ca: caBundle, servername: 'weft-webhook.weft-system.svc', agent: false, headers: { 'content-type': 'application/json' } }, (resp) => {
          let got = ''
          resp.setEncoding('utf8').on('data', (x: string) => { got += x }).on('end', () => { resolve(JSON.parse(got) as never) })
        })
        req.on('error', reject)
        req.end(body)
      })
      const out = jsonpatch.applyPatch(structuredClone(pod), JSON.parse(Buffer.from(answer.response.patch ?? '', 'base64').toString()) as jsonpatch.Operation[], true, false).newDocument
      await fb.client().create(MANIFEST_RESOURCES.pods, 'shop', out as KubeObject)
      return out as never
    }
    const runSidecar = (pod: { spec: { containers: Array<{ name: string, args: string[] }> } }, name: string): void => {
      const sc = pod.spec.containers.find((x) => x.name === 'weft-sidecar')
      expect(sc).toBeDefined()
      const args = (sc?.args ?? []).map((x) => x === '$(POD_NAME)' ? name : x === '/var/lib/weft' ? join(d, name) : x)
      const proc = spawn(process.execPath, [CLI, ...args, '--listen', '/ip4/127.0.0.1/tcp/0', '--log-level', 'error'], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, WEFT_TOKEN: tokenText, WEFT_DATA_DIR: '' } })
      sidecars.push(proc)
    }
    const consumer = await review({ 'entanglement.weft.io/name': 'echo', 'entanglement.weft.io/port': String(port), 'entanglement.weft.io/direction': 'consume' }, 'client-pod')
    runSidecar(consumer, 'client-pod')
    let viaSidecar = ''
    await waitFor(async () => {
      viaSidecar = await ask('127.0.0.1', port, 'from the pod').catch(() => '')
      return viaSidecar !== ''
    }, 'the consume sidecar to carry a connection', 40_000)
    expect(viaSidecar).toBe('a:from the pod')

    // 3. The other direction: a pod of b exposes its port through its sidecar; a consumes it.
    const echoPod = await echoServer('pod:')
    servers.push(echoPod.server)
    const exposer = await review({ 'entanglement.weft.io/name': 'echo-b', 'entanglement.weft.io/port': String(echoPod.port), 'entanglement.weft.io/direction': 'expose' }, 'server-pod')
    runSidecar(exposer, 'server-pod')
    await fa.client().create(ENTANGLE_RESOURCES.entanglements, 'shop', ent('echo-b', { service: 'echo-b', port: echoPod.port, consume: {} }))
    await waitFor(() => readyOf(fa.get(ENTANGLE_RESOURCES.entanglements, 'shop', 'echo-b') as Ent)?.status === 'True', 'a to consume the pod\'s service', 40_000)
    const back = fa.get(RESOURCES.endpointSlices, 'shop', 'echo-b-weft') as EndpointSlice
    let reply = ''
    await waitFor(async () => {
      reply = await ask(back.endpoints[0]?.addresses[0] as string, back.ports?.[0]?.port as number, 'to the pod').catch(() => '')
      return reply !== ''
    }, 'a connection from a to the pod in b', 30_000)
    expect(reply).toBe('pod:to the pod')

    // 4. Manifests in a: a ConfigMap and a Deployment applied to b over the mesh; deleted with it.
    const creds = (f: FakeKube): KubeObject => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'cluster-b', namespace: 'ops' }, data: { kubeconfig: Buffer.from(fb.kubeconfigYaml()).toString('base64') } } as KubeObject)
    fa.put(ENTANGLE_RESOURCES.secrets, creds(fa))
    fc.put(ENTANGLE_RESOURCES.secrets, creds(fc))
    const objects = [
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: 'apps' }, data: { mode: 'remote' } },
      { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'apps' }, spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] } } } }
    ]
    const m: Manifests = { apiVersion: 'weft.io/v1alpha1', kind: 'Manifests', metadata: { name: 'to-b', namespace: 'ops' }, spec: { cluster: 'b', credentialsSecretRef: { name: 'cluster-b' }, manifests: objects as never } }
    await fa.client().create(ENTANGLE_RESOURCES.manifests, 'ops', m)
    await waitFor(() => readyOf(fa.get(ENTANGLE_RESOURCES.manifests, 'ops', 'to-b') as Ent)?.status === 'True', 'the Manifests applied to b', 40_000)
    expect((fb.get(RESOURCES.configMaps, 'apps', 'settings') as unknown as { data: unknown }).data).toEqual({ mode: 'remote' })
    expect(fb.get(MANIFEST_RESOURCES.deployments, 'apps', 'web')).toBeDefined()

    // 5. c is not in b's --allow: refused, nothing applied by it.
    await fc.client().create(ENTANGLE_RESOURCES.manifests, 'ops', { ...m, spec: { ...m.spec, manifests: [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'from-c', namespace: 'apps' }, data: {} }] as never } })
    await waitFor(() => readyOf(fc.get(ENTANGLE_RESOURCES.manifests, 'ops', 'to-b') as Ent)?.reason === 'Refused', 'c to be refused', 40_000)
    expect(readyOf(fc.get(ENTANGLE_RESOURCES.manifests, 'ops', 'to-b') as Ent)?.message).toMatch(/not allowed/)
    expect(fb.get(RESOURCES.configMaps, 'apps', 'from-c')).toBeUndefined()
    const share = await b.get('/api/v1/status') as { kubeShare: { refused: number } }
    expect(share.kubeShare.refused).toBeGreaterThan(0)

    await fa.client().delete(ENTANGLE_RESOURCES.manifests, 'ops', 'to-b')
    await waitFor(() => fa.get(ENTANGLE_RESOURCES.manifests, 'ops', 'to-b') === undefined, 'the Manifests to go once its objects are deleted in b', 30_000)
    expect(fb.get(RESOURCES.configMaps, 'apps', 'settings')).toBeUndefined()
    expect(fb.get(MANIFEST_RESOURCES.deployments, 'apps', 'web')).toBeUndefined()
  }, 240_000)
})
