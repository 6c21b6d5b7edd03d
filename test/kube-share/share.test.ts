import { afterEach, describe, expect, it } from 'vitest'
import { identifiers } from '../../src/log/token.js'
import { silentLogger, type MeshLogger } from '../../src/net/mesh-logger.js'
import { TunnelClient } from '../../src/net/tcp-tunnel.js'
import { RESOURCES } from '../../src/adapters/kube/client.js'
import { createHttpKubeClient } from '../../src/adapters/kube/http-client.js'
import {
  chainResolve, KUBE_API_CAP, KUBE_API_SERVICE, KubeApiShare, kubeApiCandidates, kubeApiTarget, kubeApiTargetFromKubeconfig,
  KubeProxies, kubeProxyRoutes, parseAllowList
} from '../../src/node/kube-share.js'
import { ServiceError } from '../../src/node/local-services.js'
import { identity, joinBody, TEST_TOKEN } from '../support/fixtures.js'
import { kubeconfigVia, startFakeKube, type FakeKube } from '../support/fake-kube.js'
import { startServiceNode, stopNodes, waitFor, type ServiceNode } from '../services/support.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'


function recordingLog (): MeshLogger & { warnings: string[] } {
  const warnings: string[] = []
  const log = { ...silentLogger, warnings, warn: (_o: unknown, msg?: string) => { warnings.push(String(msg)) } }
  return log as MeshLogger & { warnings: string[] }
}

describe('kube-api share (entangle-proxy)', () => {
  let nodes: ServiceNode[] = []
  let cleanup: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const c of cleanup.reverse()) await c()
    await stopNodes(nodes)
    nodes = []
    cleanup = []
  })

  it('an allowed peer reaches the API server through its local listener; a peer not allowed is refused, counted and logged', async () => {
    const fake = await startFakeKube({ tls: true })
    cleanup.push(async () => { await fake.close() })
    const a = await startServiceNode(0, [])
    nodes.push(a)
    const b = await startServiceNode(1, [a.addr])
    nodes.push(b)
    const c = await startServiceNode(2, [a.addr])
    nodes.push(c)
    await a.replica.append('node.join', { ...joinBody('alpha', 'east'), caps: [KUBE_API_CAP] }, Date.now())
    await b.replica.append('node.join', joinBody('beta', 'west'), Date.now())
    await c.replica.append('node.join', joinBody('gamma', 'west'), Date.now())
    for (const n of nodes) await waitFor(() => n.replica.states().network.members.active.size === 3, `node ${n.n} sees 3 members`)

    const ids = identifiers(TEST_TOKEN)
    const log = recordingLog()
    const target = await kubeApiTargetFromKubeconfig({ kubeconfig: await writeKc(fake) })
    const share = new KubeApiShare({ target, allow: [identity(1).peerId], state: () => a.replica.states().network, log })
    await share.start(a.mesh.host, ids)
    cleanup.push(async () => { await share.stop() })

    const proxyOf = (n: ServiceNode): KubeProxies => {
      const p = new KubeProxies({ self: n.author, state: () => n.replica.states().network, client: new TunnelClient({ host: n.mesh.host, protocol: ids.tcpProtocol, log: silentLogger }), log: silentLogger })
      cleanup.push(async () => { await p.stop() })
      return p
    }
    const pb = proxyOf(b)
    const opened = await pb.open({ cluster: 'east', listen: '127.0.0.1:0' })
    expect(opened).toMatchObject({ cluster: 'east', created: true, members: 1 })
    // kubectl's view: its own credentials (the fake's bearer token and CA), TLS end to end.
    const kb = createHttpKubeClient(kubeconfigVia(fake, opened.listen))
    const list = await kb.list(RESOURCES.namespaces)
    expect(list.items.map((n) => n.metadata.name)).toContain('kube-system')
    expect(share.stats()).toMatchObject({ accepted: 1, refused: 0 })
    expect(share.stats().traffic?.opened).toBe(1)
    expect(fake.count('list', 'namespaces')).toBe(1)

    const pc = proxyOf(c)
    const openedC = await pc.open({ cluster: 'east', listen: '127.0.0.1:0' })
    const kc = createHttpKubeClient(kubeconfigVia(fake, openedC.listen), { requestTimeoutMs: 10_000 })
    await expect(kc.list(RESOURCES.namespaces)).rejects.toThrow()
    expect(share.stats()).toMatchObject({ accepted: 1, refused: 1 })
    expect(share.stats().refusals[0]).toMatchObject({ peerId: c.mesh.host.peerId.toString(), hostname: 'gamma' })
    expect(log.warnings).toContain('kube-api share: tunnel refused')
    const stats = pc.listenerAt(openedC.listen)?.stats()
    expect(stats?.refused).toBe(1)
    expect(stats?.lastError).toMatch(/only with the peers in its --allow list/)
    expect(fake.count('list', 'namespaces')).toBe(1)

    // Allowing by hostname lets C in.
    await share.stop()
    const byName = new KubeApiShare({ target, allow: ['gamma'], state: () => a.replica.states().network, log })
    await byName.start(a.mesh.host, ids)
    cleanup.push(async () => { await byName.stop() })
    expect((await kc.list(RESOURCES.namespaces)).items.length).toBeGreaterThan(0)
    expect(byName.stats().accepted).toBe(1)
  }, 60_000)

  it('the routes: open, list, conflict, close; no member of the cluster is a 404', async () => {
    const a = await startServiceNode(0, [])
    nodes.push(a)
    await a.replica.append('node.join', joinBody('alpha', 'east'), Date.now())
    const b = await startServiceNode(1, [a.addr])
    nodes.push(b)
    await b.replica.append('node.join', joinBody('beta', 'west'), Date.now())
    await waitFor(() => b.replica.states().network.members.active.size === 2, 'b sees a')
    const ids = identifiers(TEST_TOKEN)
    const kube = new KubeProxies({ self: b.author, state: () => b.replica.states().network, client: new TunnelClient({ host: b.mesh.host, protocol: ids.tcpProtocol, log: silentLogger }), log: silentLogger })
    cleanup.push(async () => { await kube.stop() })
    const routes = new Map(kubeProxyRoutes)
    const r = routes.get('/api/v1/kube-proxy')
    if (r?.POST === undefined || r.GET === undefined || r.DELETE === undefined) throw new Error('routes missing')
    await expect(r.POST({ cluster: 'nowhere', listen: '0' }, { kube })).rejects.toMatchObject({ status: 404 })
    await expect(r.POST({ cluster: 'east', listen: 'x' }, { kube })).rejects.toBeInstanceOf(ServiceError)
    await expect(r.POST({ cluster: 'east', bogus: 1 }, { kube })).rejects.toMatchObject({ status: 400 })
    const o = await r.POST({ cluster: 'east', listen: '127.0.0.1:0' }, { kube }) as { listen: string }
    const again = await r.POST({ cluster: 'east', listen: o.listen }, { kube })
    expect(again).toMatchObject({ created: false })
    await expect(r.POST({ cluster: 'west', listen: o.listen }, { kube })).rejects.toMatchObject({ status: 409 })
    expect(await r.GET(undefined, { kube })).toMatchObject({ proxies: [{ cluster: 'east', listen: o.listen }], share: null })
    expect(await r.DELETE({ listen: o.listen }, { kube })).toEqual({ stopped: [o.listen] })
    await expect(r.DELETE({ listen: o.listen }, { kube })).rejects.toMatchObject({ status: 404 })
  }, 30_000)
})

