import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { Replica } from '../../src/adapters/replica.js'
import { IDENTITY_FILE } from '../../src/adapters/identity-file.js'
import { getKubeconfig } from '../../src/cli/get-kubeconfig.js'
import { replicaReducers, type ReplicaReducers } from '../../src/projections/reducers.js'
import { formatToken, identifiers } from '../../src/log/token.js'
import { createHost, type WeftHost } from '../../src/net/host.js'
import { fetchKubeconfig, KubeconfigError, rewriteKubeconfigServer, serveKubeconfig, type KubeconfigService } from '../../src/net/kubeconfig-protocol.js'
import { Mesh } from '../../src/net/mesh.js'
import { LogBuilder, join as joinBody } from '../projections/support.js'
import { memoryDb, NET, TEST_TOKEN } from '../support/fixtures.js'
import { startLoopbackMesh } from '../net/support.js'
import type { NodeIdentity } from '../../src/log/identity.js'

const PROTOCOL = identifiers(TEST_TOKEN).kubeconfigProtocol

/** What k3s writes to /etc/rancher/k3s/k3s.yaml (certificates shortened). */
const K3S_YAML = `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTi1DQQ==
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: LS0tLS1DRVJULQ==
    client-key-data: LS0tLS1LRVktLQ==
`

interface Node { replica: Replica<ReplicaReducers>, mesh: Mesh, addr: string }

async function startNode (b: LogBuilder, i: number, peers: string[]): Promise<Node> {
  const replica = await Replica.open({ db: memoryDb(), net: NET, reducers: replicaReducers(), sync: false })
  const mesh = await startLoopbackMesh(b.ids[i] as NodeIdentity, replica, peers)
  return { replica, mesh, addr: mesh.listenAddrs()[0] as string }
}

/** A data dir holding only a node key, as a member's (or an outsider's) would. */
function dataDirOf (root: string, b: LogBuilder, i: number): string {
  const dir = join(root, `dd${i}`)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  writeFileSync(join(dir, IDENTITY_FILE), (b.ids[i] as { exportPem: () => string }).exportPem(), { mode: 0o600 })
  return dir
}

