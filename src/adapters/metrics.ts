import type { NodeStatus, PeerStatus } from './api-types.js'
import type { NetworkView } from '../projections/view.js'

/**
 * GET /metrics: the node's state in Prometheus' text format, built with prom-client (loaded on
 * the first scrape, so a node nobody scrapes never loads it). Every value is read at scrape time
 * from what the node already counts (GET /status, the folded view, the gossip, sync, DNS and
 * service counters); nothing here keeps counters of its own. Names and labels are listed in
 * METRICS below and documented in docs/operations.md (a test checks that every name is there).
 *
 * No secrets: no token, key or address claim secret is ever a label. Label values are bounded:
 * per-peer series are capped at MAX_PEER_SERIES (the rest are summed under peer="other"),
 * per-service series at MAX_SERVICE_SERIES, and reasons come from fixed sets or error codes.
 */

/** Peers that get series of their own in per-peer metrics (by traffic); the rest are "other". */
export const MAX_PEER_SERIES = 64
/** Local services (exposed or connected) with series of their own; the rest are "other". */
export const MAX_SERVICE_SERIES = 64
/** Distinct gossip outcome reasons kept; past it they count under reason="other". */
const MAX_REASONS = 64

export interface TrafficCounters { active: number, opened: number, refused: number, failed: number, bytesIn: number, bytesOut: number }

/** What the daemon counts beyond GET /status (each absent when that part does not run). */
export interface MetricsSources {
  gossip?: { published: number, outcomes: ReadonlyMap<string, number> }
  sync?: { sessions: number, served: number, failures: number, eventsPulled: number }
  /** The DNS server's counters (src/adapters/dns-server.ts DnsStats). */
  dns?: Readonly<Record<string, number>>
  services?: {
    exposes: ReadonlyArray<{ service: string, traffic: TrafficCounters }>
    connects: ReadonlyArray<{ service: string, traffic: TrafficCounters }>
    tunnels: { served: number, opened: number }
  }
}

export interface MetricsInput {
  status: NodeStatus
  peers: readonly PeerStatus[]
  view: NetworkView
  sources: MetricsSources
}

type Kind = 'counter' | 'gauge'
interface MetricDef { name: string, kind: Kind, help: string, labels: readonly string[] }

const def = (name: string, kind: Kind, help: string, ...labels: string[]): MetricDef => ({ name, kind, help, labels })

