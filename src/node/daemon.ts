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
import { Ed25519Verifier, seedOf, type NodeIdentity } from '../log/identity.js'
import { sealKeyFromSeed, type SealKey } from '../log/seal.js'
import { peerIdFromString } from '@libp2p/peer-id'
import { Admission } from './admission.js'
import { TransportKeyring } from './transport-keyring.js'
import { identifiers, networkIdBytes } from '../log/token.js'
import type { SignedEvent } from '../log/event.js'
import { replicaReducers, type ReplicaReducers } from '../projections/reducers.js'
import { Mesh, type MeshPeer } from '../net/mesh.js'
import { PeerBook } from '../net/peer-book.js'
import { treatAsPublic } from '../net/public-ranges.js'
import { replicaPort } from '../net/replica-port.js'
import { planAgent, type DesiredNode } from '../projections/agent-plan.js'
import { leaseOf } from '../projections/ipam.js'
import type { NetworkState } from '../projections/network.js'
import { parseServiceAddress, type UpConfig } from './config.js'
import { weftVersion } from './version.js'
import { metricsSources } from './metrics-sources.js'
// Loaded only when configured (issue 16: a node pays for what it runs): the VPN, DNS, MCS, k3s
// and Kubernetes client modules are imported at their point of use.
import type { Vpn } from './vpn.js'
import type { DnsService } from './dns-service.js'
import { LocalServices, servicesFileStore } from './local-services.js'
import { serviceRoutes } from './service-api.js'
import { KUBE_API_CAP, KubeApiShare, KubeProxies, kubeApiTargetFromKubeconfig, kubeProxyRoutes } from './kube-share.js'
import type { McsAgent } from './mcs/agent.js'
import type { EntangleFeature } from './entangle/entangle-feature.js'
import type { KubeClient } from '../adapters/kube/client.js'
import { ClusterName } from '../log/bodies.js'
import type { K3sProcess } from '../adapters/k3s-process.js'
import { isK3sWait, planK3s } from '../projections/k3s-plan.js'
import { deriveRoles } from '../projections/roles.js'
import { fetchClusterKubeconfig, KubeconfigError, locateKubeconfigSource, rewriteKubeconfigServer, serveKubeconfig } from '../net/kubeconfig-protocol.js'
import { k3sClusterToken } from '../log/token.js'

/**
 * The address pods reach this node at (EndpointSlice endpoints of imported services):
 * --service-address, else the overlay address, else POD_IP (deploy/agent.yaml; a host-network
 * pod's is the node's). Never loopback: the API server refuses it.
 */
function serviceHost (config: UpConfig, overlay: string | undefined): string | undefined {
  if (config.serviceAddress !== undefined) return config.serviceAddress
  if (overlay !== undefined) return overlay
  const pod = process.env.POD_IP
  if (pod === undefined || pod === '') return undefined
  try {
    return parseServiceAddress(pod)
  } catch {
    return undefined
  }
}

