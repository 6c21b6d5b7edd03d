import { AddressFilter, overlayNetworks } from '../net/address-filter.js'
import { arch, platform } from 'node:os'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { loadOrCreateIdentity } from '../adapters/identity-file.js'
import { openLevel } from '../adapters/level-db.js'
import { Replica } from '../adapters/replica.js'
import { ensureApiToken, removeApiEndpoint, readApiEndpoint, writeApiEndpoint } from '../adapters/api-token.js'
import { startApiServer, type ApiServer } from '../adapters/http-api.js'
import type { NodeStatus, PeerStatus } from '../adapters/api-types.js'
import { isWeftError, WeftError } from '../log/errors.js'
import { Ed25519Verifier, type NodeIdentity } from '../log/identity.js'
import { identifiers, networkIdBytes } from '../log/token.js'
import type { SignedEvent } from '../log/event.js'
import { cliReducers, type CliReducers } from '../cli/reducers.js'
import { Mesh } from '../net/mesh.js'
import { replicaPort } from '../net/replica-port.js'
import { planAgent, type DesiredNode } from '../projections/agent-plan.js'
import { leaseOf } from '../projections/ipam.js'
import type { NetworkState } from '../projections/network.js'
import type { UpConfig } from './config.js'
import { weftVersion } from './version.js'
import { Vpn } from './vpn.js'
import { DnsService } from './dns-service.js'
import { LocalServices, servicesFileStore } from './local-services.js'
import { serviceRoutes } from './service-api.js'
import { KUBE_API_CAP, KubeApiShare, KubeProxies, kubeApiTargetFromKubeconfig, kubeProxyRoutes } from './kube-share.js'
import { McsAgent } from './mcs/agent.js'
import { createHttpKubeClient, loadKubeConfig } from '../adapters/kube/http-client.js'
import { clusterId, type KubeClient } from '../adapters/kube/client.js'
import { ClusterName } from '../log/bodies.js'
import { K3sProcess, k3sPaths } from '../adapters/k3s-process.js'
import { isK3sWait, planK3s } from '../projections/k3s-plan.js'
import { fetchClusterKubeconfig, KubeconfigError, locateKubeconfigSource, rewriteKubeconfigServer, serveKubeconfig } from '../net/kubeconfig-protocol.js'
import { k3sClusterToken } from '../log/token.js'

export interface DaemonOptions {
  config: UpConfig
  log: Logger
  now?: () => number
  /** mDNS query interval (tests shorten it). */
  mdnsIntervalMs?: number
}

/**
 * A running node: the composition root. It owns the data dir (identity key, LevelDB store, API
 * token), the mesh, the node agent and the HTTP API, and stops them in the reverse order.
 */
export class Daemon {
  private api: ApiServer | undefined
  private vpn: Vpn | undefined
  private dns: DnsService | undefined
  private services: LocalServices | undefined
  private kubeShare: KubeApiShare | undefined
  private kubeProxies: KubeProxies | undefined
  private mcs: McsAgent | undefined
  private k3s: K3sProcess | undefined
  private kubeconfig: { stop: () => Promise<void> | void } | undefined
  private lastK3sWait: string | undefined
  private planning = false
  private replan = false
  private lastBlocked: string | undefined
  private stopped = false
  readonly startedAt: number

  private constructor (
    readonly config: UpConfig,
    readonly identity: NodeIdentity,
    readonly replica: Replica<CliReducers>,
    readonly mesh: Mesh,
    private readonly log: Logger,
    private readonly now: () => number
  ) {
    this.startedAt = now()
  }

