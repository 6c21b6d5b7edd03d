import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { createRequire } from 'node:module'
import { z } from 'zod'
import { toHex } from '../log/bytes.js'
import type { NetworkState } from '../projections/network.js'
import { deriveRoles } from '../projections/roles.js'
import { leaseOf } from '../projections/ipam.js'
import { k3sServerUrl } from '../projections/k3s-plan.js'
import type { ProtocolHost } from './anti-entropy.js'
import type { MeshLogger } from './mesh-logger.js'
import { silentLogger } from './mesh-logger.js'

/**
 * `/weft/<network id>/kubeconfig/1.0.0`: a member of the network asks the init master of a
 * cluster for the k3s admin kubeconfig. One length-prefixed JSON frame each way:
 *
 *   request   {"v":1,"cluster":"<name>"}
 *   response  {"ok":true,"kubeconfig":"<yaml>"}  or  {"ok":false,"error":{"code":"…","message":"…"}}
 *
 * Only members may ask: the remote peer's Ed25519 key (its author name, as the noise handshake
 * proved it) must be an active member of the log. Without the network token no one gets past
 * the transport protection to begin with.
 */

export type KubeconfigErrorCode =
  /** The asking peer is not a member of the log (server side). */
  | 'not-member'
  /** This node is in another cluster. */
  | 'wrong-cluster'
  /** This node has no kubeconfig to give (k3s not running as a server here, or not written yet). */
  | 'not-ready'
  | 'bad-request'
  /** Client side: the cluster has no stable init master in the log yet. */
  | 'no-master'
  /** Client side: the master has no overlay address in the log. */
  | 'no-address'
  /** Client side: the master could not be dialled, or did not answer in time. */
  | 'unreachable'
  /** Client side: the answer is not a kubeconfig. */
  | 'bad-response'

export class KubeconfigError extends Error {
  constructor (readonly code: KubeconfigErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'KubeconfigError'
  }
}

const MAX_REQUEST_BYTES = 4 * 1024
const MAX_RESPONSE_BYTES = 1024 * 1024
const TIMEOUT_MS = 15_000

const Request = z.strictObject({ v: z.literal(1), cluster: z.string().min(1).max(253) })
const Response = z.union([
  z.strictObject({ ok: z.literal(true), kubeconfig: z.string() }),
  z.strictObject({ ok: z.literal(false), error: z.strictObject({ code: z.string(), message: z.string() }) })
])
type Response = z.infer<typeof Response>

const encode = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value))
const decode = (bytes: Uint8Array): unknown => JSON.parse(new TextDecoder().decode(bytes))

export interface KubeconfigServeOptions {
  host: ProtocolHost
  /** `identifiers(token).kubeconfigProtocol`. */
  protocol: string
  /** True when the author (hex of the Ed25519 key) is an active member of the network. */
  isMember: (author: string) => boolean
  /** The kubeconfig k3s wrote (`K3sProcess.readKubeconfig`), or undefined when there is none here. */
  read: () => Promise<string | undefined>
  /** This node's cluster. */
  cluster: string
  log?: MeshLogger
}

export interface KubeconfigService {
  stop: () => Promise<void>
}

/** Answer kubeconfig requests from members. The file is sent as k3s wrote it (the client rewrites the address). */
export async function serveKubeconfig (opts: KubeconfigServeOptions): Promise<KubeconfigService> {
  const log = opts.log ?? silentLogger
  await opts.host.handle(opts.protocol, async (stream, connection) => { await answer(stream, connection, opts, log) }, { maxInboundStreams: 4, maxOutboundStreams: 1 })
  return { stop: async () => { await opts.host.unhandle(opts.protocol) } }
}