/** Every metric this node exports. */
export const METRICS: readonly MetricDef[] = [
  def('weft_info', 'gauge', 'Always 1; labels name the node, its network, cluster and version.', 'version', 'network', 'hostname', 'cluster'),
  def('weft_uptime_seconds', 'gauge', 'Seconds since the daemon started.'),
  def('weft_peers', 'gauge', 'Peers known to the mesh, by state: connected (a libp2p connection now), online (heard from within 30 s), known.', 'state'),
  def('weft_peer_rtt_seconds', 'gauge', 'Round-trip time of the connection to a peer, per peer (capped, see docs).', 'peer', 'author', 'path'),
  def('weft_members', 'gauge', 'Active members of the network (every cluster).'),
  def('weft_members_departed', 'gauge', 'Members that left or were evicted or revoked.'),
  def('weft_log_events', 'gauge', 'Events in the merged log.'),
  def('weft_log_authors', 'gauge', 'Authors (nodes) with events in the log.'),
  def('weft_log_pending', 'gauge', 'Events waiting for a missing parent.'),
  def('weft_sync_sessions_total', 'counter', 'Anti-entropy sync sessions, by side: started (this node asked) or served.', 'side'),
  def('weft_sync_failures_total', 'counter', 'Sync sessions this node started that failed.'),
  def('weft_sync_events_pulled_total', 'counter', 'Events this node pulled by anti-entropy.'),
  def('weft_gossip_published_total', 'counter', 'Events this node published on the gossip topic.'),
  def('weft_gossip_messages_total', 'counter', 'Gossip messages received, by result (accepted, ignored, rejected) and reason.', 'result', 'reason'),
  def('weft_vpn_up', 'gauge', '1 when the VPN data plane (TUN device) runs on this node, else 0.'),
  def('weft_vpn_device_packets_total', 'counter', 'Packets through the TUN device: rx read from it (leaving this node), tx written to it (arriving).', 'direction'),
  def('weft_vpn_device_bytes_total', 'counter', 'Bytes through the TUN device, as weft_vpn_device_packets_total.', 'direction'),
  def('weft_vpn_peer_packets_total', 'counter', 'VPN packets over each peer\'s packet stream (tx sent to it, rx received).', 'peer', 'author', 'direction'),
  def('weft_vpn_peer_bytes_total', 'counter', 'VPN bytes over each peer\'s packet stream.', 'peer', 'author', 'direction'),
  def('weft_vpn_peer_connected', 'gauge', '1 when the peer\'s packet stream has a connection.', 'peer', 'author'),
  def('weft_vpn_dropped_packets_total', 'counter', 'VPN packets dropped, by reason (docs/vpn.md); device_write counts the device\'s own write drops.', 'reason'),
  def('weft_dns_queries_total', 'counter', 'DNS messages received, by transport.', 'proto'),
  def('weft_dns_answers_total', 'counter', 'DNS queries by answer: answered, nodata, nxdomain, forwarded, forward_failed, forward_busy, source_error, refused, formerr, notimp, dropped, denied.', 'answer'),
  def('weft_dns_inflight_forwards', 'gauge', 'DNS forwards waiting for an upstream now.'),
  def('weft_service_tunnels_open', 'gauge', 'Service tunnels open now, by side: served (peers into this node\'s exposed services) or opened (from this node\'s listeners).', 'side'),
  def('weft_service_tunnels_total', 'counter', 'Service tunnels per local service, by side (served, connected) and outcome (opened, refused, failed).', 'service', 'side', 'outcome'),
  def('weft_service_bytes_total', 'counter', 'Bytes carried per local service, by side and direction (in, out).', 'service', 'side', 'direction'),
  def('weft_services', 'gauge', 'Services, by kind: exposed (served by this node), connected (listeners here), imported (network-wide imports in the view).', 'kind'),
  def('weft_routes', 'gauge', 'Routes in the route table, by kind (lease, advertised), plus conflicts.', 'kind'),
  def('weft_k3s_state', 'gauge', '1 for the k3s supervisor\'s current state (waiting, settling, starting, running, backoff, refused, stopped); absent without --k3s.', 'state'),
  def('weft_k3s_restarts_total', 'counter', 'Times the k3s supervisor restarted k3s.'),
  def('weft_k3s_decisions', 'gauge', 'Clusters by the status of their k3s master decision (waiting, tentative, stable, master-gone).', 'status'),
  def('weft_k3s_roles', 'gauge', 'Members by whether their k3s role is stable (acted on) or tentative.', 'stability'),
  def('weft_problems', 'gauge', 'Problems this node reports (GET /status problems; see docs/operations.md).')
]

const K3S_STATES = ['waiting', 'settling', 'starting', 'running', 'backoff', 'refused', 'stopped']
const DECISIONS = ['waiting', 'tentative', 'stable', 'master-gone']
const DNS_ANSWERS: ReadonlyArray<[string, string]> = [
  ['answered', 'answered'], ['nodata', 'nodata'], ['nxdomain', 'nxdomain'], ['forwarded', 'forwarded'],
  ['forwardFailed', 'forward_failed'], ['forwardBusy', 'forward_busy'], ['sourceErrors', 'source_error'],
  ['refused', 'refused'], ['formerr', 'formerr'], ['notimp', 'notimp'], ['dropped', 'dropped'], ['denied', 'denied']
]

type Labels = Record<string, string>
type Samples = Map<string, Array<[Labels, number]>>

