import { readFile } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startApiServer, type ApiServer } from '../../src/adapters/http-api.js'
import { MAX_PEER_SERIES, METRICS, type MetricsSources } from '../../src/adapters/metrics.js'
import type { NodeLiveStatus, VpnStatus } from '../../src/adapters/api-types.js'
import { toHex } from '../../src/log/bytes.js'
import { identity, joinBody } from '../support/fixtures.js'
import { cliReplica, fakeNode, raw, type CliReplica, type FakeNode } from '../api/support.js'
import { parsePromText, sampleValue, type PromScrape } from './prom-text.js'

const TOKEN = 'metrics-test-token-0123456789abcdef'
const hex = (n: number): string => n.toString(16).padStart(4, '0').padEnd(64, 'a')

/** 70 VPN peers: beta (identity 2) and 69 others, more than MAX_PEER_SERIES. */
function vpnStatus (): VpnStatus {
  const beta = toHex(identity(2).publicKey)
  const peers = [{ author: beta, peerId: identity(2).peerId, connected: true, txPackets: 900, txBytes: 1_000_000, rxPackets: 800, rxBytes: 700_000 }]
  for (let i = 1; i < 70; i++) peers.push({ author: hex(i), peerId: `p${i}`, connected: false, txPackets: i, txBytes: 100 * i, rxPackets: 0, rxBytes: 0 })
  return {
    device: 'weft0', addresses: ['10.1.0.1/16'], mtu: 1420, routes: [],
    tun: { rxPackets: 5, rxBytes: 500, txPackets: 6, txBytes: 600, txDropped: 2 },
    peers,
    drops: { no_route: 7, queue_full: 0, no_connection: 1, spoofed: 3, malformed: 0, device_full: 0 }
  }
}

const traffic = (opened: number, bytesIn: number): { active: number, opened: number, refused: number, failed: number, bytesIn: number, bytesOut: number } =>
  ({ active: 0, opened, refused: 1, failed: 0, bytesIn, bytesOut: bytesIn * 2 })

