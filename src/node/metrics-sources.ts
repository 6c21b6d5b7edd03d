import type { MetricsSources } from '../adapters/metrics.js'
import type { Mesh } from '../net/mesh.js'
import type { DnsService } from './dns-service.js'
import type { LocalServices } from './local-services.js'

/**
 * The counters GET /metrics reads besides GET /status (src/adapters/metrics.ts): gossip
 * outcomes and sync sessions from the mesh, the DNS server's answers, the service tunnels.
 * Read through each part's own accessors at scrape time; absent parts are left out.
 */
export function metricsSources (parts: { mesh: Mesh, dns?: DnsService, services?: LocalServices }): MetricsSources {
  const { mesh, dns, services } = parts
  const dnsStats = dns?.stats() as Record<string, number> | undefined
  const local = services?.list()
  return {
    gossip: { published: mesh.gossip.stats.published, outcomes: mesh.gossip.outcomes },
    sync: { ...mesh.sync.stats },
    ...(dnsStats !== undefined ? { dns: dnsStats } : {}),
    ...(local !== undefined ? { services: { exposes: local.exposes, connects: local.connects, tunnels: local.tunnels } } : {})
  }
}
