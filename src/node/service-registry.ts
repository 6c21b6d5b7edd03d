import { isIP } from 'node:net'
import type { NetworkState } from '../projections/network.js'
import { deriveServices, exportKey, type ExportBody, type ExportStatus, type ServiceImport } from '../projections/services.js'
import { WeftError } from '../log/errors.js'

/**
 * Plain TCP services without Kubernetes (`weft service expose/connect`), as pure functions of
 * the folded log. A node that exposes `<name>` appends a `service.export` for its own cluster,
 * marked with the EXPOSE_ANNOTATION; the services projection turns exports into imports as for
 * any MCS export; a connecting node tunnels to the nodes that authored the exports of the
 * import's clusters. See docs/services.md.
 */

/** Marks a `service.export` made by `weft service expose` (not by a Kubernetes ServiceExport). */
export const EXPOSE_ANNOTATION = 'weft.io/expose'
export const DEFAULT_NAMESPACE = 'default'

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

export interface HostPort { host: string, port: number }

/** What this node exposes: `namespace/name` → where connections go. */
export interface ExposeSpec {
  namespace: string
  name: string
  /** Where this node connects for each tunnel: an IP or a host name, and a port. */
  target: HostPort
  /** The service port in the export (what connectors ask for); the target's port by default. */
  port: number
}

export function serviceKey (namespace: string, name: string): string {
  return `${namespace}/${name}`
}

/** A namespace or service name: an RFC 1123 label, as Kubernetes and the event schema want. */
export function checkLabel (what: string, value: string): string {
  if (value.length === 0 || value.length > 63 || !DNS_LABEL.test(value)) {
    throw new WeftError('ERR_BAD_INPUT', `${what} "${value}" must be an RFC 1123 label: lowercase letters, digits and "-", at most 63, starting and ending with a letter or digit`)
  }
  return value
}

function parsePort (text: string, whole: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new WeftError('ERR_BAD_INPUT', `"${whole}": the port must be a number`)
  const port = Number(text)
  if (port < 1 || port > 65535) throw new WeftError('ERR_BAD_INPUT', `"${whole}": port out of range 1-65535`)
  return port
}

/** `host:port`, `[v6]:port`: the target of an expose (host names allowed; the port is required). */
export function parseTarget (text: string): HostPort {
  const s = text.trim()
  const bracket = /^\[([^\]]+)\]:(\d+)$/.exec(s)
  if (bracket !== null) {
    if (isIP(bracket[1] as string) !== 6) throw new WeftError('ERR_BAD_INPUT', `"${text}": [${bracket[1] as string}] is not an IPv6 address`)
    return { host: bracket[1] as string, port: parsePort(bracket[2] as string, text) }
  }
  const i = s.lastIndexOf(':')
  if (i <= 0 || s.slice(0, i).includes(':')) throw new WeftError('ERR_BAD_INPUT', `"${text}": expected host:port (or [ipv6]:port)`)
  const host = s.slice(0, i)
  if (isIP(host) === 0 && (host.length > 253 || !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host))) {
    throw new WeftError('ERR_BAD_INPUT', `"${text}": "${host}" is neither an IP address nor a host name`)
  }
  return { host, port: parsePort(s.slice(i + 1), text) }
}

/**
 * A local listen address: `port`, `host:port` or `[v6]:port`; an IP (a listener binds an
 * address, not a name); 127.0.0.1 when only a port is given. Port 0 picks a free port.
 */
export function parseListen (text: string): HostPort {
  const s = text.trim()
  if (/^\d{1,5}$/.test(s)) {
    const port = Number(s)
    if (port > 65535) throw new WeftError('ERR_BAD_INPUT', `"${text}": port out of range 0-65535`)
    return { host: '127.0.0.1', port }
  }
  const bracket = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s)
  const host = bracket !== null ? bracket[1] as string : s.slice(0, s.lastIndexOf(':'))
  const portText = bracket !== null ? bracket[2] as string : s.slice(s.lastIndexOf(':') + 1)
  if (isIP(host) === 0 || !/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw new WeftError('ERR_BAD_INPUT', `"${text}": expected a listen address: port, ip:port or [ipv6]:port`)
  }
  return { host, port: Number(portText) }
}