async function answer (stream: Stream, connection: Connection, opts: KubeconfigServeOptions, log: MeshLogger): Promise<void> {
  const signal = AbortSignal.timeout(TIMEOUT_MS)
  const lp = lpStream(stream, { maxDataLength: MAX_REQUEST_BYTES })
  const peer = connection.remotePeer.toString()
  const reply = async (r: Response): Promise<void> => {
    await lp.write(encode(r), { signal })
    await stream.close({ signal }).catch(() => { stream.abort(new Error('kubeconfig stream closed')) })
  }
  const refuse = async (code: KubeconfigErrorCode, message: string): Promise<void> => {
    log.warn({ peer, code }, `kubeconfig request refused: ${message}`)
    await reply({ ok: false, error: { code, message } })
  }
  try {
    let req: z.infer<typeof Request>
    try {
      req = Request.parse(decode((await lp.read({ signal })).subarray()))
    } catch (err) {
      await refuse('bad-request', `not a kubeconfig request: ${(err as Error).message.split('\n')[0] ?? ''}`)
      return
    }
    const key = connection.remotePeer.publicKey?.raw
    const author = key !== undefined && key.byteLength === 32 ? toHex(key) : undefined
    if (author === undefined || !opts.isMember(author)) {
      await refuse('not-member', `peer ${peer} is not a member of this network: only members (nodes that joined with "weft up" or "weft bridge") may fetch the kubeconfig`)
      return
    }
    if (req.cluster !== opts.cluster) {
      await refuse('wrong-cluster', `this node is in cluster ${opts.cluster}, not ${req.cluster}`)
      return
    }
    const kubeconfig = await opts.read()
    if (kubeconfig === undefined) {
      // Relayed by the asker's daemon and CLI: "here", never "this node", which would read as theirs.
      await refuse('not-ready', `no kubeconfig here yet: k3s is not running as a server of cluster ${opts.cluster} on this member (weft up --k3s), or has not written its kubeconfig yet`)
      return
    }
    log.info({ peer, cluster: req.cluster }, 'kubeconfig handed to a member')
    await reply({ ok: true, kubeconfig })
  } catch (err) {
    log.debug({ peer, err: (err as Error).message }, 'kubeconfig request failed')
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  }
}

export interface FetchKubeconfigOptions {
  host: Pick<ProtocolHost, 'dialProtocol'>
  /** The init master. */
  peer: PeerId
  protocol: string
  cluster: string
  /** Rewrite every cluster's `server:` to this URL (`https://<master overlay address>:6443`). */
  serverUrl?: string
  signal?: AbortSignal
}

/** Ask one node for its cluster's kubeconfig; a refusal or failure is a `KubeconfigError`. */
export async function fetchKubeconfig (opts: FetchKubeconfigOptions): Promise<string> {
  const signal = opts.signal === undefined ? AbortSignal.timeout(TIMEOUT_MS) : AbortSignal.any([opts.signal, AbortSignal.timeout(TIMEOUT_MS)])
  let stream: Stream
  try {
    stream = await opts.host.dialProtocol(opts.peer, opts.protocol, { signal })
  } catch (err) {
    if ((err as Error).name === 'UnsupportedProtocolError') {
      throw new KubeconfigError('not-ready', `${opts.peer.toString()} does not serve kubeconfigs (its weft runs without k3s support)`, { cause: err })
    }
    throw new KubeconfigError('unreachable', `cannot reach ${opts.peer.toString()}: ${(err as Error).message}`, { cause: err })
  }
  let res: Response
  try {
    const lp = lpStream(stream, { maxDataLength: MAX_RESPONSE_BYTES })
    await lp.write(encode({ v: 1, cluster: opts.cluster }), { signal })
    const frame = await lp.read({ signal })
    res = Response.parse(decode(frame.subarray()))
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    if (err instanceof z.ZodError || err instanceof SyntaxError) throw new KubeconfigError('bad-response', `${opts.peer.toString()} sent something that is not a kubeconfig answer`, { cause: err })
    throw new KubeconfigError('unreachable', `${opts.peer.toString()} did not answer: ${(err as Error).message}`, { cause: err })
  }
  await stream.close({ signal: AbortSignal.timeout(2_000) }).catch(() => { stream.abort(new Error('kubeconfig stream closed')) })
  if (!res.ok) {
    const known: readonly string[] = ['not-member', 'wrong-cluster', 'not-ready', 'bad-request']
    throw new KubeconfigError(known.includes(res.error.code) ? res.error.code as KubeconfigErrorCode : 'bad-response', res.error.message)
  }
  return opts.serverUrl === undefined ? res.kubeconfig : rewriteKubeconfigServer(res.kubeconfig, opts.serverUrl)
}

/**
 * Point every cluster of a kubeconfig at `serverUrl` (k3s writes `https://127.0.0.1:6443`),
 * keeping everything else, comments included, as it was.
 */
export function rewriteKubeconfigServer (text: string, serverUrl: string): string {
  // Loaded here, not with the daemon: a node that never rewrites a kubeconfig need not hold the
  // yaml library (~200 modules, ~7 MB of RSS; docs/operations.md "What a node loads").
  const { isMap, isSeq, parseDocument } = createRequire(import.meta.url)('yaml') as typeof import('yaml')
  const doc = parseDocument(text)
  if (doc.errors.length > 0) throw new KubeconfigError('bad-response', `the kubeconfig is not valid YAML: ${doc.errors[0]?.message ?? ''}`)
  const clusters = doc.get('clusters')
  if (!isSeq(clusters) || clusters.items.length === 0) throw new KubeconfigError('bad-response', 'the kubeconfig has no clusters')
  for (const item of clusters.items) {
    if (!isMap(item) || !isMap(item.get('cluster'))) throw new KubeconfigError('bad-response', 'the kubeconfig has a cluster entry without a cluster: map')
    item.setIn(['cluster', 'server'], serverUrl)
  }
  // k3s (client-go) writes sequences without indentation; keep its layout.
  return doc.toString({ indentSeq: false })
}

