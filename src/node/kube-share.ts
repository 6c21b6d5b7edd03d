import { peerIdFromString } from '@libp2p/peer-id'
import { z } from 'zod'
import { API_PREFIX, DEFAULT_KUBE_PROXY_LISTEN, KUBE_PROXY_ROUTE } from '../adapters/api-types.js'
import { authorName, parseAuthorName } from '../log/author.js'
import { fromHex } from '../log/bytes.js'
import type { NetworkIdentifiers } from '../log/token.js'
import type { NetworkState } from '../projections/network.js'
import type { MeshLogger } from '../net/mesh-logger.js'
import {
  ServiceListener, TunnelServer,
  type ListenerStats, type ResolveResult, type TunnelClient, type TunnelHost, type TunnelLimits, type TunnelTarget, type TunnelTraffic
} from '../net/tcp-tunnel.js'
import { formatHostPort, parseListen } from './service-registry.js'
import { ServiceError } from './local-services.js'

/**
 * Remote control of a cluster's Kubernetes API over the mesh ("entangle-proxy", docs/kube-remote.md).
 *
 * The sharing side (`weft up --share-kube-api --allow <peer>`): `KubeApiShare` answers tunnels
 * for the service key `kube/api` on the TCP tunnel protocol by connecting to this cluster's API
 * server (host:port of the kubeconfig's current cluster). Only the peers in its allow list, by
 * PeerId or by a member's hostname, and only while they are active members, get through; every
 * other one gets a refusal (counted and logged). The bytes are not looked at: TLS runs end to end
 * between kubectl and the API server, and the client authenticates with its own credentials
 * (client certificate or bearer token). The mesh only decides who may reach the port.
 *
 * The client side (`weft kube-proxy --cluster east --listen 127.0.0.1:8001`): `KubeProxies`
 * keeps local listeners; each accepted connection is tunnelled to a member of the cluster that
 * accepts `kube/api` (members advertising the `kube-api` capability first, then the others in
 * join order; a member that does not share refuses at once and the next one is tried).
 */

/** The tunnel service key of a shared Kubernetes API. */
export const KUBE_API_SERVICE = 'kube/api'
/** The port asked for in the tunnel header (any port is accepted: the share has one target). */
export const KUBE_API_PORT = 443
/** The `caps` entry a sharing node may advertise in its `node.join`. */
export const KUBE_API_CAP = 'kube-api'

/** host:port of an API server URL (`https://10.0.0.1:6443`; port 443 when absent). */
export function kubeApiTarget (server: string): TunnelTarget {
  let url: URL
  try {
    url = new URL(server)
  } catch {
    throw new Error(`the kubeconfig's server "${server}" is not a URL`)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(`the kubeconfig's server "${server}" is not an http(s) URL`)
  if (url.pathname !== '/' && url.pathname !== '') throw new Error(`the kubeconfig's server "${server}" has a path; only a host:port API server can be shared`)
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port)
  return { host, port }
}

/** The API server address of a kubeconfig's current cluster (`--kubeconfig`, else as kubectl finds it). */
export async function kubeApiTargetFromKubeconfig (opts: { kubeconfig?: string, context?: string } = {}): Promise<TunnelTarget> {
  const { loadKubeConfig } = await import('../adapters/kube/http-client.js')
  const kc = loadKubeConfig(opts)
  const cluster = kc.getCurrentCluster()
  if (cluster === null) throw new Error('the kubeconfig has no current cluster')
  return kubeApiTarget(cluster.server)
}

/** Check allow-list entries: a PeerId (12D3KooW…) or a hostname. Returns them normalized. */
export function parseAllowList (entries: readonly string[]): string[] {
  const out: string[] = []
  for (const raw of entries) {
    for (const e of raw.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
      if (/^12D3KooW/.test(e)) {
        parseAuthorName(e) // throws a clear error for a malformed peer id
        out.push(e)
      } else if (/^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?$/.test(e)) {
        out.push(e.toLowerCase())
      } else {
        throw new Error(`--allow ${e}: neither a peer id (12D3KooW…) nor a hostname`)
      }
    }
  }
  return [...new Set(out)]
}