describe('kubeconfig over the mesh', () => {
  const b = new LogBuilder(6)
  // 0 = the init master (m0), 1 = another node (n1), 2 = a workstation (client), 3 = not a member,
  // 4 and 5 = cluster "edge", which has no stable decision.
  let master: Node
  let peer: Node
  let outsider: WeftHost
  let service: KubeconfigService
  let kubeconfig: string | undefined = K3S_YAML
  let root: string

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'weft-kubeconfig-'))
    master = await startNode(b, 0, [])
    b.append(0, 'node.join', { ...joinBody('m0'), addrs: [master.addr] })
    b.append(0, 'ip.claim', { addr: '10.1.0.1' })
    b.append(1, 'node.join', joinBody('n1'), { seesAll: true })
    b.append(1, 'ip.claim', { addr: '10.1.0.2' })
    b.append(2, 'node.join', joinBody('laptop', 'default', 'client'), { seesAll: true })
    b.append(2, 'ip.claim', { addr: '10.1.0.3' })
    for (const a of [0, 1, 2]) b.ack(a, 'default', { seesAll: true })
    // Cluster edge: two nodes booting at once, never hearing of each other afterwards.
    b.append(4, 'node.join', joinBody('e4', 'edge'))
    b.append(5, 'node.join', joinBody('e5', 'edge'))
    await master.replica.ingest(b.events)
    peer = await startNode(b, 1, [master.addr])
    await peer.replica.ingest(b.events)
    const state = (): ReturnType<Replica<ReplicaReducers>['states']>['network'] => master.replica.states().network
    service = await serveKubeconfig({
      host: master.mesh.host,
      protocol: PROTOCOL,
      isMember: (a) => state().members.active.has(a),
      read: async () => kubeconfig,
      cluster: 'default'
    })
    outsider = await createHost({ token: TEST_TOKEN, net: NET, identity: b.ids[3] as never, listen: [], mdns: false, relay: false })
    await outsider.start()
    await outsider.dial(master.mesh.host.getMultiaddrs()[0] as never)
  })

  afterAll(async () => {
    await service.stop().catch(() => {})
    await outsider.stop()
    for (const n of [peer, master]) { await n.mesh.stop().catch(() => {}); await n.replica.close() }
    rmSync(root, { recursive: true, force: true })
  })

  it('rewrites only the server address of every cluster', () => {
    const out = rewriteKubeconfigServer(K3S_YAML, 'https://10.1.0.1:6443')
    expect(out).toBe(K3S_YAML.replace('https://127.0.0.1:6443', 'https://10.1.0.1:6443'))
    expect(() => rewriteKubeconfigServer('kind: Config\n', 'https://x:6443')).toThrow(/no clusters/)
  })

  it('a member gets the kubeconfig pointed at the master\'s overlay address', async () => {
    const text = await fetchKubeconfig({ host: peer.mesh.host, peer: master.mesh.host.peerId, protocol: PROTOCOL, cluster: 'default', serverUrl: 'https://10.1.0.1:6443' })
    const doc = parse(text) as { clusters: Array<{ cluster: { server: string } }>, users: unknown }
    expect(doc.clusters[0]?.cluster.server).toBe('https://10.1.0.1:6443')
    expect(doc.users).toEqual((parse(K3S_YAML) as { users: unknown }).users)
    // Unchanged when no address is given.
    expect(await fetchKubeconfig({ host: peer.mesh.host, peer: master.mesh.host.peerId, protocol: PROTOCOL, cluster: 'default' })).toBe(K3S_YAML)
  })

  it('a host with the token whose author is not a member is refused', async () => {
    const err = await fetchKubeconfig({ host: outsider, peer: master.mesh.host.peerId, protocol: PROTOCOL, cluster: 'default' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(KubeconfigError)
    expect(err).toMatchObject({ code: 'not-member', message: expect.stringContaining('not a member of this network') })
  })

  it('says so for another cluster, and when the master has no kubeconfig yet', async () => {
    await expect(fetchKubeconfig({ host: peer.mesh.host, peer: master.mesh.host.peerId, protocol: PROTOCOL, cluster: 'edge' })).rejects.toMatchObject({ code: 'wrong-cluster' })
    kubeconfig = undefined
    try {
      await expect(fetchKubeconfig({ host: peer.mesh.host, peer: master.mesh.host.peerId, protocol: PROTOCOL, cluster: 'default' })).rejects.toMatchObject({ code: 'not-ready' })
    } finally {
      kubeconfig = K3S_YAML
    }
  })

  describe('weft get-kubeconfig', () => {
    const base = { token: formatToken(TEST_TOKEN), mdns: false, timeout: 20_000 }

    it('syncs the log from a peer, finds the stable master, fetches and rewrites', async () => {
      const text = await getKubeconfig({ ...base, dataDir: dataDirOf(root, b, 2), peer: [peer.addr] })
      expect(text).toBe(K3S_YAML.replace('https://127.0.0.1:6443', 'https://10.1.0.1:6443'))
    })

    it('refuses a data dir whose node is not a member, or that has no node key', async () => {
      await expect(getKubeconfig({ ...base, dataDir: dataDirOf(root, b, 3), peer: [peer.addr] })).rejects.toThrow(/is not a member of network .*only members can fetch/)
      await expect(getKubeconfig({ ...base, dataDir: join(root, 'empty'), peer: [peer.addr] })).rejects.toThrow(/no node identity in .*only members/)
    })

    it('says when the cluster has no stable master yet, or no members', async () => {
      await expect(getKubeconfig({ ...base, dataDir: dataDirOf(root, b, 2), peer: [peer.addr], cluster: 'edge' })).rejects.toThrow(/cluster edge has no stable master yet \(tentative/)
      await expect(getKubeconfig({ ...base, dataDir: dataDirOf(root, b, 2), peer: [peer.addr], cluster: 'nosuch' })).rejects.toThrow(/cluster nosuch has no members in the log \(clusters: default, edge\)/)
    })

    it('from a bridge (the client laptop): says it is one, and puts the master\'s refusal in the master\'s mouth (issue 17)', async () => {
      kubeconfig = undefined
      try {
        const err = await getKubeconfig({ ...base, dataDir: dataDirOf(root, b, 2), peer: [peer.addr] }).then(() => new Error('it fetched a kubeconfig'), (e: unknown) => e as Error)
        expect(err.message).toMatch(/^this node is a bridge \(a client-only member\): it runs no k3s and holds no kubeconfig, and fetches it from cluster default's init master; the init master m0 of cluster default answered: no kubeconfig here yet/)
        expect(err.message).not.toMatch(/on this node/)
      } finally {
        kubeconfig = K3S_YAML
      }
      // No master in its cluster: the clusters that have one.
      await expect(getKubeconfig({ ...base, dataDir: dataDirOf(root, b, 2), peer: [peer.addr], cluster: 'edge' })).rejects.toThrow(/this node is a bridge .*cluster edge has no stable master yet .*ask one that has a master with --cluster <name> \(default\)$/)
    })

    it('says when no peer can be reached', async () => {
      const gone = '/ip4/127.0.0.1/tcp/1/p2p/' + peer.mesh.host.peerId.toString()
      await expect(getKubeconfig({ ...base, timeout: 1_500, dataDir: dataDirOf(root, b, 2), peer: [gone] })).rejects.toThrow(/could not sync the log from the peers given with --peer/)
    })

    it('says when the master does not serve kubeconfigs, and when it is offline', async () => {
      await service.stop()
      await expect(getKubeconfig({ ...base, dataDir: dataDirOf(root, b, 2), peer: [peer.addr] })).rejects.toThrow(/does not serve kubeconfigs/)
      await master.mesh.stop()
      await expect(getKubeconfig({ ...base, dataDir: dataDirOf(root, b, 2), peer: [peer.addr] })).rejects.toThrow(/init master m0 .* of cluster default is offline or unreachable/)
    })
  })
})