/** Where a cluster's kubeconfig comes from, according to the log. */
export interface KubeconfigSource {
  cluster: string
  /** The init master's author hex, PeerId and hostname. */
  author: string
  peerId: string
  hostname: string
  /** Its overlay address and the URL the kubeconfig is rewritten to. */
  address: string
  serverUrl: string
  /** Listen addresses it advertised when it joined (advisory). */
  addrs: readonly string[]
}

/** The stable init master of `cluster`, or a `KubeconfigError` saying why there is none. Pure. */
export function locateKubeconfigSource (s: NetworkState, cluster: string): KubeconfigSource {
  const views = deriveRoles(s.roles, s.members, s.settings.values)
  const view = views.find((c) => c.cluster === cluster)
  if (view === undefined) {
    const known = views.map((c) => c.cluster)
    throw new KubeconfigError('no-master', `cluster ${cluster} has no members in the log${known.length > 0 ? ` (clusters: ${known.join(', ')})` : ' (the log has no members yet)'}`)
  }
  if (view.status === 'master-gone') throw new KubeconfigError('no-master', `the init master of cluster ${cluster} left the network: ${view.reason ?? ''}`.trim())
  if (view.status !== 'stable' || view.master === undefined) {
    throw new KubeconfigError('no-master', `cluster ${cluster} has no stable master yet (${view.status}${view.reason !== undefined ? `: ${view.reason}` : ''}); k3s starts only once the decision is stable, try again shortly`)
  }
  const m = s.members.active.get(view.master.author)
  if (m === undefined) throw new KubeconfigError('no-master', `the init master of cluster ${cluster} is not a member any more`)
  const address = leaseOf(s.ipam, m.author, 4)?.addr
  if (address === undefined) throw new KubeconfigError('no-address', `the init master ${m.hostname} of cluster ${cluster} has no overlay address yet`)
  return { cluster, author: m.author, peerId: m.peerId, hostname: m.hostname, address, serverUrl: k3sServerUrl(address), addrs: m.addrs }
}

/**
 * Locate the cluster's init master in `state`, ask it, and return its kubeconfig pointed at its
 * overlay address. For a running daemon (its mesh host and replica state) and the CLI alike.
 */
export async function fetchClusterKubeconfig (opts: { host: Pick<ProtocolHost, 'dialProtocol'>, state: NetworkState, cluster: string, protocol: string, signal?: AbortSignal }): Promise<{ kubeconfig: string, source: KubeconfigSource }> {
  const source = locateKubeconfigSource(opts.state, opts.cluster)
  try {
    const kubeconfig = await fetchKubeconfig({ host: opts.host, peer: peerIdFromString(source.peerId), protocol: opts.protocol, cluster: opts.cluster, serverUrl: source.serverUrl, signal: opts.signal })
    return { kubeconfig, source }
  } catch (err) {
    if (err instanceof KubeconfigError && err.code === 'unreachable') {
      throw new KubeconfigError('unreachable', `the init master ${source.hostname} (${source.peerId}) of cluster ${opts.cluster} is offline or unreachable: ${err.message}`, { cause: err })
    }
    // The master's own words, said as its: the asker relays them.
    if (err instanceof KubeconfigError) throw new KubeconfigError(err.code, `the init master ${source.hostname} of cluster ${opts.cluster} answered: ${err.message}`, { cause: err })
    throw err
  }
}

/**
 * The error of a fetch asked by a bridge (a client-only member), worded for one: it holds no
 * kubeconfig and takes no k3s role, so the problem is elsewhere (issue 17: "get-kubeconfig on
 * a bridge blames this node"). For a cluster with no master, the clusters that have one.
 */
export function bridgeKubeconfigError (err: KubeconfigError, s: NetworkState, cluster: string): KubeconfigError {
  const bridge = `this node is a bridge (a client-only member): it runs no k3s and holds no kubeconfig, and fetches it from cluster ${cluster}'s init master`
  if (err.code !== 'no-master') return new KubeconfigError(err.code, `${bridge}; ${err.message}`, { cause: err })
  const ready = deriveRoles(s.roles, s.members, s.settings.values).filter((c) => c.status === 'stable' && c.cluster !== cluster).map((c) => c.cluster)
  const which = ready.length > 0
    ? `ask one that has a master with --cluster <name> (${ready.join(', ')})`
    : 'no cluster has one yet: start nodes with "weft up --k3s" (a bridge takes no k3s role and does not count toward a cluster\'s nodes)'
  return new KubeconfigError(err.code, `${bridge}, and ${err.message}; ${which}`, { cause: err })
}
