import type { ServicesView } from './services.js'
import { isInZone, labelProblem, MAX_LABEL_LENGTH, nameProblem, normalizeName } from './dns-name.js'

/**
 * DNS records derived from members, leases and exported services. Pure: the adapter that
 * answers queries calls `lookupDns`. See docs/projections-services-dns.md.
 */

/** The MCS zone (KEP-1645 DNS specification, section 2.1: it must be `clusterset.local`). */
export const CLUSTERSET_ZONE = 'clusterset.local'
/** MCS DNS schema version served at `dns-version.clusterset.local` (specification section 2.2). */
export const MCS_DNS_SCHEMA_VERSION = '1.0.0'
export const DNS_TTL = 5
export const SRV_PRIORITY = 0
export const SRV_WEIGHT = 100
/**
 * The `caps` entry of a `node.join` whose node runs the VPN data plane (a TUN device). Without
 * it the member's overlay address reaches nothing, so its name gets no address records.
 */
export const VPN_CAP = 'vpn'

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
  /** Member (author hex) → its DNS label (unique in the network). */
  hostNames: ReadonlyMap<string, string>
  /**
   * Names that exist without records (sorted): the names of members that hold an address but
   * whose join announces no VPN device. They are answered NODATA, not NXDOMAIN: the name stays
   * the member's (nobody else gets it) and answers once the member joins with a VPN device.
   */
  reserved: readonly string[]
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

/**
 * `label` when free, else `label-<hex>` with 6 hex characters of the member's key (8, 10… if
 * that is taken too), the label shortened to keep it within 63 characters. Not the peer id:
 * every Ed25519 peer id starts with the same "12D3KooW".
 */
export function distinctLabel (label: string, author: string, taken: ReadonlySet<string>): string {
  if (!taken.has(label)) return label
  for (let n = 6; n <= author.length; n += 2) {
    const suffix = `-${author.slice(0, n).toLowerCase()}`
    const head = label.slice(0, MAX_LABEL_LENGTH - suffix.length).replace(/-+$/, '')
    const candidate = `${head}${suffix}`
    if (!taken.has(candidate)) return candidate
  }
  return `${label}-${author}`.slice(0, MAX_LABEL_LENGTH)
}

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
  // Every member gets one DNS label, unique in the whole network: its host label, or, when an
  // earlier member (in join order) holds that label, `<label>-<first 6 hex of its key>`. The
  // first keeps its name; the order is the log's, so every replica names them alike.
  const byOrder = [...input.members].sort((a, b) => a.joinedOrder - b.joinedOrder || (a.author < b.author ? -1 : a.author > b.author ? 1 : 0))
  const taken = new Set<string>()
  const hostNames = new Map<string, string>()
  for (const m of byOrder) {
    const label = hostLabel(m.hostname)
    const problem = labelProblem(label) ?? labelProblem(m.cluster)
    if (problem !== undefined) {
      report(`${label}.${m.cluster}.${zone}`, `hostname "${m.hostname}": ${problem}`)
      continue
    }
    const assigned = distinctLabel(label, m.author, taken)
    taken.add(assigned)
    hostNames.set(m.author, assigned)
  }
  // A member without a VPN device (--no-tun) holds an overlay address that reaches nothing:
  // its names exist (reserved, NODATA) but answer no A/AAAA, so nobody connects into the void.
  // Like any member's, they exist only once it holds an address.
  const reserved: string[] = []
  if (zoneOk) {
    for (const m of byOrder) {
      const label = hostNames.get(m.author)
      if (label === undefined) continue
      const owners = [`${label}.${m.cluster}.${zone}`, `${label}.${zone}`]
      const a = addrs.get(m.author) as Addresses
      if (m.caps.includes(VPN_CAP)) for (const owner of owners) addAddresses(owner, a)
      else if (a.v4.length + a.v6.length > 0) reserved.push(...owners)
    }
  }

  // ---- services ----
  // Records come only from the projection's import: its service address, and the contributing
  // exports (the exporters the services projection accepts). Membership of a cluster adds none.
  for (const imp of input.imports) {
    const svcName = `${imp.name}.${imp.namespace}.svc.${CLUSTERSET_ZONE}`
    const problem = nameProblem(svcName)
    if (problem !== undefined) {
      report(svcName, problem)
      continue
    }
    const owners = zoneOk ? [svcName, `${imp.name}.${imp.namespace}.svc.${zone}`] : [svcName]
    const srv = (owner: string, target: string): void => {
      for (const p of imp.ports) {
        const value = { priority: SRV_PRIORITY, weight: SRV_WEIGHT, port: p.port, target }
        add(owner, 'SRV', value) // SRV at the bare name: every port (as CoreDNS answers it)
        if (p.name !== undefined) add(`_${p.name}._${p.protocol.toLowerCase()}.${owner}`, 'SRV', value, 2) // MCS DNS 2.3.2
      }
    }
    for (const e of imp.exporters) {
      if (zoneOk && e.address !== undefined) add(`${imp.name}.${imp.namespace}.svc.${e.cluster}.${zone}`, 'A', e.address)
    }
    if (imp.type === 'Headless') {
      // MCS DNS 2.4: one record per endpoint; Weft's endpoint in a cluster is that cluster's
      // export, named `<exporter's host label>.<cluster>.<svc>…` and reached at its address.
      for (const owner of owners) {
        for (const e of imp.exporters) {
          if (e.address === undefined) continue
          const endpoint = `${hostNames.get(e.author) ?? `x-${e.author.slice(0, 6)}`}.${e.cluster}.${owner}`
          add(owner, 'A', e.address)
          add(endpoint, 'A', e.address)
          srv(owner, endpoint)
        }
      }
      continue
    }
    if (imp.address === undefined) continue
    for (const owner of owners) {
      add(owner, 'A', imp.address)
      srv(owner, owner)
    }
  }
  add(`dns-version.${CLUSTERSET_ZONE}`, 'TXT', MCS_DNS_SCHEMA_VERSION)

  // ---- sort, and the tree of names that exist ----
  const zones = zoneOk ? [zone, CLUSTERSET_ZONE] : [CLUSTERSET_ZONE]
  const sorted = new Map<string, DnsRecord[]>()
  for (const name of [...records.keys()].sort()) sorted.set(name, (records.get(name) as DnsRecord[]).sort(compareRecords))
  const reservedList = [...new Set(reserved)].sort()
  const names = existingNames(zones, [...sorted.keys(), ...reservedList])
  const invalidList = [...invalid.values()].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0)
  return { zone, records: sorted, invalid: invalidList, zones, names, hostNames, reserved: reservedList }
}

/** The names that exist: the zone apexes, the owners given, and their ancestors up to an apex. */
export function existingNames (zones: readonly string[], owners: Iterable<string>): Set<string> {
  const names = new Set<string>(zones)
  for (const name of owners) {
    const apex = zones.find((z) => isInZone(name, z))
    let n = name
    while (apex !== undefined && n !== apex && !names.has(n)) {
      names.add(n)
      n = n.slice(n.indexOf('.') + 1)
    }
  }
  return names
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