export interface KubeRefusal { peerId: string, hostname?: string, reason: string, at: number }

export interface KubeShareStats {
  target: string
  allow: string[]
  /** Tunnels let through to the API server. */
  accepted: number
  /** Tunnels refused (peer not allowed, or not a member). */
  refused: number
  /** The last refusals, newest last (at most 20). */
  refusals: KubeRefusal[]
  /** The tunnel server's counters for kube/api (bytes, active), when this share runs its own server. */
  traffic?: TunnelTraffic
}

export interface KubeApiShareOptions {
  /** The API server, from `kubeApiTargetFromKubeconfig()`. */
  target: TunnelTarget
  /** `--allow` entries: PeerIds or member hostnames. */
  allow: readonly string[]
  /** The folded log now (`replica.states().network`). */
  state: () => NetworkState
  log: MeshLogger
  now?: () => number
}

export class KubeApiShare {
  readonly allow: readonly string[]
  private accepted = 0
  private refused = 0
  private readonly refusals: KubeRefusal[] = []
  private server: TunnelServer | undefined

  constructor (private readonly opts: KubeApiShareOptions) {
    this.allow = parseAllowList(opts.allow)
  }

  get target (): TunnelTarget { return this.opts.target }

  /**
   * The tunnel check for `kube/api`; undefined for any other service (let the next resolver,
   * LocalServices.resolve, answer). Chain it in front of the daemon's tunnel server.
   */
  resolve (service: string, _port: number, author: string): ResolveResult | undefined {
    if (service !== KUBE_API_SERVICE) return undefined
    const peerId = authorName(fromHex(author))
    const member = this.opts.state().members.active.get(author)
    const refuse = (reason: string): ResolveResult => {
      this.refused++
      this.refusals.push({ peerId, ...(member !== undefined ? { hostname: member.hostname } : {}), reason, at: (this.opts.now ?? Date.now)() })
      if (this.refusals.length > 20) this.refusals.shift()
      this.opts.log.warn({ peer: peerId, hostname: member?.hostname, reason }, 'kube-api share: tunnel refused')
      return { refuse: 'not-member', message: `this node shares its Kubernetes API only with the peers in its --allow list: ${reason}` }
    }
    if (member === undefined) return refuse(`${peerId} is not an active member of the network`)
    const allowed = this.allow.includes(peerId) || this.allow.includes(member.hostname.toLowerCase())
    if (!allowed) return refuse(`${peerId} (${member.hostname}) is not allowed`)
    this.accepted++
    this.opts.log.debug({ peer: peerId, hostname: member.hostname }, 'kube-api share: tunnel accepted')
    return this.opts.target
  }

  /**
   * Serve the tunnel protocol with this share alone (tests, or a node without LocalServices).
   * The daemon does not call this: a libp2p protocol has one handler, so it chains `resolve`
   * into the tunnel server it already runs.
   */
  async start (host: Pick<TunnelHost, 'handle' | 'unhandle'>, ids: Pick<NetworkIdentifiers, 'tcpProtocol'>, limits?: Partial<TunnelLimits>): Promise<void> {
    this.server = new TunnelServer({
      host,
      protocol: ids.tcpProtocol,
      resolve: (service, port, author) => this.resolve(service, port, author) ?? { refuse: 'unknown-service', message: `this node does not serve ${service}` },
      ...(limits !== undefined ? { limits } : {}),
      log: this.opts.log
    })
    await this.server.start()
  }

  async stop (): Promise<void> {
    await this.server?.stop()
    this.server = undefined
  }

  stats (): KubeShareStats {
    const traffic = this.server?.stats()[KUBE_API_SERVICE]
    return {
      target: formatHostPort(this.opts.target),
      allow: [...this.allow],
      accepted: this.accepted,
      refused: this.refused,
      refusals: this.refusals.map((r) => ({ ...r })),
      ...(traffic !== undefined ? { traffic } : {})
    }
  }
}