async function writeKc (fake: FakeKube): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-kube-share-'))
  const path = join(dir, 'kubeconfig')
  await fake.writeKubeconfig(path)
  setTimeout(() => { void rm(dir, { recursive: true, force: true }) }, 1000).unref()
  return path
}

describe('kube-share helpers', () => {
  it('kubeApiTarget reads host and port from the server URL', () => {
    expect(kubeApiTarget('https://10.0.0.1:6443')).toEqual({ host: '10.0.0.1', port: 6443 })
    expect(kubeApiTarget('https://api.example.com')).toEqual({ host: 'api.example.com', port: 443 })
    expect(kubeApiTarget('https://[fd00::1]:6443')).toEqual({ host: 'fd00::1', port: 6443 })
    expect(() => kubeApiTarget('https://x/k8s/clusters/c-1')).toThrow(/path/)
    expect(() => kubeApiTarget('nope')).toThrow(/not a URL/)
  })

  it('parseAllowList takes peer ids and hostnames, comma-separated or repeated', () => {
    const pid = identity(1).peerId
    expect(parseAllowList([`${pid},Beta`, 'gamma', 'beta'])).toEqual([pid, 'beta', 'gamma'])
    expect(() => parseAllowList(['12D3KooWnope'])).toThrow()
    expect(() => parseAllowList(['a b'])).toThrow(/neither/)
  })

  it('chainResolve asks the share first and LocalServices for everything else', async () => {
    const share = { resolve: (s: string) => (s === KUBE_API_SERVICE ? { host: 'k', port: 1 } : undefined) }
    const r = chainResolve([(s) => share.resolve(s)], () => ({ refuse: 'unknown-service', message: 'no' }))
    expect(await r('kube/api', 443, 'x')).toEqual({ host: 'k', port: 1 })
    expect(await r('default/web', 80, 'x')).toMatchObject({ refuse: 'unknown-service' })
  })

  it('candidates: kube-api cap first, then join order, never self', () => {
    const m = (author: string, cluster: string, joinedLamport: number, caps: string[] = []): [string, unknown] => [author, { author, peerId: `p-${author}`, hostname: `h-${author}`, cluster, joinedLamport, caps }]
    const state = { members: { active: new Map([m('a', 'east', 1), m('b', 'east', 2, [KUBE_API_CAP]), m('c', 'east', 3), m('d', 'west', 0)]) } } as never
    expect(kubeApiCandidates(state, 'east', 'c').map((x) => x.author)).toEqual(['b', 'a'])
  })
})