describe('GET /metrics', () => {
  let a: CliReplica
  let node: FakeNode & { metrics: () => MetricsSources }
  let server: ApiServer
  let scrape: PromScrape
  let text = ''

  beforeAll(async () => {
    a = await cliReplica(1)
    const b = await cliReplica(2)
    await a.append('node.join', joinBody('alpha'), 1000)
    await b.append('node.join', joinBody('beta'), 1000)
    await a.ingest(b.missingFor(a.frontier()).map((e) => e.envelope))
    await a.append('ip.claim', { addr: '10.1.0.1' }, 1001)
    await b.close()
    const base = fakeNode(a)
    const status = base.status.bind(base)
    node = Object.assign(base, {
      status: (): NodeLiveStatus => ({
        ...status(),
        vpn: vpnStatus(),
        k3s: { state: 'running', restarts: 2, role: 'init' },
        problems: [{ code: 'no-peers', severity: 'warning', message: 'no peers found for 30 s', fix: 'give --peer', since: 1000 }, { code: 'ip-forward-off', severity: 'error', message: 'ip_forward is off', fix: 'sysctl', since: 1000 }]
      } as NodeLiveStatus),
      metrics: (): MetricsSources => ({
        gossip: { published: 11, outcomes: new Map([['accepted', 40], ['ignored/duplicate', 9], ['ignored/parked', 1], ['rejected/ERR_BAD_SIGNATURE', 3], ['rejected/bad label"}\n', 1]]) },
        sync: { sessions: 5, served: 4, failures: 1, eventsPulled: 33 },
        dns: { queries: 12, udp: 10, tcp: 2, answered: 6, nodata: 1, nxdomain: 4, forwarded: 0, forwardFailed: 0, forwardBusy: 0, sourceErrors: 0, refused: 1, formerr: 0, notimp: 0, dropped: 0, truncated: 0, tcpConnections: 2, tcpRejected: 0, denied: 0, inflightForwards: 0 },
        services: { exposes: [{ service: 'default/web', traffic: traffic(3, 1000) }], connects: [{ service: 'default/db', traffic: traffic(2, 10) }], tunnels: { served: 1, opened: 0 } }
      })
    })
    server = await startApiServer({ node, listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, token: TOKEN })
    const r = await raw(server.url, 'GET', '/metrics', { token: TOKEN })
    expect(r.status).toBe(200)
    expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
    text = r.text
    scrape = parsePromText(text)
  })
  afterAll(async () => { await server.close(); await a.close() })

  it('needs the API token, like every route', async () => {
    const r = await raw(server.url, 'GET', '/metrics')
    expect(r.status).toBe(401)
    expect(r.headers['www-authenticate']).toMatch(/^Bearer/)
    expect((await raw(server.url, 'GET', '/metrics', { token: 'wrong-token-wrong-token' })).status).toBe(401)
    expect((await raw(server.url, 'POST', '/metrics', { token: TOKEN })).status).toBe(405)
  })

  it('reports the log, members, peers and sync from the node', () => {
    expect(sampleValue(scrape, 'weft_log_events')).toBe(a.log.size)
    expect(sampleValue(scrape, 'weft_log_authors')).toBe(2)
    expect(sampleValue(scrape, 'weft_members')).toBe(2)
    expect(sampleValue(scrape, 'weft_peers', { state: 'connected' })).toBe(1)
    expect(sampleValue(scrape, 'weft_peers', { state: 'known' })).toBe(2)
    expect(sampleValue(scrape, 'weft_peer_rtt_seconds', { peer: 'beta' })).toBeCloseTo(0.0034)
    expect(sampleValue(scrape, 'weft_info', { hostname: 'alpha', cluster: 'default' })).toBe(1)
    expect(sampleValue(scrape, 'weft_uptime_seconds')).toBe(90)
    expect(sampleValue(scrape, 'weft_sync_sessions_total', { side: 'started' })).toBe(5)
    expect(sampleValue(scrape, 'weft_sync_sessions_total', { side: 'served' })).toBe(4)
    expect(sampleValue(scrape, 'weft_sync_events_pulled_total')).toBe(33)
  })

  it('counts gossip by result and reason, with untrusted reasons folded into "other"', () => {
    expect(sampleValue(scrape, 'weft_gossip_messages_total', { result: 'accepted' })).toBe(40)
    expect(sampleValue(scrape, 'weft_gossip_messages_total', { result: 'ignored', reason: 'duplicate' })).toBe(9)
    expect(sampleValue(scrape, 'weft_gossip_messages_total', { result: 'ignored', reason: 'parked' })).toBe(1)
    expect(sampleValue(scrape, 'weft_gossip_messages_total', { result: 'rejected', reason: 'err_bad_signature' })).toBe(3)
    expect(sampleValue(scrape, 'weft_gossip_messages_total', { result: 'rejected', reason: 'other' })).toBe(1)
    expect(sampleValue(scrape, 'weft_gossip_published_total')).toBe(11)
  })

  it('reports VPN traffic per peer, capped at MAX_PEER_SERIES with the rest summed as "other"', () => {
    expect(sampleValue(scrape, 'weft_vpn_up')).toBe(1)
    expect(sampleValue(scrape, 'weft_vpn_peer_bytes_total', { peer: 'beta', direction: 'tx' })).toBe(1_000_000)
    expect(sampleValue(scrape, 'weft_vpn_peer_packets_total', { peer: 'beta', direction: 'rx' })).toBe(800)
    expect(sampleValue(scrape, 'weft_vpn_peer_connected', { peer: 'beta' })).toBe(1)
    const perPeer = scrape.samples.filter((s) => s.name === 'weft_vpn_peer_bytes_total' && s.labels.direction === 'tx')
    expect(perPeer).toHaveLength(MAX_PEER_SERIES + 1)
    // The 69 small peers rank by bytes: the 6 smallest (100..600 bytes) are summed.
    expect(sampleValue(scrape, 'weft_vpn_peer_bytes_total', { peer: 'other', direction: 'tx' })).toBe(100 * (1 + 2 + 3 + 4 + 5 + 6))
    expect(sampleValue(scrape, 'weft_vpn_dropped_packets_total', { reason: 'spoofed' })).toBe(3)
    expect(sampleValue(scrape, 'weft_vpn_dropped_packets_total', { reason: 'no_route' })).toBe(7)
    expect(sampleValue(scrape, 'weft_vpn_dropped_packets_total', { reason: 'device_write' })).toBe(2)
    expect(sampleValue(scrape, 'weft_vpn_device_bytes_total', { direction: 'tx' })).toBe(600)
  })

  it('reports DNS answers, service tunnels, k3s, decisions and problems', () => {
    expect(sampleValue(scrape, 'weft_dns_answers_total', { answer: 'nxdomain' })).toBe(4)
    expect(sampleValue(scrape, 'weft_dns_answers_total', { answer: 'answered' })).toBe(6)
    expect(sampleValue(scrape, 'weft_dns_queries_total', { proto: 'udp' })).toBe(10)
    expect(sampleValue(scrape, 'weft_service_tunnels_open', { side: 'served' })).toBe(1)
    expect(sampleValue(scrape, 'weft_service_tunnels_total', { service: 'default/web', side: 'served', outcome: 'opened' })).toBe(3)
    expect(sampleValue(scrape, 'weft_service_bytes_total', { service: 'default/db', side: 'connected', direction: 'out' })).toBe(20)
    expect(sampleValue(scrape, 'weft_services', { kind: 'exposed' })).toBe(1)
    expect(sampleValue(scrape, 'weft_k3s_state', { state: 'running' })).toBe(1)
    expect(sampleValue(scrape, 'weft_k3s_state', { state: 'waiting' })).toBe(0)
    expect(sampleValue(scrape, 'weft_k3s_restarts_total')).toBe(2)
    // Two members joined with role auto, nothing acknowledged: the default cluster's decision is not stable.
    const decisions = scrape.samples.filter((s) => s.name === 'weft_k3s_decisions').reduce((n, s) => n + s.value, 0)
    expect(decisions).toBe(1)
    expect(sampleValue(scrape, 'weft_k3s_decisions', { status: 'stable' })).toBe(0)
    expect(sampleValue(scrape, 'weft_k3s_roles', { stability: 'stable' }) + sampleValue(scrape, 'weft_k3s_roles', { stability: 'tentative' })).toBe(2)
    expect(sampleValue(scrape, 'weft_problems')).toBe(2)
    expect(sampleValue(scrape, 'weft_routes', { kind: 'lease' })).toBeGreaterThanOrEqual(1)
  })

  it('declares a HELP and TYPE for every metric it exports, as METRICS says, and no secret', () => {
    for (const m of METRICS) {
      if (!scrape.samples.some((s) => s.name === m.name)) continue
      expect(scrape.types.get(m.name), m.name).toBe(m.kind)
      expect(scrape.help.get(m.name)?.length, m.name).toBeGreaterThan(10)
      for (const s of scrape.samples.filter((x) => x.name === m.name)) expect(Object.keys(s.labels).sort(), m.name).toEqual([...m.labels].filter((l) => l in s.labels).sort())
    }
    expect(new Set(scrape.samples.map((s) => s.name)).size).toBeGreaterThan(25)
    expect(text).not.toContain(TOKEN)
    expect(text).not.toContain(identity(1).peerId)
  })

  it('every metric is documented in docs/operations.md', async () => {
    const doc = await readFile(new URL('../../docs/operations.md', import.meta.url), 'utf8')
    for (const m of METRICS) expect(doc, m.name).toContain(`\`${m.name}\``)
  })
})
