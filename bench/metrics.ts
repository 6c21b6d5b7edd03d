/**
 * What a Prometheus scrape costs the daemon: GET /metrics against GET /status on the same API
 * server, in the same run (a ratio, as the machine is shared), over a log of 100 members and
 * 5,000 events and a VPN status with 200 peers (past the 64-peer label cap). Also the size of
 * one scrape and its number of series, which the label caps bound.
 *   npm run bench -- metrics
 */
import { Replica } from '../src/adapters/replica.js'
import { startApiServer } from '../src/adapters/http-api.js'
import type { NodeLiveStatus, PeerStatus, VpnStatus } from '../src/adapters/api-types.js'
import type { MetricsSources } from '../src/adapters/metrics.js'
import { replicaReducers } from '../src/projections/reducers.js'
import { memoryDb } from '../test/support/fixtures.js'
import { emitter, medianMs, progress } from './_lib.js'
import { generate } from './projections.js'
import { networkIdBytes } from '../src/log/token.js'

const NET = networkIdBytes({ secret: new Uint8Array(32).fill(9) })
const TOKEN = 'bench-metrics-token-0123456789abcdef'
const EVENTS = 5_000
const RUNS = 40

export async function run (): Promise<void> {
  const emit = emitter('metrics')
  progress(`building a log of ${EVENTS} events over 100 authors`)
  const replica = await Replica.open({ db: memoryDb(), net: NET, reducers: replicaReducers(), sync: false })
  await replica.ingest(generate(EVENTS).map((e) => e.envelope))
  const authors = replica.log.authors()
  const vpn: VpnStatus = {
    device: 'weft0', addresses: ['10.1.0.1/16'], mtu: 1420, routes: [],
    tun: { rxPackets: 1, rxBytes: 1, txPackets: 1, txBytes: 1, txDropped: 0 },
    peers: Array.from({ length: 200 }, (_, i) => ({ author: (authors[i % authors.length] ?? '').padEnd(60, 'a') + i.toString(16).padStart(4, '0'), peerId: `p${i}`, connected: true, txPackets: i, txBytes: i * 100, rxPackets: i, rxBytes: i * 90 })),
    drops: { no_route: 0, queue_full: 0, no_connection: 0, spoofed: 0, malformed: 0, device_full: 0 }
  }
  const peers: PeerStatus[] = Array.from({ length: 100 }, (_, i) => ({ peerId: `p${i}`, connected: true, online: true, addrs: [], latencyMs: i / 10, path: { addr: '/ip4/192.0.2.1/tcp/4001', direct: true } }))
  const node = {
    replica,
    now: () => 1_700_000_100_000,
    peers: () => peers,
    status: (): NodeLiveStatus => ({
      peerId: 'p', author: 'a'.repeat(64), networkId: '0'.repeat(16), version: 'bench', hostname: 'bench', cluster: 'c0',
      startedAt: 1_700_000_000_000, uptimeMs: 100_000, listen: [], peers: { connected: 100, online: 100 },
      sync: { rounds: 1, eventsPulled: 1 }, vpn
    }),
    metrics: (): MetricsSources => ({ gossip: { published: 1, outcomes: new Map([['accepted', 10], ['ignored/duplicate', 5]]) }, sync: { sessions: 1, served: 1, failures: 0, eventsPulled: 1 } })
  }
  const server = await startApiServer({ node, listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, token: TOKEN })
  const get = async (path: string): Promise<string> => {
    const res = await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`)
    return await res.text()
  }
  try {
    const text = await get('/metrics')
    const series = text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length
    progress(`one scrape: ${text.length} bytes, ${series} series`)
    // Interleaved, so both see the same load.
    const s: number[] = []
    const m: number[] = []
    for (let i = 0; i < RUNS; i++) {
      s.push(await medianMs(1, async () => await get('/api/v1/status'), i === 0))
      m.push(await medianMs(1, async () => await get('/metrics'), i === 0))
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
    const statusMs = median(s)
    const metricsMs = median(m)
    emit('status_median_ms', statusMs, 'ms')
    emit('metrics_median_ms', metricsMs, 'ms')
    emit('metrics_over_status', metricsMs / statusMs, 'ratio')
    emit('scrape_bytes', text.length, 'bytes')
    emit('scrape_series', series, 'series')
  } finally {
    await server.close()
    await replica.close()
  }
}