  static async start (opts: DaemonOptions): Promise<Daemon> {
    const { log } = opts
    let config = opts.config
    // With a Kubernetes cluster and no --cluster, the cluster is named as MCS (KEP-2149) says:
    // its cluster.clusterset.k8s.io ClusterProperty, else the kube-system namespace's uid.
    let kube: KubeClient | undefined
    if (config.kubeconfig !== undefined) {
      kube = createHttpKubeClient(loadKubeConfig(config.kubeconfig === 'in-cluster' ? {} : { kubeconfig: config.kubeconfig }))
      const id = await clusterId(kube)
      if (!config.clusterGiven) {
        if (!ClusterName.safeParse(id).success) {
          throw new WeftError('ERR_BAD_CONFIG', `the cluster id ${JSON.stringify(id)} (from the cluster.clusterset.k8s.io ClusterProperty) is not a DNS label; give --cluster <name>`)
        }
        config = { ...config, cluster: id }
      } else if (id !== config.cluster && !/^[0-9a-f-]{36}$/.test(id)) {
        log.warn({ cluster: config.cluster, clusterProperty: id }, 'the cluster.clusterset.k8s.io ClusterProperty names this cluster differently from --cluster; Weft uses --cluster')
      }
    }
    const now = opts.now ?? Date.now
    await mkdir(config.dataDir, { recursive: true, mode: 0o700 })
    const identity = await loadOrCreateIdentity(config.dataDir)
    let db
    try {
      db = await openLevel(join(config.dataDir, 'events'))
    } catch (err) {
      if (isWeftError(err, 'ERR_STORE_LOCKED')) {
        const running = await readApiEndpoint(config.dataDir).catch(() => undefined)
        throw new WeftError('ERR_STORE_LOCKED', `another weft daemon${running !== undefined ? ` (pid ${running.pid})` : ''} is already running on ${config.dataDir}: stop it first, or give this one another --data-dir`)
      }
      throw err
    }
    const net = networkIdBytes(config.token)
    const verifier = new Ed25519Verifier()
    let replica: Replica<CliReducers>
    try {
      replica = await Replica.open({ db, net, reducers: cliReducers(), signer: identity, verifier })
    } catch (err) {
      await db.close()
      throw err
    }
    let mesh: Mesh
    try {
      mesh = await Mesh.start({
        token: config.token,
        identity,
        verifier,
        replica: replicaPort(replica),
        listen: config.listen,
        // Never the TUN, other tunnels or the overlay itself as the mesh's path (docs/vpn.md).
        addressFilter: new AddressFilter({
          ...(config.tun ? { tunName: config.tunName } : {}),
          include: config.pathInclude,
          exclude: config.pathExclude,
          overlay: () => overlayNetworks(replica.states().network, identity.authorHex)
        }),
        peers: config.peers,
        mdns: config.mdns,
        mdnsIntervalMs: opts.mdnsIntervalMs,
        syncIntervalMs: config.syncIntervalMs,
        log,
        now
      })
    } catch (err) {
      await replica.close()
      throw err
    }
    const d = new Daemon(config, identity, replica, mesh, log, now)
    let deviceReady: Promise<void> = Promise.resolve()
    try {
      if (config.tun) {
        d.vpn = await Vpn.start({ host: mesh.host, protocol: identifiers(config.token).packetProtocol, tunName: config.tunName, self: identity.authorHex, log, now })
        deviceReady = d.vpn.apply(replica.states().network)
      }
      // Served even without --k3s: a member asking this node gets "not a server here" rather
      // than an unknown protocol.
      d.kubeconfig = await serveKubeconfig({
        host: mesh.host,
        protocol: identifiers(config.token).kubeconfigProtocol,
        isMember: (a) => replica.states().network.members.active.has(a),
        read: async () => await d.k3s?.readKubeconfig(),
        cluster: config.cluster,
        log
      })
      if (config.dns.length > 0) {
        d.dns = new DnsService({ listen: config.dns, upstreams: config.dnsUpstreams, state: () => replica.states().network, self: identity.authorHex, log })
        await d.dns.update()
        if (d.dns.addresses().length === 0 && config.dns.every((l) => l.host !== 'overlay')) throw new WeftError('ERR_BAD_CONFIG', `the DNS server could not listen on ${config.dns.map((l) => `${l.host}:${l.port}`).join(', ')} (see the log above)`)
      }
      if (config.shareKubeApi) {
        // The API server named by the kubeconfig (or by k3s's own, on a k3s server).
        const kubeconfig = config.kubeconfig === 'in-cluster' ? undefined : config.kubeconfig ?? config.k3sKubeconfig
        d.kubeShare = new KubeApiShare({ target: await kubeApiTargetFromKubeconfig({ kubeconfig }), allow: config.allow, state: () => replica.states().network, log })
      }
      d.services = new LocalServices({
        self: identity.authorHex,
        resolveFirst: (svc, port, author) => d.kubeShare?.resolve(svc, port, author),
        resolveExport: (svc, port) => d.mcs?.resolveExport(svc, port),
        append: async (type, body) => await replica.append(type, body as never, now()),
        state: () => replica.states().network,
        host: mesh.host,
        ids: identifiers(config.token),
        log,
        store: servicesFileStore(join(config.dataDir, 'services.json'))
      })
      d.kubeProxies = new KubeProxies({ self: identity.authorHex, state: () => replica.states().network, client: d.services.client, share: d.kubeShare, log })
      if (kube !== undefined) {
        const services = d.services
        d.mcs = new McsAgent({
          kube,
          cluster: config.cluster,
          self: identity.authorHex,
          append: async (type, body) => await replica.append(type, body as never, now()),
          state: () => replica.states().network,
          // Pods reach the node at its overlay address (k3s --node-ip); without a VPN, loopback.
          tunnels: {
            listen: async (svc, port) => await services.importListener(svc, port, (d.vpn !== undefined ? leaseOf(replica.states().network.ipam, identity.authorHex, 4)?.addr : undefined) ?? '127.0.0.1'),
            close: async (svc, port) => { await services.closeImportListener(svc, port) }
          },
          log,
          now
        })
      }
      if (config.k3s) {
        d.k3s = new K3sProcess({ dataDir: config.dataDir, k3sBin: config.k3sBin, kubeconfigPath: config.k3sKubeconfig, clusterToken: (c) => k3sClusterToken(config.token, c), log })
        d.applyK3s(replica.states().network, deviceReady)
      }
      await d.startApi()
    } catch (err) {
      await d.stop()
      throw err
    }
    replica.onChange((added) => {
      // Every event of our own (the agent's, the API's settings) is pushed, whoever appended it.
      const own = added.filter((e) => e.authorHex === identity.authorHex)
      if (own.length > 0) void mesh.publish(own)
      d.schedulePlan()
      const state = replica.states().network
      const applied = d.vpn?.apply(state) ?? Promise.resolve()
      // DNS answers change now; an "overlay" listener binds once the device has the address.
      if (d.dns !== undefined) void applied.then(async () => { await d.dns?.update() })
      d.applyK3s(state, applied)
      void d.services?.update()
      d.mcs?.update()
    })
    try {
      // After onChange: events it appends (withdrawn exposes) are pushed like any other.
      await d.services?.start()
      await d.mcs?.start()
    } catch (err) {
      await d.stop()
      throw err
    }
    log.info({
      peerId: identity.peerId,
      network: identifiers(config.token).networkId,
      cluster: config.cluster,
      listen: mesh.listenAddrs(),
      api: d.api?.url ?? 'off',
      dns: d.dns?.addresses().map((a) => `${a.proto}://${a.host}:${a.port}`) ?? 'off',
      vpn: d.vpn !== undefined ? config.tunName : 'off',
      events: replica.log.size
    }, 'weft node started')
    d.schedulePlan()
    return d
  }