/**
 * Chain tunnel resolvers: the first that answers (not undefined) wins; `last` answers the rest.
 * The daemon: `chainResolve([(s, p, a) => share.resolve(s, p, a)], (s, p, a) => services.resolve(s, p, a))`.
 */
export function chainResolve (
  first: ReadonlyArray<(service: string, port: number, author: string) => ResolveResult | undefined>,
  last: (service: string, port: number, author: string) => ResolveResult | Promise<ResolveResult>
): (service: string, port: number, author: string) => ResolveResult | Promise<ResolveResult> {
  return (service, port, author) => {
    for (const f of first) {
      const r = f(service, port, author)
      if (r !== undefined) return r
    }
    return last(service, port, author)
  }
}

// ---- the client side: local listeners ----------------------------------------------------

/** The members of `cluster` that may share its API, best first: `kube-api` cap, then join order. */
export function kubeApiCandidates (state: NetworkState, cluster: string, self?: string): Array<{ author: string, peerId: string, hostname: string }> {
  return [...state.members.active.values()]
    .filter((m) => m.cluster === cluster && m.author !== self)
    .sort((a, b) => {
      const ca = a.caps.includes(KUBE_API_CAP) ? 0 : 1
      const cb = b.caps.includes(KUBE_API_CAP) ? 0 : 1
      return ca !== cb ? ca - cb : a.joinedLamport - b.joinedLamport
    })
    .map((m) => ({ author: m.author, peerId: m.peerId, hostname: m.hostname }))
}

export const KubeProxyRequestSchema = z.strictObject({
  cluster: z.string().min(1).max(63),
  /** host:port, or a port (127.0.0.1), default 127.0.0.1:8001. */
  listen: z.string().min(1).max(300).optional()
})
export type KubeProxyRequest = z.infer<typeof KubeProxyRequestSchema>
export const KubeProxyStopSchema = z.strictObject({ listen: z.string().min(1).max(300) })
export type KubeProxyStopRequest = z.infer<typeof KubeProxyStopSchema>

export interface KubeProxyResponse { cluster: string, listen: string, created: boolean, members: number }
export interface KubeProxyInfo { cluster: string, listen: string, traffic: ListenerStats }
export interface KubeProxiesResponse { proxies: KubeProxyInfo[], share: KubeShareStats | null }

export { DEFAULT_KUBE_PROXY_LISTEN, KUBE_PROXY_ROUTE }

export interface KubeProxiesOptions {
  /** This node's author (hex): it is not asked itself (its own share is connected to directly). */
  self?: string
  state: () => NetworkState
  /** The daemon's tunnel client (`LocalServices.client`). */
  client: TunnelClient
  /** This node's own share, if it has one: connections for its own cluster go straight to the API server. */
  share?: KubeApiShare
  log: MeshLogger
}

interface ProxyEntry { cluster: string, listener: ServiceListener, bound: TunnelTarget }

/** The local listeners of `weft kube-proxy`, one per listen address. */
export class KubeProxies {
  private readonly proxies = new Map<string, ProxyEntry>()

  constructor (private readonly opts: KubeProxiesOptions) {}

