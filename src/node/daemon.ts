import { AddressFilter, overlayNetworks } from '../net/address-filter.js'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { loadOrCreateIdentity } from '../adapters/identity-file.js'
import { openLevel } from '../adapters/level-db.js'
import { Replica } from '../adapters/replica.js'
import { ensureApiToken, removeApiEndpoint, readApiEndpoint, writeApiEndpoint } from '../adapters/api-token.js'
import { startApiServer, type ApiServer } from '../adapters/http-api.js'
import type { NodeLiveStatus, NodeStatus, PeerStatus, Problem } from '../adapters/api-types.js'
import { isWeftError, WeftError } from '../log/errors.js'
import { Ed25519Verifier, seedOf, type NodeIdentity } from '../log/identity.js'
import { sealKeyFromSeed } from '../log/seal.js'
import { peerIdFromString } from '@libp2p/peer-id'
import { Admission } from './admission.js'
import { TransportKeyring } from './transport-keyring.js'
import { identifiers, networkIdBytes } from '../log/token.js'
import { replicaReducers, type ReplicaReducers } from '../projections/reducers.js'
import { Mesh, type MeshPeer } from '../net/mesh.js'
import { PeerBook } from '../net/peer-book.js'
import { treatAsPublic } from '../net/public-ranges.js'
import { replicaPort } from '../net/replica-port.js'
import { metricsSources } from './metrics-sources.js'
import type { DesiredNode } from '../projections/agent-plan.js'
import { deriveRoles } from '../projections/roles.js'
import type { UpConfig } from './config.js'
import { weftVersion } from './version.js'
import { advertisedAddrs, NodeAgent } from './agent.js'
import type { ApiRoute, Feature, FeatureContext } from './feature.js'
// Each feature loads its heavy modules (VPN, DNS, MCS, k3s, Kubernetes client) only when it is
// configured (issue 16: a node pays for what it runs).
import { AdmissionFeature } from './features/admission.js'
import { VpnFeature } from './features/vpn.js'
import { K3sFeature } from './features/k3s.js'
import { KubeconfigFeature } from './features/kubeconfig.js'
import { DnsFeature } from './features/dns.js'
import { KubeShareFeature } from './features/kube-share.js'
import { ServicesFeature } from './features/services.js'
import { connectKube, McsFeature, serviceHost } from './features/mcs.js'
import { NodeChecks } from './features/checks.js'
import { PingFeature } from './features/ping.js'
import { leaseOf } from '../projections/ipam.js'
import { LeaveFeature } from './features/leave.js'
import { ProblemBook } from './problems.js'

/**
 * The overlay networks for the address filter, derived again only when the log changed: libp2p
 * asks for every address it considers, and deriving the route table is quadratic in the
 * advertisements (at 100,000 events, 100 members, it was 2 s of a restart's CPU).
 */
function overlayOf (replica: Replica<ReplicaReducers>, self: string): () => readonly string[] {
  let at: { log: unknown, size: number, folded: number } | undefined
  let nets: readonly string[] = []
  return () => {
    const now = { log: replica.log, size: replica.log.size, folded: replica.fold.length }
    if (at === undefined || at.log !== now.log || at.size !== now.size || at.folded !== now.folded) {
      nets = overlayNetworks(replica.states().network, self)
      at = now
    }
    return nets
  }
}

/** How often the problem checks run (a new problem is logged within this time). */
const PROBLEM_CHECK_MS = 5_000

export interface DaemonOptions {
  config: UpConfig
  log: Logger
  now?: () => number
  /** mDNS query interval (tests shorten it). */
  mdnsIntervalMs?: number
  /** This node left the network (POST /node/leave): the caller stops the daemon. */
  onLeft?: () => void
}

/**
 * A running node: the composition root. It owns the data dir (identity key, LevelDB store, API
 * token), the mesh, the node agent, the features (./feature.ts: VPN, DNS, services, k3s, …) and
 * the HTTP API, and stops them in the reverse order.
 */