/** The samples of every metric, as plain data (the text format is prom-client's job). */
export function collectSamples (input: MetricsInput): Samples {
  const out: Samples = new Map(METRICS.map((m) => [m.name, []]))
  const put = (name: string, value: number, labels: Labels = {}): void => {
    const list = out.get(name)
    if (list === undefined) throw new Error(`metric ${name} is not in METRICS`)
    if (Number.isFinite(value)) list.push([labels, value])
  }
  const { status: s, view, peers, sources } = input
  const hostOf = new Map(view.members.map((m) => [m.author, m.hostname]))
  const hostOfPeer = new Map(view.members.map((m) => [m.peerId, m]))

  put('weft_info', 1, { version: s.version, network: s.networkId, hostname: s.hostname, cluster: s.cluster })
  put('weft_uptime_seconds', s.uptimeMs / 1000)
  put('weft_peers', s.peers.connected, { state: 'connected' })
  put('weft_peers', s.peers.online, { state: 'online' })
  put('weft_peers', peers.length, { state: 'known' })
  const rtts = peers.filter((p) => p.latencyMs !== undefined).sort((a, b) => (a.peerId < b.peerId ? -1 : 1)).slice(0, MAX_PEER_SERIES)
  for (const p of rtts) {
    const author = p.author ?? hostOfPeer.get(p.peerId)?.author ?? ''
    put('weft_peer_rtt_seconds', (p.latencyMs as number) / 1000, { peer: p.hostname ?? hostOf.get(author) ?? 'unknown', author: author.slice(0, 12), path: p.path === undefined ? 'unknown' : p.path.direct ? 'direct' : 'relayed' })
  }
  put('weft_members', view.members.length)
  put('weft_members_departed', view.departed.length)
  put('weft_log_events', s.events)
  put('weft_log_authors', s.authors)
  put('weft_log_pending', s.pending)

  const sync = sources.sync
  if (sync !== undefined) {
    put('weft_sync_sessions_total', sync.sessions, { side: 'started' })
    put('weft_sync_sessions_total', sync.served, { side: 'served' })
    put('weft_sync_failures_total', sync.failures)
    put('weft_sync_events_pulled_total', sync.eventsPulled)
  } else {
    put('weft_sync_events_pulled_total', s.sync.eventsPulled)
  }

  const gossip = sources.gossip
  if (gossip !== undefined) {
    put('weft_gossip_published_total', gossip.published)
    const reasons = new Map<string, number>()
    for (const [key, n] of gossip.outcomes) {
      const [result, reason = ''] = key.split('/', 2)
      if (result !== 'accepted' && result !== 'ignored' && result !== 'rejected') continue
      const r = /^[A-Za-z0-9_]{1,40}$/.test(reason) || reason === '' ? reason.toLowerCase() : 'other'
      const k = `${result}/${reasons.size >= MAX_REASONS ? 'other' : r}`
      reasons.set(k, (reasons.get(k) ?? 0) + n)
    }
    for (const result of ['accepted', 'ignored', 'rejected']) if (![...reasons.keys()].some((k) => k.startsWith(`${result}/`))) reasons.set(`${result}/`, 0)
    for (const [k, n] of reasons) {
      const [result, reason] = k.split('/') as [string, string]
      put('weft_gossip_messages_total', n, { result, reason })
    }
  }

  const vpn = s.vpn
  put('weft_vpn_up', vpn === undefined ? 0 : 1)
  if (vpn !== undefined) {
    put('weft_vpn_device_packets_total', vpn.tun.rxPackets, { direction: 'rx' })
    put('weft_vpn_device_packets_total', vpn.tun.txPackets, { direction: 'tx' })
    put('weft_vpn_device_bytes_total', vpn.tun.rxBytes, { direction: 'rx' })
    put('weft_vpn_device_bytes_total', vpn.tun.txBytes, { direction: 'tx' })
    const ranked = [...vpn.peers].sort((a, b) => (b.txBytes + b.rxBytes) - (a.txBytes + a.rxBytes) || (a.author < b.author ? -1 : 1))
    const other = { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0 }
    ranked.forEach((p, i) => {
      if (i >= MAX_PEER_SERIES) {
        other.txPackets += p.txPackets; other.txBytes += p.txBytes; other.rxPackets += p.rxPackets; other.rxBytes += p.rxBytes
        return
      }
      const l = { peer: hostOf.get(p.author) ?? 'unknown', author: p.author.slice(0, 12) }
      put('weft_vpn_peer_packets_total', p.txPackets, { ...l, direction: 'tx' })
      put('weft_vpn_peer_packets_total', p.rxPackets, { ...l, direction: 'rx' })
      put('weft_vpn_peer_bytes_total', p.txBytes, { ...l, direction: 'tx' })
      put('weft_vpn_peer_bytes_total', p.rxBytes, { ...l, direction: 'rx' })
      put('weft_vpn_peer_connected', p.connected ? 1 : 0, l)
    })
    if (ranked.length > MAX_PEER_SERIES) {
      const l = { peer: 'other', author: '' }
      put('weft_vpn_peer_packets_total', other.txPackets, { ...l, direction: 'tx' })
      put('weft_vpn_peer_packets_total', other.rxPackets, { ...l, direction: 'rx' })
      put('weft_vpn_peer_bytes_total', other.txBytes, { ...l, direction: 'tx' })
      put('weft_vpn_peer_bytes_total', other.rxBytes, { ...l, direction: 'rx' })
    }
    for (const [reason, n] of Object.entries(vpn.drops)) put('weft_vpn_dropped_packets_total', n, { reason })
    put('weft_vpn_dropped_packets_total', vpn.tun.txDropped, { reason: 'device_write' })
  }

  const dns = sources.dns
  if (dns !== undefined) {
    put('weft_dns_queries_total', dns.udp ?? 0, { proto: 'udp' })
    put('weft_dns_queries_total', dns.tcp ?? 0, { proto: 'tcp' })
    for (const [field, answer] of DNS_ANSWERS) put('weft_dns_answers_total', dns[field] ?? 0, { answer })
    put('weft_dns_inflight_forwards', dns.inflightForwards ?? 0)
  }

  const svc = sources.services
  if (svc !== undefined) {
    put('weft_service_tunnels_open', svc.tunnels.served, { side: 'served' })
    put('weft_service_tunnels_open', svc.tunnels.opened, { side: 'opened' })
    put('weft_services', svc.exposes.length, { kind: 'exposed' })
    put('weft_services', svc.connects.length, { kind: 'connected' })
    for (const [side, list] of [['served', svc.exposes], ['connected', svc.connects]] as const) {
      for (const [service, t] of capServices(list)) {
        for (const outcome of ['opened', 'refused', 'failed'] as const) put('weft_service_tunnels_total', t[outcome], { service, side, outcome })
        put('weft_service_bytes_total', t.bytesIn, { service, side, direction: 'in' })
        put('weft_service_bytes_total', t.bytesOut, { service, side, direction: 'out' })
      }
    }
  }
  put('weft_services', view.services.imports.length, { kind: 'imported' })
  const routeKinds = new Map<string, number>([['lease', 0], ['advertised', 0]])
  for (const r of view.routes.routes) routeKinds.set(r.kind, (routeKinds.get(r.kind) ?? 0) + 1)
  for (const [kind, n] of routeKinds) put('weft_routes', n, { kind })
  put('weft_routes', view.routes.conflicts.length, { kind: 'conflict' })

  const k3s = s.k3s as { state?: unknown, restarts?: unknown } | undefined
  if (k3s !== undefined) {
    for (const state of K3S_STATES) put('weft_k3s_state', k3s.state === state ? 1 : 0, { state })
    if (typeof k3s.restarts === 'number') put('weft_k3s_restarts_total', k3s.restarts)
  }
  for (const status of DECISIONS) put('weft_k3s_decisions', view.clusters.filter((c) => c.status === status).length, { status })
  put('weft_k3s_roles', view.members.filter((m) => m.roleStable).length, { stability: 'stable' })
  put('weft_k3s_roles', view.members.filter((m) => !m.roleStable).length, { stability: 'tentative' })
  const problems = (s as { problems?: unknown }).problems
  put('weft_problems', Array.isArray(problems) ? problems.length : 0)
  return out
}