  private async startApi (): Promise<void> {
    const { config } = this
    if (config.api.kind === 'off') return
    const token = await ensureApiToken(config.dataDir)
    this.api = await startApiServer({
      node: {
        replica: this.replica,
        status: () => this.status(),
        peers: () => this.peers(),
        now: this.now,
        kubeconfig: async (cluster) => await this.kubeconfigOf(cluster),
        routes: serviceRoutes.map(([path, methods]) => [path, Object.fromEntries(Object.entries(methods).map(([m, h]) => [m, async (body: unknown) => {
          const services = this.services
          if (services === undefined) throw Object.assign(new Error('this node does not run services'), { status: 404, code: 'not_found' })
          return await h(body, { services })
        }]))] as const).concat(kubeProxyRoutes.map(([path, methods]) => [path, Object.fromEntries(Object.entries(methods).map(([m, h]) => [m, async (body: unknown) => {
          const kube = this.kubeProxies
          if (kube === undefined) throw Object.assign(new Error('this node does not run kube proxies'), { status: 404, code: 'not_found' })
          return await h(body, { kube })
        }]))] as const))
      },
      listen: config.api,
      token,
      logger: this.log
    })
    await writeApiEndpoint(config.dataDir, {
      url: this.api.url,
      pid: process.pid,
      peerId: this.identity.peerId,
      listen: this.listenAddrs()
    })
  }

