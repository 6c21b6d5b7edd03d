import type { ServicesView } from './services.js'
import { isInZone, labelProblem, nameProblem, normalizeName } from './dns-name.js'

/**
 * DNS records derived from members, leases and exported services. Pure: the adapter that
 * answers queries calls `lookupDns`. See docs/projections-services-dns.md.
 */

/** The MCS zone (KEP-1645 DNS specification, section 2.1: it must be `clusterset.local`). */
export const CLUSTERSET_ZONE = 'clusterset.local'
/** MCS DNS schema version served at `dns-version.clusterset.local` (specification section 2.2). */
export const MCS_DNS_SCHEMA_VERSION = '1.0.0'
export const DNS_TTL = 5
/** Members with this capability carry service traffic for their cluster. */
export const SERVICES_CAP = 'services'
export const SRV_PRIORITY = 0
export const SRV_WEIGHT = 100

export interface DnsMember {
  author: string
  hostname: string
  cluster: string
  /** Order of joining (lower joined earlier); ties are broken by author. */
  joinedOrder: number
  v4?: string
  v6?: string
  caps: readonly string[]
}

export interface DnsInput {
  zone: string
  members: ReadonlyArray<DnsMember>
  imports: ServicesView['imports']
}

export interface SrvValue { priority: number, weight: number, port: number, target: string }

export interface DnsRecord {
  name: string
  type: 'A' | 'AAAA' | 'SRV' | 'TXT'
  value: string | SrvValue
  ttl: number
}

