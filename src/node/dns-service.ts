import { networkDnsSource, startDnsServer, type DnsAnswerSource, type DnsServer, type NetworkDnsSource } from '../adapters/dns-server.js'
import type { MeshLogger } from '../net/mesh-logger.js'
import type { NetworkState } from '../projections/network.js'
import { leaseOf } from '../projections/ipam.js'
import { CLUSTERSET_ZONE, type DnsRecord } from '../projections/dns.js'
import { cidrContains, parseCidr, parseIp, type Cidr } from '../projections/ip.js'
import { isServiceAddress } from '../projections/service-addresses.js'
import type { DnsListen } from './config.js'

export interface DnsServiceOptions {
  listen: DnsListen[]
  upstreams: string[]
  state: () => NetworkState
  /** This node's author hex: whose lease "overlay" means. */
  self: string
  log: MeshLogger
  /**
   * Networks whose clients are answered besides loopback, the overlay and the networks members
   * advertise (`--dns-allow`); `any` answers everyone. Empty: only those.
   */
  allow?: readonly string[]
  /**
   * The ClusterSetIPs of this node's Kubernetes cluster (the MCS agent's ServiceImports): a
   * ClusterSetIP service name is answered with them instead of the service address, so pods
   * reach it through kube-proxy (MCS DNS specification 2.3.1).
   */
  clusterSetIps?: (namespace: string, name: string) => readonly string[] | undefined
}

/**
 * The clients a node's DNS server answers: loopback, the overlay (IPv4 and IPv6), the networks
 * members advertise (pod networks behind nodes, whose CoreDNS forwards to Weft) and `extra`.
 * Everything else is no client of this network: answering it would make an open resolver.
 */
export function dnsClientFilter (state: () => NetworkState, extra: readonly string[]): ((address: string) => boolean) | undefined {
  if (extra.includes('any')) return undefined
  const fixed = [parseCidr('127.0.0.0/8'), parseCidr('::1/128'), ...extra.map((c) => parseCidr(c))]
  let cachedFor: NetworkState | undefined
  let nets: Cidr[] = fixed
  const networks = (): Cidr[] => {
    const s = state()
    if (s === cachedFor) return nets
    const out = [...fixed]
    for (const c of [s.settings.values.overlayCidr, s.settings.values.overlayCidr6]) if (c !== null) out.push(parseCidr(c))
    for (const a of s.routes.adverts.values()) {
      try { out.push(parseCidr(a.cidr)) } catch { /* reported by the routes projection */ }
    }
    cachedFor = s
    nets = out
    return nets
  }
  return (address) => {
    // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
    const text = address.toLowerCase().startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
    let ip: { family: 4 | 6, value: bigint }
    try { ip = parseIp(text.split('%')[0] as string) } catch { return false }
    return networks().some((c) => cidrContains(c, ip.family, ip.value))
  }
}

const SERVICE_NAME = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.(.+)$/

/** `answers`, with ClusterSetIP service names answered from `ips` where it knows them. */
export function withClusterSetIps (answers: DnsAnswerSource, ips: (namespace: string, name: string) => readonly string[] | undefined): DnsAnswerSource {
  return {
    ...answers,
    lookup: (name, type) => {
      const base = answers.lookup(name, type)
      if ((type !== 'A' && type !== 'AAAA') || !base.authoritative || base.nxdomain) return base
      const n = name.toLowerCase().replace(/\.$/, '')
      const m = SERVICE_NAME.exec(n)
      const zones = answers.zones()
      // <svc>.<ns>.svc.clusterset.local and <svc>.<ns>.svc.<zone>: the network-wide names.
      if (m === null || !(m[3] === CLUSTERSET_ZONE || (m[3] === zones[0] && zones.length > 1))) return base
      const found = ips(m[2] as string, m[1] as string)
      if (found === undefined || found.length === 0) return base
      // Only names that answer one service address (not headless endpoint lists).
      const a = answers.lookup(name, 'A').records
      if (a.length !== 1 || !isServiceAddress(a[0]?.value as string)) return base
      const want = type === 'A' ? (x: string) => !x.includes(':') : (x: string) => x.includes(':')
      const records: DnsRecord[] = found.filter(want).map((v) => ({ name: n, type, value: v, ttl: a[0]?.ttl ?? 5 }))
      return { ...base, records }
    }
  }
}

/**
 * The node's DNS server, serving the dns projection. Listen addresses may name `overlay`, the
 * node's overlay address, which exists only once the lease is in the log and on the device: the
 * server is (re)started on the concrete addresses whenever they change.
 */
export class DnsService {
  private server: DnsServer | undefined
  private bound = ''
  private readonly answers: NetworkDnsSource
  private readonly source: DnsAnswerSource
  private readonly allowClient: ((address: string) => boolean) | undefined
  private running: Promise<void> = Promise.resolve()
  private stopped = false

  constructor (private readonly opts: DnsServiceOptions) {
    this.answers = networkDnsSource(opts.state)
    this.source = opts.clusterSetIps !== undefined ? withClusterSetIps(this.answers, opts.clusterSetIps) : this.answers
    this.allowClient = dnsClientFilter(opts.state, opts.allow ?? [])
  }

  /** After a change to the log: new answers, and new listen addresses if the lease moved. */
  update (): Promise<void> {
    this.answers.invalidate()
    this.running = this.running.then(async () => { await this.rebind() }).catch((err: unknown) => {
      this.opts.log.error({ err: (err as Error).message }, 'DNS server could not listen')
    })
    return this.running
  }

  private concrete (): Array<{ host: string, port: number }> {
    const mine = leaseOf(this.opts.state().ipam, this.opts.self, 4)?.addr
    const out: Array<{ host: string, port: number }> = []
    for (const l of this.opts.listen) {
      if (l.host !== 'overlay') out.push({ host: l.host, port: l.port })
      else if (mine !== undefined) out.push({ host: mine, port: l.port })
    }
    return out
  }

  private async rebind (): Promise<void> {
    if (this.stopped) return
    const want = this.concrete()
    const key = JSON.stringify(want)
    if (key === this.bound) return
    if (this.server !== undefined) await this.server.close()
    this.server = undefined
    this.bound = key
    if (want.length === 0) return
    try {
      this.server = await startDnsServer({ listen: want, answer: this.source, upstreams: this.opts.upstreams, log: this.opts.log, ...(this.allowClient !== undefined ? { allowClient: this.allowClient } : {}) })
    } catch (err) {
      // Try again on the next change (the overlay address may not be on the device yet).
      this.bound = ''
      throw err
    }
  }

  addresses (): Array<{ host: string, port: number, proto: string }> {
    return this.server?.addresses() ?? []
  }

  stats (): unknown {
    return this.server?.stats
  }

  async stop (): Promise<void> {
    this.stopped = true
    await this.running.catch(() => {})
    await this.server?.close()
  }
}