  /** Hand the k3s supervisor the plan for `s` once the VPN device has its address (`deviceReady`). */
  private applyK3s (s: NetworkState, deviceReady: Promise<void>): void {
    const k3s = this.k3s
    if (k3s === undefined || this.stopped) return
    const plan = planK3s(s, this.identity.authorHex, { tunName: this.config.tunName, extraArgs: this.config.k3sArgs, configPath: k3sPaths(this.config.dataDir).config })
    if (isK3sWait(plan) && plan.wait !== this.lastK3sWait) this.log.info({ reason: plan.wait }, 'k3s is waiting')
    this.lastK3sWait = isK3sWait(plan) ? plan.wait : undefined
    void deviceReady.then(async () => { await k3s.apply(plan) }).catch((err: unknown) => {
      this.log.error({ err: (err as Error).message }, 'k3s could not be started')
    })
  }

  /** For the API: ask the cluster's init master, or read our own k3s kubeconfig when that is us. */
  private async kubeconfigOf (cluster: string): Promise<string> {
    const state = this.replica.states().network
    const source = locateKubeconfigSource(state, cluster)
    if (source.author === this.identity.authorHex) {
      const text = await this.k3s?.readKubeconfig()
      if (text === undefined) throw new KubeconfigError('not-ready', 'this node is the init master but its k3s has not written a kubeconfig yet (is it running with --k3s?)')
      return rewriteKubeconfigServer(text, source.serverUrl)
    }
    const { kubeconfig } = await fetchClusterKubeconfig({ host: this.mesh.host, state, cluster, protocol: identifiers(this.config.token).kubeconfigProtocol, signal: AbortSignal.timeout(15_000) })
    return kubeconfig
  }

  /** Full multiaddrs (with /p2p/<id>) another node can pass to --peer. */
  listenAddrs (): string[] {
    return this.mesh.listenAddrs()
  }

  desired (): DesiredNode {
    return {
      hostname: this.config.hostname,
      cluster: this.config.cluster,
      role: this.config.role,
      os: platform(),
      arch: arch(),
      version: weftVersion(),
      addrs: advertisedAddrs(this.listenAddrs()).slice(0, 16),
      caps: [...(this.vpn !== undefined ? ['vpn'] : []), ...(this.kubeShare !== undefined ? [KUBE_API_CAP] : [])],
      advertise: this.config.advertise
    }
  }

  /** Run the agent after a change; one run at a time, and once more if changes came meanwhile. */
  schedulePlan (): void {
    if (this.stopped) return
    if (this.planning) { this.replan = true; return }
    this.planning = true
    setImmediate(() => {
      void this.runPlan().finally(() => {
        this.planning = false
        if (this.replan) { this.replan = false; this.schedulePlan() }
      })
    })
  }