  async open (req: KubeProxyRequest): Promise<KubeProxyResponse> {
    const cluster = req.cluster
    let listen: TunnelTarget
    try {
      listen = parseListen(req.listen ?? DEFAULT_KUBE_PROXY_LISTEN)
    } catch (err) {
      throw new ServiceError(400, 'bad_request', `listen: ${(err as Error).message}`)
    }
    if (listen.port !== 0) {
      const same = this.proxies.get(formatHostPort(listen))
      if (same !== undefined) {
        if (same.cluster === cluster) return { cluster, listen: formatHostPort(same.bound), created: false, members: kubeApiCandidates(this.opts.state(), cluster, this.opts.self).length }
        throw new ServiceError(409, 'conflict', `${formatHostPort(listen)} already carries the API of cluster ${same.cluster}; stop it first`)
      }
    }
    const members = kubeApiCandidates(this.opts.state(), cluster, this.opts.self)
    const ownCluster = this.opts.self === undefined ? undefined : this.opts.state().members.active.get(this.opts.self)?.cluster
    const local = this.opts.share !== undefined && ownCluster === cluster
    if (members.length === 0 && !local) throw new ServiceError(404, 'not_found', `no member of cluster ${cluster} is known (is the name right? see "weft status")`)
    const listener = new ServiceListener({
      client: this.opts.client,
      listen,
      service: KUBE_API_SERVICE,
      port: KUBE_API_PORT,
      pick: () => kubeApiCandidates(this.opts.state(), cluster, this.opts.self).map((m) => peerIdFromString(m.peerId)),
      local: () => {
        const share = this.opts.share
        if (share === undefined || this.opts.self === undefined) return undefined
        return this.opts.state().members.active.get(this.opts.self)?.cluster === cluster ? share.target : undefined
      },
      log: this.opts.log
    })
    let bound: TunnelTarget
    try {
      bound = await listener.start()
    } catch (err) {
      throw new ServiceError(409, 'conflict', `cannot listen on ${formatHostPort(listen)}: ${(err as Error).message}`)
    }
    this.proxies.set(formatHostPort(bound), { cluster, listener, bound })
    this.opts.log.info({ cluster, listen: formatHostPort(bound) }, 'kube-proxy listening')
    return { cluster, listen: formatHostPort(bound), created: true, members: members.length }
  }

  async close (req: KubeProxyStopRequest): Promise<{ stopped: string[] }> {
    let l: TunnelTarget
    try {
      l = parseListen(req.listen)
    } catch (err) {
      throw new ServiceError(400, 'bad_request', `listen: ${(err as Error).message}`)
    }
    const key = formatHostPort(l)
    const e = this.proxies.get(key)
    if (e === undefined) throw new ServiceError(404, 'not_found', `no kube-proxy listens on ${key}`)
    this.proxies.delete(key)
    await e.listener.stop()
    return { stopped: [key] }
  }

  list (): KubeProxiesResponse {
    return {
      proxies: [...this.proxies.entries()].map(([listen, e]) => ({ cluster: e.cluster, listen, traffic: e.listener.stats() })),
      share: this.opts.share?.stats() ?? null
    }
  }

  listenerAt (listen: string): ServiceListener | undefined { return this.proxies.get(listen)?.listener }

  async stop (): Promise<void> {
    const all = [...this.proxies.values()]
    this.proxies.clear()
    await Promise.all(all.map(async (e) => { await e.listener.stop() }))
  }
}

// ---- routes --------------------------------------------------------------------------------

export interface KubeApiContext { kube: KubeProxies }
export type KubeMethod = 'GET' | 'POST' | 'DELETE'

function parseBody<S extends z.ZodType> (schema: S, body: unknown): z.output<S> {
  const r = schema.safeParse(body)
  if (!r.success) throw new ServiceError(400, 'bad_request', `bad body: ${r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ')}`)
  return r.data
}

/** POST /kube-proxy {cluster, listen?} → KubeProxyResponse */
export async function kubeProxyOpenRoute (body: unknown, ctx: KubeApiContext): Promise<KubeProxyResponse> {
  return await ctx.kube.open(parseBody(KubeProxyRequestSchema, body))
}

/** DELETE /kube-proxy {listen} → {stopped} */
export async function kubeProxyCloseRoute (body: unknown, ctx: KubeApiContext): Promise<{ stopped: string[] }> {
  return await ctx.kube.close(parseBody(KubeProxyStopSchema, body))
}

/** GET /kube-proxy → {proxies, share} */
export async function kubeProxyListRoute (_body: unknown, ctx: KubeApiContext): Promise<KubeProxiesResponse> {
  return ctx.kube.list()
}


/** Full paths (/api/v1/kube-proxy), as serviceRoutes: mount them the same way with ctx `{ kube }`. */
export const kubeProxyRoutes: ReadonlyArray<readonly [string, Partial<Record<KubeMethod, (body: unknown, ctx: KubeApiContext) => Promise<unknown>>>]> = [
  [`${API_PREFIX}${KUBE_PROXY_ROUTE}`, { GET: kubeProxyListRoute, POST: kubeProxyOpenRoute, DELETE: kubeProxyCloseRoute }]
]