export interface DnsTable {
  /** The network's zone, normalized. */
  zone: string
  /** Lowercased fqdn without trailing dot → records (sorted by type, then value). */
  records: Map<string, DnsRecord[]>
  /** Names that were not served, and why (sorted by name, then reason). */
  invalid: Array<{ name: string, reason: string }>
  /** Zones this table answers for: the network zone (when valid) and clusterset.local. */
  zones: readonly string[]
  /** Every name that exists: owners of records and their ancestors up to a zone apex. */
  names: ReadonlySet<string>
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/

export function isIpv4 (a: string): boolean {
  return IPV4.test(a)
}

/** RFC 4291 text form (with `::` compression and an optional trailing dotted quad); no zone id. */
export function isIpv6 (a: string): boolean {
  if (a.length < 2 || a.length > 45 || a.includes('%')) return false
  let head = a
  let groups = 8
  const lastColon = a.lastIndexOf(':')
  const tail = a.slice(lastColon + 1)
  if (tail.includes('.')) {
    if (!isIpv4(tail)) return false
    head = a.slice(0, lastColon + 1) + '0'
    groups = 7
  }
  const halves = head.split('::')
  if (halves.length > 2) return false
  const parse = (s: string): string[] | undefined => {
    if (s === '') return []
    const parts = s.split(':')
    return parts.every((p) => /^[0-9a-fA-F]{1,4}$/.test(p)) ? parts : undefined
  }
  if (halves.length === 1) {
    const parts = parse(head)
    return parts !== undefined && parts.length === groups
  }
  const left = parse(halves[0] as string)
  const right = parse(halves[1] as string)
  return left !== undefined && right !== undefined && left.length + right.length < groups
}

function compareIpv4 (a: string, b: string): number {
  const x = a.split('.').map(Number)
  const y = b.split('.').map(Number)
  for (let i = 0; i < 4; i++) {
    const d = (x[i] as number) - (y[i] as number)
    if (d !== 0) return d
  }
  return 0
}

const TYPE_ORDER: Record<DnsRecord['type'], number> = { A: 0, AAAA: 1, SRV: 2, TXT: 3 }

function compareRecords (a: DnsRecord, b: DnsRecord): number {
  if (a.type !== b.type) return TYPE_ORDER[a.type] - TYPE_ORDER[b.type]
  if (a.type === 'A') return compareIpv4(a.value as string, b.value as string)
  if (a.type === 'SRV') {
    const x = a.value as SrvValue
    const y = b.value as SrvValue
    return x.port - y.port || (x.target < y.target ? -1 : x.target > y.target ? 1 : 0)
  }
  const x = a.value as string
  const y = b.value as string
  return x < y ? -1 : x > y ? 1 : 0
}

/** Why the network zone cannot be served, or undefined. */
export function zoneProblem (zone: string): string | undefined {
  const p = nameProblem(zone)
  if (p !== undefined) return `invalid zone: ${p}`
  if (isInZone(zone, CLUSTERSET_ZONE) || isInZone(CLUSTERSET_ZONE, zone)) {
    return `zone "${zone}" overlaps the MCS zone "${CLUSTERSET_ZONE}"`
  }
  return undefined
}

/** The host label of a hostname: its first label, lowercased (`hostname -s`). */
export function hostLabel (hostname: string): string {
  return normalizeName(hostname).split('.')[0] as string
}

interface Addresses { v4: string[], v6: string[] }

export function deriveDns (input: DnsInput): DnsTable {
  const zone = normalizeName(input.zone)
  const records = new Map<string, DnsRecord[]>()
  const invalid = new Map<string, { name: string, reason: string }>()
  const report = (name: string, reason: string): void => {
    invalid.set(`${name}\0${reason}`, { name, reason })
  }
  const seen = new Set<string>()
  const add = (name: string, type: DnsRecord['type'], value: DnsRecord['value'], underscoreLabels = 0): void => {
    const problem = nameProblem(name, { underscoreLabels })
    if (problem !== undefined) {
      report(name, problem)
      return
    }
    const id = `${name} ${type} ${JSON.stringify(value)}`
    if (seen.has(id)) return
    seen.add(id)
    const rec: DnsRecord = { name, type, value, ttl: DNS_TTL }
    const list = records.get(name)
    if (list === undefined) records.set(name, [rec])
    else list.push(rec)
  }
  const zp = zoneProblem(zone)
  const zoneOk = zp === undefined
  if (!zoneOk) report(zone, zp)

  // Addresses per member (checked once).
  const addrs = new Map<string, Addresses>()
  for (const m of input.members) {
    const a: Addresses = { v4: [], v6: [] }
    if (m.v4 !== undefined) {
      if (isIpv4(m.v4)) a.v4.push(m.v4)
      else report(`${hostLabel(m.hostname)}.${m.cluster}.${zone}`, `invalid IPv4 address "${m.v4}"`)
    }
    if (m.v6 !== undefined) {
      if (isIpv6(m.v6)) a.v6.push(m.v6.toLowerCase())
      else report(`${hostLabel(m.hostname)}.${m.cluster}.${zone}`, `invalid IPv6 address "${m.v6}"`)
    }
    addrs.set(m.author, a)
  }
  const addAddresses = (name: string, a: Addresses): void => {
    for (const v of a.v4) add(name, 'A', v)
    for (const v of a.v6) add(name, 'AAAA', v)
  }

  // ---- node names ----
  const byOrder = [...input.members].sort((a, b) => a.joinedOrder - b.joinedOrder || (a.author < b.author ? -1 : a.author > b.author ? 1 : 0))
  const holders = new Map<string, DnsMember>() // `${label}.${cluster}` → earliest member
  const perLabel = new Map<string, number>() // label → members carrying it, network-wide
  for (const m of byOrder) {
    const label = hostLabel(m.hostname)
    const fqdn = `${label}.${m.cluster}.${zone}`
    const problem = labelProblem(label) ?? labelProblem(m.cluster)
    if (problem !== undefined) {
      report(fqdn, `hostname "${m.hostname}": ${problem}`)
      continue
    }
    perLabel.set(label, (perLabel.get(label) ?? 0) + 1)
    const key = `${label}.${m.cluster}`
    const holder = holders.get(key)
    if (holder !== undefined) {
      report(fqdn, `duplicate hostname "${label}" in cluster "${m.cluster}": member ${m.author.slice(0, 12)} joined after ${holder.author.slice(0, 12)}, which keeps the name`)
      continue
    }
    holders.set(key, m)
  }
  if (zoneOk) {
    for (const m of holders.values()) {
      const label = hostLabel(m.hostname)
      const a = addrs.get(m.author) as Addresses
      addAddresses(`${label}.${m.cluster}.${zone}`, a)
      if (perLabel.get(label) === 1) addAddresses(`${label}.${zone}`, a)
    }
  }

  // ---- services ----
  const byCluster = new Map<string, DnsMember[]>()
  for (const m of input.members) {
    const list = byCluster.get(m.cluster)
    if (list === undefined) byCluster.set(m.cluster, [m])
    else list.push(m)
  }
  const serviceAddresses = (cluster: string): Addresses => {
    const ms = (byCluster.get(cluster) ?? []).filter((m) => {
      const a = addrs.get(m.author) as Addresses
      return a.v4.length + a.v6.length > 0
    })
    const carriers = ms.filter((m) => m.caps.includes(SERVICES_CAP))
    const chosen = carriers.length > 0 ? carriers : ms
    const out: Addresses = { v4: [], v6: [] }
    for (const m of chosen) {
      const a = addrs.get(m.author) as Addresses
      out.v4.push(...a.v4)
      out.v6.push(...a.v6)
    }
    return out
  }
  for (const imp of input.imports) {
    const svcName = `${imp.name}.${imp.namespace}.svc.${CLUSTERSET_ZONE}`
    const all: Addresses = { v4: [], v6: [] }
    for (const cluster of imp.clusters) {
      const a = serviceAddresses(cluster)
      all.v4.push(...a.v4)
      all.v6.push(...a.v6)
      if (zoneOk) addAddresses(`${imp.name}.${imp.namespace}.svc.${cluster}.${zone}`, a)
    }
    if (all.v4.length + all.v6.length === 0) continue
    const problem = nameProblem(svcName)
    if (problem !== undefined) {
      report(svcName, problem)
      continue
    }
    addAddresses(svcName, all)
    for (const p of imp.ports) {
      if (p.name === undefined) continue // MCS DNS 2.3.2: unnamed ports have no SRV record
      add(`_${p.name}._${p.protocol.toLowerCase()}.${svcName}`, 'SRV', { priority: SRV_PRIORITY, weight: SRV_WEIGHT, port: p.port, target: svcName }, 2)
    }
  }
  add(`dns-version.${CLUSTERSET_ZONE}`, 'TXT', MCS_DNS_SCHEMA_VERSION)

  // ---- sort, and the tree of names that exist ----
  const zones = zoneOk ? [zone, CLUSTERSET_ZONE] : [CLUSTERSET_ZONE]
  const names = new Set<string>(zones)
  const sorted = new Map<string, DnsRecord[]>()
  for (const name of [...records.keys()].sort()) {
    const list = (records.get(name) as DnsRecord[]).sort(compareRecords)
    sorted.set(name, list)
    const apex = zones.find((z) => isInZone(name, z))
    let n = name
    while (apex !== undefined && n !== apex && !names.has(n)) {
      names.add(n)
      n = n.slice(n.indexOf('.') + 1)
    }
  }
  const invalidList = [...invalid.values()].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0)
  return { zone, records: sorted, invalid: invalidList, zones, names }
}

/**
 * Answer a query from the table. Authoritative for names under the zone or clusterset.local;
 * NXDOMAIN when authoritative and the name does not exist; NODATA (no records, nxdomain
 * false) when the name exists with other types only, or is an empty non-terminal.
 */
export function lookupDns (table: DnsTable, name: string, type: DnsRecord['type']): { records: DnsRecord[], authoritative: boolean, nxdomain: boolean } {
  const n = normalizeName(name)
  if (!table.zones.some((z) => isInZone(n, z))) return { records: [], authoritative: false, nxdomain: false }
  const records = (table.records.get(n) ?? []).filter((r) => r.type === type)
  return { records, authoritative: true, nxdomain: !table.names.has(n) }
}