export class Daemon {
  private api: ApiServer | undefined
  /** In start order; each gets every new state in this order, and they stop in reverse. */
  private readonly features: Feature[] = []
  private kubeconfig: KubeconfigFeature | undefined
  private onLeft: (() => void) | undefined
  private agent: NodeAgent | undefined
  private readonly problemBook: ProblemBook
  private problemTimer: NodeJS.Timeout | undefined
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
    this.problemBook = new ProblemBook(log, now)
  }

  static async start (opts: DaemonOptions): Promise<Daemon> {
    const { log } = opts
    const { kube, config } = await connectKube(opts.config, log)
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
          overlay: overlayOf(replica, identity.authorHex)
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
    d.onLeft = opts.onLeft
    d.agent = new NodeAgent({ config, identity, replica, mesh, log, now, startedAt: d.startedAt, seal: seal.publicKey, caps: () => d.features.flatMap((f) => f.caps?.() ?? []) })
    admission = new Admission({
      replica, keyring, net, self: identity.authorHex, seal, log, now,
      hangUp: async (p) => { await mesh.host.hangUp(peerIdFromString(p)) }
    })
    await admission.update()
    let vpn: VpnFeature | undefined
    const ctx: FeatureContext = {
      config, identity, replica, mesh, log, now,
      state: () => replica.states().network,
      append: async (type, body) => await replica.append(type as never, body as never, now()),
      deviceReady: () => vpn?.ready() ?? Promise.resolve()
    }
    const add = <F extends Feature>(f: F): F => { d.features.push(f); return f }
    add(new AdmissionFeature(admission, ctx))
    let tunError: string | undefined
    try {
      if (config.tun) {
        try {
          vpn = add(await VpnFeature.start(ctx))
        } catch (err) {
          // No TUN device (not root, no /dev/net/tun): the node runs on without a VPN and says
          // so (problem tun-unavailable) rather than not running at all.
          if (!isWeftError(err, 'ERR_TUN')) throw err
          tunError = (err as Error).message
          log.error({ err: tunError }, 'no VPN: the TUN device could not be opened; running without one')
        }
      }
      add(new NodeChecks(ctx, () => vpn !== undefined, tunError))
      add(new PingFeature(ctx))
      add(new LeaveFeature(ctx, () => { d.agent?.stop() }, () => { d.onLeft?.() }))
      let k3s: K3sFeature | undefined
      let mcs: McsFeature | undefined
      d.kubeconfig = add(await KubeconfigFeature.start(ctx, () => k3s?.k3s))
      if (config.dns.length > 0) add(await DnsFeature.start(ctx, (ns, name) => mcs?.agent.clusterSetIps(ns, name)))
      const kubeShare = config.shareKubeApi ? add(await KubeShareFeature.start(ctx)) : undefined
      const services = add(ServicesFeature.start(ctx, kubeShare?.share, {
        resolveFirst: (svc, port, author) => kubeShare?.share.resolve(svc, port, author),
        resolveExport: (svc, port) => mcs?.agent.resolveExport(svc, port)
      }))
      if (kube !== undefined) mcs = add(await McsFeature.start(ctx, kube, services.services, vpn !== undefined))
      if (kube !== undefined && config.entangle) {
        // docs/entangle.md: one lifecycle unit (start after the services, onState, status, stop).
        const { EntangleFeature } = await import('./entangle/entangle-feature.js')
        const entangle = new EntangleFeature({ ...(config.entangleWebhook !== undefined ? { webhook: config.entangleWebhook } : {}), ...(config.sidecarImage !== undefined ? { sidecarImage: config.sidecarImage } : {}) })
        add({
          name: 'entangle',
          started: async () => {
            await entangle.start({
              kube,
              cluster: config.cluster,
              networkId: identifiers(config.token).networkId,
              state: ctx.state,
              services: services.services,
              serviceHost: () => serviceHost(config, vpn !== undefined ? leaseOf(ctx.state().ipam, identity.authorHex, 4)?.addr : undefined),
              kubeProxies: services.kubeProxies,
              peers: () => advertisedAddrs(mesh.listenAddrs()),
              log,
              now
            })
          },
          onState: (state) => { entangle.onState(state) },
          status: () => ({ entangle: entangle.status() }),
          stop: async () => { await entangle.stop() }
        })
      }
      if (config.k3s) k3s = add(await K3sFeature.start(ctx))
      await d.startApi()
    } catch (err) {
      await d.stop()
      throw err
    }
    replica.onChange((added) => {
      // Every event of our own (the agent's, the API's settings) is pushed, whoever appended it.
      const own = added.filter((e) => e.authorHex === identity.authorHex)
      if (own.length > 0) void mesh.publish(own)
      d.agent?.schedule()
      if (added.some((e) => e.fields.type === 'node.join')) bookMembers()
      const state = replica.states().network
      for (const f of d.features) f.onState?.(state)
    })
    try {
      // After onChange: events they append (withdrawn exposes) are pushed like any other.
      for (const f of d.features) await f.started?.()
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
      dns: d.status().dns?.listen ?? 'off',
      vpn: vpn !== undefined ? config.tunName : 'off',
      events: replica.log.size,
      // How much of the fold a stored checkpoint saved (issue 16.2), or why none was used.
      checkpoint: replica.checkpointStatus,
      // How many events the index snapshot gave (issue 16.2), or why the order index was read whole.
      index: replica.indexStatus
    }, 'weft node started')
    d.agent.schedule()
    d.problemTimer = setInterval(() => { d.problems() }, PROBLEM_CHECK_MS)
    d.problemTimer.unref()
    return d
  }

  /** What is wrong now, from every feature (each new one is logged once at warn). */
  problems (): Problem[] {
    const reports = this.features.flatMap((f) => {
      try {
        return f.problems?.() ?? []
      } catch (err) {
        // A check that fails is a bug; the others still report.
        this.log.error({ err: (err as Error).message, feature: f.name }, 'problem check failed')
        return []
      }
    })
    return this.problemBook.update(reports)
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
        kubeconfig: async (cluster) => {
          if (this.kubeconfig === undefined) throw new Error('the kubeconfig protocol is not running')
          return await this.kubeconfig.kubeconfigOf(cluster)
        },
        metrics: () => {
          const dns = this.features.find((f): f is DnsFeature => f instanceof DnsFeature)?.dns
          const services = this.features.find((f): f is ServicesFeature => f instanceof ServicesFeature)?.services
          return metricsSources({ mesh: this.mesh, ...(dns !== undefined ? { dns } : {}), ...(services !== undefined ? { services } : {}) })
        },
        routes: this.features.flatMap((f): ApiRoute[] => f.routes?.() ?? [])
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

  /** Full multiaddrs (with /p2p/<id>) another node can pass to --peer. */
  listenAddrs (): string[] {
    return this.mesh.listenAddrs()
  }

  desired (): DesiredNode {
    return (this.agent as NodeAgent).desired()
  }

  /** Run the agent after a change; one run at a time, and once more if changes came meanwhile. */
  schedulePlan (): void {
    this.agent?.schedule()
  }

  status (): NodeLiveStatus {
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
      peers: { connected: peers.filter((p) => p.connected).length, online: peers.filter((p) => p.online).length, public: this.mesh.publicConnections() },
      members: this.clusterMembers(peers),
      ...Object.assign({}, ...this.features.map((f) => f.status?.() ?? {})) as Partial<NodeLiveStatus>,
      sync: { rounds: this.mesh.sync.stats.sessions + this.mesh.sync.stats.served, eventsPulled: this.mesh.sync.stats.eventsPulled, lastRoundAt: this.mesh.sync.stats.lastRoundAt },
      problems: this.problems()
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
    const state = this.replica.states().network
    const hosts = new Map([...state.members.active.values()].map((m) => [m.peerId, m]))
    return this.mesh.peers().map((p) => {
      const m = hosts.get(p.peerId)
      const author = p.author ?? m?.author
      const address = author === undefined ? undefined : (leaseOf(state.ipam, author, 4) ?? leaseOf(state.ipam, author, 6))?.addr
      return {
        peerId: p.peerId,
        author,
        hostname: m?.hostname,
        connected: p.connected,
        online: p.online,
        lastSeenMs: p.lastSeenMs,
        // A peer known only through a vouch has no connection address: show what its join says.
        addrs: p.addrs.length > 0 ? p.addrs : [...(m?.addrs ?? [])],
        latencyMs: p.latencyMs,
        path: p.path,
        ...(p.lastSyncMs !== undefined ? { lastSyncMs: p.lastSyncMs } : {}),
        ...(address !== undefined ? { address } : {}),
        ...(m !== undefined ? { vpn: m.caps.includes('vpn') } : {})
      }
    })
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.agent?.stop()
    if (this.problemTimer !== undefined) clearInterval(this.problemTimer)
    if (this.api !== undefined) {
      await this.api.close().catch(() => {})
      await removeApiEndpoint(this.config.dataDir, process.pid).catch(() => {})
    }
    for (const f of [...this.features].reverse()) {
      await f.stop().catch((err: unknown) => { this.log.warn({ err: (err as Error).message, feature: f.name }, `${f.name} did not stop cleanly`) })
    }
    await this.mesh.stop().catch((err: unknown) => { this.log.warn({ err: (err as Error).message }, 'mesh did not stop cleanly') })
    await this.replica.close()
    this.log.info({}, 'weft node stopped')
  }
}