export function formatHostPort (h: HostPort): string {
  return `${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`
}

/** The `service.export` body of a plain expose, for this node's cluster. */
export function exposeExportBody (cluster: string, e: Pick<ExposeSpec, 'namespace' | 'name' | 'port'>): ExportBody {
  return {
    cluster,
    namespace: e.namespace,
    name: e.name,
    type: 'ClusterSetIP',
    ports: [{ protocol: 'TCP', port: e.port }],
    sessionAffinity: 'None',
    labels: {},
    annotations: { [EXPOSE_ANNOTATION]: 'true' }
  }
}

/** Whether two export bodies say the same (key order aside). */
export function sameExport (a: ExportBody, b: ExportBody): boolean {
  return canonical(a) === canonical(b)
}

function canonical (v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`
  }
  return JSON.stringify(v)
}

export function isPlainExpose (body: ExportBody): boolean {
  return body.annotations[EXPOSE_ANNOTATION] === 'true'
}

export type ExposeStep =
  | { type: 'service.export', body: ExportBody, why: string }
  | { type: 'service.unexport', body: { cluster: string, namespace: string, name: string }, why: string }

export interface ExposePlan {
  steps: ExposeStep[]
  /** Local exposes another node of this cluster exports differently (left alone). */
  contested: Array<{ namespace: string, name: string, author: string }>
  /** Set when nothing can be appended yet (this node is not an active member). */
  waiting?: string
}

/**
 * What this node must append so that the log says what it exposes: an export for every local
 * expose its cluster does not export as it would (absent, or its own export with another
 * spec); an unexport for every plain export of its own that it no longer serves (after an
 * unexpose, or a restart that lost it). A cluster exports a name once: when another node of the
 * cluster exports it the same way, nothing is appended; exported differently, it is reported
 * and left alone (two nodes rewriting it in turn would never settle).
 */
export function planExposes (state: NetworkState, self: string, exposes: Iterable<ExposeSpec>): ExposePlan {
  const me = state.members.active.get(self)
  if (me === undefined) return { steps: [], contested: [], waiting: 'this node is not an active member yet' }
  const cluster = me.cluster
  const steps: ExposeStep[] = []
  const contested: ExposePlan['contested'] = []
  const wanted = new Set<string>()
  for (const e of exposes) {
    wanted.add(serviceKey(e.namespace, e.name))
    const body = exposeExportBody(cluster, e)
    const rec = state.services.exports.get(exportKey(e.namespace, e.name, cluster))
    if (rec === undefined) {
      steps.push({ type: 'service.export', body, why: `expose ${serviceKey(e.namespace, e.name)}: cluster ${cluster} does not export it` })
    } else if (!sameExport(rec.spec, body)) {
      if (rec.author === self) steps.push({ type: 'service.export', body, why: `expose ${serviceKey(e.namespace, e.name)}: its export changed` })
      else contested.push({ namespace: e.namespace, name: e.name, author: rec.author })
    }
  }
  for (const rec of state.services.exports.values()) {
    if (rec.author !== self || rec.cluster !== cluster || !isPlainExpose(rec.spec)) continue
    if (wanted.has(serviceKey(rec.namespace, rec.name))) continue
    steps.push({ type: 'service.unexport', body: { cluster, namespace: rec.namespace, name: rec.name }, why: `${serviceKey(rec.namespace, rec.name)} is not exposed here any more` })
  }
  return { steps, contested }
}

/** The import of `namespace/name`, if the projection derives one now. */
export function importOf (state: NetworkState, namespace: string, name: string): ServiceImport | undefined {
  const view = deriveServices(state.services, activeClusters(state))
  return view.imports.find((i) => i.namespace === namespace && i.name === name)
}

function activeClusters (state: NetworkState): Set<string> {
  return new Set([...state.members.active.values()].map((m) => m.cluster))
}

export interface Exporter {
  cluster: string
  author: string
  peerId: string
}

/**
 * The nodes a connection to `namespace/name` port `port` (TCP) may go to: for every cluster the
 * import sends that port to, the author of that cluster's export, if it is an active member.
 * `self` is left out (the caller connects to its own target directly). `rotate` spreads
 * connections over clusters (sessionAffinity None): the list starts at `rotate % n`.
 */
export function exportersOf (state: NetworkState, self: string, namespace: string, name: string, port: number, rotate = 0): Exporter[] {
  const imp = importOf(state, namespace, name)
  const p = imp?.ports.find((x) => x.protocol === 'TCP' && x.port === port)
  if (p === undefined) return []
  const out: Exporter[] = []
  for (const cluster of p.clusters) {
    const rec = state.services.exports.get(exportKey(namespace, name, cluster))
    if (rec === undefined || rec.author === self) continue
    const m = state.members.active.get(rec.author)
    if (m === undefined || m.cluster !== cluster) continue
    out.push({ cluster, author: rec.author, peerId: m.peerId })
  }
  if (out.length < 2) return out
  const k = ((rotate % out.length) + out.length) % out.length
  return [...out.slice(k), ...out.slice(0, k)]
}

/** The service port to connect to when none is given: the import's only TCP port. */
export function defaultPort (state: NetworkState, namespace: string, name: string): number {
  const imp = importOf(state, namespace, name)
  if (imp === undefined) {
    throw new WeftError('ERR_NOT_FOUND', `no cluster exports ${serviceKey(namespace, name)} now; give the port to connect anyway (connections are carried once it is exported)`)
  }
  const tcp = imp.ports.filter((p) => p.protocol === 'TCP')
  if (tcp.length === 1) return (tcp[0] as { port: number }).port
  if (tcp.length === 0) throw new WeftError('ERR_BAD_INPUT', `${serviceKey(namespace, name)} has no TCP port (only TCP is carried)`)
  throw new WeftError('ERR_BAD_INPUT', `${serviceKey(namespace, name)} has TCP ports ${tcp.map((p) => p.port).join(', ')}: say which one`)
}

export interface ServiceEntry {
  namespace: string
  name: string
  /** Whether the projection derives an import now (some export is contributing). */
  imported: boolean
  type?: ServiceImport['type']
  /** The network-wide service address, while imported. */
  address?: string
  ports: Array<{ protocol: string, port: number, name?: string, clusters: string[] }>
  conflicts: string[]
  exporters: Array<{
    cluster: string
    author: string
    peerId?: string
    hostname?: string
    /** Exported by `weft service expose` (else by Kubernetes, or another tool). */
    plain: boolean
    contributing: boolean
    /** The export's Ready condition reason: Exported, Pending, Failed. */
    ready: string
  }>
}

/** Every service in the log, with who exports it: what `weft service ls` shows. */
export function listServices (state: NetworkState): ServiceEntry[] {
  const view = deriveServices(state.services, activeClusters(state))
  const byKey = new Map<string, ExportStatus[]>()
  for (const e of view.exports) {
    const k = serviceKey(e.namespace, e.name)
    byKey.set(k, [...(byKey.get(k) ?? []), e])
  }
  const out: ServiceEntry[] = []
  for (const [k, exps] of [...byKey].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const first = exps[0] as ExportStatus
    const imp = view.imports.find((i) => serviceKey(i.namespace, i.name) === k)
    out.push({
      namespace: first.namespace,
      name: first.name,
      imported: imp !== undefined,
      ...(imp !== undefined ? { type: imp.type } : {}),
      ...(imp?.address !== undefined ? { address: imp.address } : {}),
      ports: (imp?.ports ?? []).map((p) => ({ protocol: p.protocol, port: p.port, ...(p.name !== undefined ? { name: p.name } : {}), clusters: [...p.clusters] })),
      conflicts: [...(imp?.conflicts ?? [])],
      exporters: exps.map((e) => {
        const m = state.members.active.get(e.author)
        const rec = state.services.exports.get(exportKey(e.namespace, e.name, e.cluster))
        return {
          cluster: e.cluster,
          author: e.author,
          ...(m !== undefined ? { peerId: m.peerId, hostname: m.hostname } : {}),
          plain: rec !== undefined && isPlainExpose(rec.spec),
          contributing: e.contributing,
          ready: e.conditions[1].reason
        }
      })
    })
  }
  return out
}