/** Traffic per service name, summed, the biggest MAX_SERVICE_SERIES by name and the rest as "other". */
function capServices (list: ReadonlyArray<{ service: string, traffic: TrafficCounters }>): Map<string, TrafficCounters> {
  const by = new Map<string, TrafficCounters>()
  for (const { service, traffic } of [...list].sort((a, b) => (a.service < b.service ? -1 : 1))) {
    const key = by.has(service) || by.size < MAX_SERVICE_SERIES ? service : 'other'
    const t = by.get(key) ?? { active: 0, opened: 0, refused: 0, failed: 0, bytesIn: 0, bytesOut: 0 }
    by.set(key, { active: t.active + traffic.active, opened: t.opened + traffic.opened, refused: t.refused + traffic.refused, failed: t.failed + traffic.failed, bytesIn: t.bytesIn + traffic.bytesIn, bytesOut: t.bytesOut + traffic.bytesOut })
  }
  return by
}

/** The Prometheus text exposition of `input` (a fresh prom-client registry per scrape). */
export async function renderMetrics (input: MetricsInput): Promise<{ contentType: string, text: string }> {
  const prom = await import('prom-client')
  const registry = new prom.Registry()
  const samples = collectSamples(input)
  for (const m of METRICS) {
    const values = samples.get(m.name) ?? []
    if (m.kind === 'counter') {
      const c = new prom.Counter({ name: m.name, help: m.help, labelNames: m.labels, registers: [registry] })
      for (const [labels, v] of values) c.inc(labels, Math.max(0, v))
    } else {
      const g = new prom.Gauge({ name: m.name, help: m.help, labelNames: m.labels, registers: [registry] })
      for (const [labels, v] of values) g.set(labels, v)
    }
  }
  return { contentType: registry.contentType, text: await registry.metrics() }
}