  private async runPlan (): Promise<void> {
    // A handful of steps at most; the bound guards against a plan that never settles.
    for (let i = 0; i < 8 && !this.stopped; i++) {
      const plan = planAgent(this.replica.states().network, this.identity.authorHex, this.desired())
      if (plan.blocked !== undefined && plan.blocked !== this.lastBlocked) this.log.warn({ reason: plan.blocked }, 'node agent is waiting')
      this.lastBlocked = plan.blocked
      if (plan.steps.length === 0) return
      try {
        for (const step of plan.steps) {
          const ev = await this.replica.append(step.type, step.body as never, this.now())
          this.log.info({ type: step.type, event: ev.idHex.slice(0, 16), why: step.why, ...('addr' in step.body ? { addr: step.body.addr } : {}), ...('cidr' in step.body ? { cidr: step.body.cidr } : {}) }, 'node agent appended an event')
        }
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'node agent could not append')
        return
      }
    }
  }

  status (): NodeStatus {
    const peers = this.mesh.peers()
    return {
      peerId: this.identity.peerId,
      author: this.identity.authorHex,
      networkId: identifiers(this.config.token).networkId,
      version: weftVersion(),
      hostname: this.config.hostname,
      cluster: this.config.cluster,
      startedAt: this.startedAt,
      uptimeMs: this.now() - this.startedAt,
      listen: this.listenAddrs(),
      api: this.api?.url ?? 'off',
      events: this.replica.log.size,
      authors: this.replica.log.authors().length,
      pending: this.replica.log.pendingCount,
      peers: { connected: peers.filter((p) => p.connected).length, online: peers.filter((p) => p.online).length },
      self: {},
      ...(this.vpn !== undefined ? { vpn: this.vpn.status() } : {}),
      ...(this.k3s !== undefined ? { k3s: { ...this.k3s.status() } } : {}),
      ...(this.mcs !== undefined ? { mcs: { ...this.mcs.status() } } : {}),
      ...(this.kubeShare !== undefined ? { kubeShare: { ...this.kubeShare.stats() } } : {}),
      ...(this.dns !== undefined ? { dns: { listen: this.dns.addresses().map((a) => `${a.proto}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`), upstreams: this.config.dnsUpstreams } } : {}),
      sync: { rounds: this.mesh.sync.stats.sessions + this.mesh.sync.stats.served, eventsPulled: this.mesh.sync.stats.eventsPulled, lastRoundAt: this.mesh.sync.stats.lastRoundAt }
    }
  }

  peers (): PeerStatus[] {
    const hosts = new Map([...this.replica.states().network.members.active.values()].map((m) => [m.peerId, m]))
    return this.mesh.peers().map((p) => ({
      peerId: p.peerId,
      author: p.author ?? hosts.get(p.peerId)?.author,
      hostname: hosts.get(p.peerId)?.hostname,
      connected: p.connected,
      online: p.online,
      lastSeenMs: p.lastSeenMs,
      addrs: p.addrs,
      latencyMs: p.latencyMs,
      path: p.path
    }))
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    if (this.api !== undefined) {
      await this.api.close().catch(() => {})
      await removeApiEndpoint(this.config.dataDir, process.pid).catch(() => {})
    }
    await this.mcs?.stop().catch(() => {})
    await this.kubeProxies?.stop().catch(() => {})
    await this.services?.stop().catch(() => {})
    await this.dns?.stop().catch(() => {})
    await this.kubeconfig?.stop()
    if (this.k3s !== undefined) await this.k3s.stop().catch((err: unknown) => { this.log.warn({ err: (err as Error).message }, 'k3s did not stop cleanly') })
    if (this.vpn !== undefined) await this.vpn.stop().catch((err: unknown) => { this.log.warn({ err: (err as Error).message }, 'VPN did not stop cleanly') })
    await this.mesh.stop().catch((err: unknown) => { this.log.warn({ err: (err as Error).message }, 'mesh did not stop cleanly') })
    await this.replica.close()
    this.log.info({}, 'weft node stopped')
  }
}

/** Loopback addresses are useless to other machines; keep them only when there is nothing else (tests). */
function advertisedAddrs (addrs: string[]): string[] {
  const outside = addrs.filter((a) => !a.startsWith('/ip4/127.') && !a.startsWith('/ip6/::1/'))
  return outside.length > 0 ? outside : addrs
}