/** The IP hosts of the mesh's TCP listen addresses: where the VPN's direct path listens too. */
function listenHosts (listen: readonly string[]): string[] {
  const hosts = new Set<string>()
  for (const ma of listen) {
    const m = /^\/ip[46]\/([^/]+)\/tcp\//.exec(ma)
    if (m !== null) hosts.add(m[1] as string)
  }
  return [...hosts]
}

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
  private entangle: EntangleFeature | undefined
  private k3s: K3sProcess | undefined
  private k3sConfigPath = ''
  private kubeconfig: { stop: () => Promise<void> | void } | undefined
  private admission: Admission | undefined
  private seal: SealKey | undefined
  private lastK3sWait: string | undefined
  private planning = false
  private replan = false
  private lastBlocked: string | undefined
  /** First start: the join waits for a first sync (see holdJoin); open once it may go. */
  private joinGateOpen = false
  private joinTimer: NodeJS.Timeout | undefined
  private stopped = false
  readonly startedAt: number

  private constructor (
    readonly config: UpConfig,
    readonly identity: NodeIdentity,
    readonly replica: Replica<ReplicaReducers>,
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
      const { createHttpKubeClient, loadKubeConfig } = await import('../adapters/kube/http-client.js')
      const { clusterId } = await import('../adapters/kube/client.js')
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
    const keyring = await TransportKeyring.open(config.dataDir, config.token)
    const seal = sealKeyFromSeed(seedOf(identity))
    let admission: Admission | undefined
    let replica: Replica<ReplicaReducers>
    try {
      replica = await Replica.open({ db, net, reducers: replicaReducers(), signer: identity, verifier, ...(config.token.owner !== undefined ? { owner: config.token.owner } : {}) })
    } catch (err) {
      await db.close()
      throw err
    }
    // Members' addresses from the log, identify and dials, redialled first after a restart.
    const peerBook = await PeerBook.open(join(config.dataDir, 'peers.json'), { now, log })
    const bookMembers = (): void => {
      for (const m of replica.states().network.members.active.values()) if (m.author !== identity.authorHex) peerBook.add(m.peerId, m.addrs, 0)
    }
    bookMembers()
    // Before the host exists: libp2p reads its list of private ranges for every address.
    if (config.publicRanges.length > 0) treatAsPublic(config.publicRanges)
    let mesh: Mesh
    try {
      mesh = await Mesh.start({
        peerBook,
        ...(config.publicDiscovery ? { public: { bootstrap: config.bootstrap } } : {}),
        isLogMember: (p) => { for (const m of replica.states().network.members.active.values()) if (m.peerId === p) return true; return false },
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
        denyPeer: (p, epoch) => admission?.denied(p, epoch) ?? false,
        transportKeys: keyring,
        log,
        now
      })
    } catch (err) {
      await replica.close()
      throw err
    }
    const d = new Daemon(config, identity, replica, mesh, log, now)
    admission = new Admission({
      replica, keyring, net, self: identity.authorHex, seal, log, now,
      hangUp: async (p) => { await mesh.host.hangUp(peerIdFromString(p)) }
    })
    d.admission = admission
    d.seal = seal
    await admission.update()
    let deviceReady: Promise<void> = Promise.resolve()
    try {
      if (config.tun) {
        const { Vpn } = await import('./vpn.js')
        const direct = config.directPort === 'off' ? undefined : { protocol: identifiers(config.token).directProtocol, hosts: listenHosts(config.listen), port: config.directPort }
        d.vpn = await Vpn.start({ host: mesh.host, protocol: identifiers(config.token).packetProtocol, tunName: config.tunName, self: identity.authorHex, log, now, ...(direct !== undefined ? { direct } : {}) })
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
        const { DnsService } = await import('./dns-service.js')
        d.dns = new DnsService({
          listen: config.dns,
          upstreams: config.dnsUpstreams,
          allow: config.dnsAllow,
          clusterSetIps: (ns, name) => d.mcs?.clusterSetIps(ns, name),
          state: () => replica.states().network,
          self: identity.authorHex,
          log
        })
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
        store: servicesFileStore(join(config.dataDir, 'services.json')),
        serviceAddresses: true
      })
      d.kubeProxies = new KubeProxies({ self: identity.authorHex, state: () => replica.states().network, client: d.services.client, share: d.kubeShare, log })
      if (kube !== undefined) {
        if (!config.tun && serviceHost(config, undefined) === undefined) {
          // Said once, here: exports work, imports get their ServiceImport and Service but no
          // endpoints (never a loopback one, which the API server refuses).
          log.error('the MCS agent has no address pods reach this node at: imported services get no endpoints here. Without the TUN device there is no overlay address; give --service-address <ip>, or set POD_IP (the downward API, as in deploy/agent.yaml). Loopback cannot be used: the API server refuses it in an EndpointSlice.')
        }
        const services = d.services
        const { McsAgent } = await import('./mcs/agent.js')
        d.mcs = new McsAgent({
          kube,
          cluster: config.cluster,
          self: identity.authorHex,
          append: async (type, body) => await replica.append(type, body as never, now()),
          state: () => replica.states().network,
          // Pods reach the node at --service-address, its overlay address (k3s --node-ip) or POD_IP.
          tunnels: {
            listen: async (svc, port) => {
              const host = serviceHost(config, d.vpn !== undefined ? leaseOf(replica.states().network.ipam, identity.authorHex, 4)?.addr : undefined)
              return host === undefined ? undefined : await services.importListener(svc, port, host)
            },
            close: async (svc, port) => { await services.closeImportListener(svc, port) }
          },
          log,
          now
        })
      }
      if (kube !== undefined && config.entangle) {
        // docs/entangle.md: one lifecycle unit (start after the services, onState, status, stop).
        const { EntangleFeature } = await import('./entangle/entangle-feature.js')
        d.entangle = new EntangleFeature({ ...(config.entangleWebhook !== undefined ? { webhook: config.entangleWebhook } : {}), ...(config.sidecarImage !== undefined ? { sidecarImage: config.sidecarImage } : {}) })
      }
      if (config.k3s) {
        const { K3sProcess, k3sPaths } = await import('../adapters/k3s-process.js')
        d.k3sConfigPath = k3sPaths(config.dataDir).config
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
      if (added.some((e) => e.fields.type === 'node.join')) bookMembers()
      const state = replica.states().network
      const applied = d.vpn?.apply(state) ?? Promise.resolve()
      // DNS answers change now; an "overlay" listener binds once the device has the address.
      if (d.dns !== undefined) void applied.then(async () => { await d.dns?.update() })
      d.applyK3s(state, applied)
      void d.services?.update()
      d.mcs?.update()
      d.entangle?.onState()
      void d.admission?.update().catch((err: unknown) => { log.error({ err: (err as Error).message }, 'admission update failed') })
    })
    try {
      // After onChange: events it appends (withdrawn exposes) are pushed like any other.
      await d.services?.start()
      await d.mcs?.start()
      if (d.entangle !== undefined && kube !== undefined && d.services !== undefined && d.kubeProxies !== undefined) {
        await d.entangle.start({
          kube,
          cluster: config.cluster,
          networkId: identifiers(config.token).networkId,
          state: () => replica.states().network,
          services: d.services,
          serviceHost: () => serviceHost(config, d.vpn !== undefined ? leaseOf(replica.states().network.ipam, identity.authorHex, 4)?.addr : undefined),
          kubeProxies: d.kubeProxies,
          peers: () => advertisedAddrs(mesh.listenAddrs()),
          log,
          now
        })
      }
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
        metrics: () => metricsSources({ mesh: this.mesh, ...(this.dns !== undefined ? { dns: this.dns } : {}), ...(this.services !== undefined ? { services: this.services } : {}) }),
        routes: serviceRoutes.map(([path, methods]) => [path, Object.fromEntries(Object.entries(methods).map(([m, h]) => [m, async (body: unknown) => {
          const services = this.services
          if (services === undefined) throw Object.assign(new Error('this node does not run services'), { status: 404, code: 'not_found' })
          return await h(body, { services })
        }]))] as const).concat(kubeProxyRoutes.map(([path, methods]) => [path, Object.fromEntries(Object.entries(methods).map(([m, h]) => [m, async (body: unknown) => {
          const kube = this.kubeProxies
          if (kube === undefined) throw Object.assign(new Error('this node does not run kube proxies'), { status: 404, code: 'not_found' })
          return await h(body, { kube })
        }]))] as const)).concat(this.admission?.routes() ?? [])
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
    // Presence picks which server a joining node is pointed at (never a stopped one while another is up).
    const up = new Set(this.mesh.peers().filter((p) => p.online).map((p) => p.author))
    const plan = planK3s(s, this.identity.authorHex, { tunName: this.config.tunName, extraArgs: this.config.k3sArgs, configPath: this.k3sConfigPath, online: (a) => up.has(a) })
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
      advertise: this.config.advertise,
      ...(this.seal !== undefined ? { seal: this.seal.publicKey } : {})
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
      if (plan.steps[0]?.type === 'node.join' && this.holdJoin()) return
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
      members: this.clusterMembers(peers),
      ...(this.mesh.problems().length > 0 ? { problems: this.mesh.problems() } : {}),
      self: {},
      ...(this.vpn !== undefined ? { vpn: this.vpn.status() } : {}),
      ...(this.k3s !== undefined ? { k3s: { ...this.k3s.status() } } : {}),
      ...(this.mcs !== undefined ? { mcs: { ...this.mcs.status() } } : {}),
      ...(this.entangle !== undefined ? { entangle: this.entangle.status() } : {}),
      ...(this.kubeShare !== undefined ? { kubeShare: { ...this.kubeShare.stats() } } : {}),
      ...(this.dns !== undefined ? { dns: { listen: this.dns.addresses().map((a) => `${a.proto}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`), upstreams: this.config.dnsUpstreams } } : {}),
      sync: { rounds: this.mesh.sync.stats.sessions + this.mesh.sync.stats.served, eventsPulled: this.mesh.sync.stats.eventsPulled, lastRoundAt: this.mesh.sync.stats.lastRoundAt }
    }
  }

  /** This node's cluster members, online or not (presence), for `weft status`. */
  private clusterMembers (peers: readonly MeshPeer[]): NonNullable<NodeStatus['members']> {
    const s = this.replica.states().network
    const view = deriveRoles(s.roles, s.members, s.settings.values).find((c) => c.cluster === this.config.cluster)
    const seen = new Map(peers.filter((p) => p.author !== undefined).map((p) => [p.author as string, p]))
    const ms = view?.members ?? []
    const offline = ms.filter((m) => m.author !== this.identity.authorHex && seen.get(m.author)?.online !== true)
    return {
      cluster: this.config.cluster,
      total: ms.length,
      online: ms.length - offline.length,
      ...(view?.votes !== undefined ? { votes: view.votes } : {}),
      offline: offline.map((m) => {
        const lastSeenMs = seen.get(m.author)?.lastSeenMs
        return { author: m.author, hostname: m.hostname, role: m.role, ...(lastSeenMs !== undefined ? { lastSeenMs } : {}) }
      })
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
      // A peer known only through a vouch has no connection address: show what its join says.
      addrs: p.addrs.length > 0 ? p.addrs : [...(hosts.get(p.peerId)?.addrs ?? [])],
      latencyMs: p.latencyMs,
      path: p.path
    }))
  }

  /**
   * A node that is not a member yet and may reach peers (configured, mDNS, or authors already in
   * its log) writes its join only after a first completed sync, so the join follows what exists
   * (its lamport is above the network's, and it sees the decisions already made). After
   * `--join-wait` without one, it joins alone and says so. Checked again every 200 ms meanwhile:
   * a sync that brings nothing new changes no state, so nothing else would wake the agent.
   */
  private holdJoin (): boolean {
    if (this.joinGateOpen) return false
    const c = this.config
    const reachable = c.peers.length > 0 || c.mdns || this.replica.log.authors().some((a) => a !== this.identity.authorHex)
    const synced = this.mesh.sync.stats.lastRoundAt !== undefined
    const waited = this.now() - this.startedAt
    if (!reachable || synced || waited >= c.joinWaitMs) {
      this.joinGateOpen = true
      if (synced) this.log.info({ waitedMs: waited }, 'first sync with a peer done: joining the network')
      else this.log.warn({ waitedMs: waited, peers: c.peers.length, mdns: c.mdns }, reachable ? 'no peer synced with this node within --join-wait: joining the network alone' : 'no peer to reach (no --peer, mDNS off, none known): joining the network alone')
      return false
    }
    if (this.joinTimer === undefined) {
      this.joinTimer = setTimeout(() => { this.joinTimer = undefined; this.schedulePlan() }, Math.min(200, c.joinWaitMs - waited))
      this.joinTimer.unref()
    }
    return true
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    if (this.joinTimer !== undefined) clearTimeout(this.joinTimer)
    if (this.api !== undefined) {
      await this.api.close().catch(() => {})
      await removeApiEndpoint(this.config.dataDir, process.pid).catch(() => {})
    }
    await this.mcs?.stop().catch(() => {})
    await this.entangle?.stop().catch(() => {})
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
