import { CLUSTERSET_ZONE, existingNames, lookupDns, zoneProblem, type DnsRecord, type DnsTable } from '../projections/dns.js'
import { networkView, type NetworkView } from '../projections/view.js'
import type { NetworkState } from '../projections/network.js'

/**
 * What the DNS server answers from: the dns projection of the current log. The server asks it
 * on every query, so a source that follows the log makes answers follow the log at once.
 */
export interface DnsLookup {
  records: readonly DnsRecord[]
  /** The name is in one of `zones()`. */
  authoritative: boolean
  /** Authoritative and the name does not exist (no records of any type, not an ancestor of one). */
  nxdomain: boolean
}

export interface DnsAnswerSource {
  /** The zones answered authoritatively: lowercase, no trailing dot. */
  zones: () => readonly string[]
  lookup: (name: string, type: DnsRecord['type']) => DnsLookup
  /** The SOA serial (grows whenever the answers change); 1 when absent. */
  serial?: () => number
}

/**
 * Rebuild the lookup table from the flat `dns` section of a NetworkView (the one `weft log
 * state` and the API show), with the same `zones` and `names` rules as `deriveDns`: the network
 * zone when valid and clusterset.local; every record owner and reserved name (a member without
 * a VPN device: NODATA) and their ancestors up to its apex.
 */
export function dnsTableFromView (dns: NetworkView['dns']): DnsTable {
  const zone = dns.zone
  const zones = zoneProblem(zone) === undefined ? [zone, CLUSTERSET_ZONE] : [CLUSTERSET_ZONE]
  const records = new Map<string, DnsRecord[]>()
  for (const r of dns.records) {
    const list = records.get(r.name)
    if (list === undefined) records.set(r.name, [r])
    else list.push(r)
  }
  const names = existingNames(zones, [...records.keys(), ...dns.reserved])
  return { zone, records, invalid: dns.invalid, zones, names, hostNames: new Map(), reserved: dns.reserved }
}

/**
 * A source over whatever table `current()` returns, read on every query. The SOA serial moves
 * forward (to the current Unix second, or by one) whenever `current()` returns a new table.
 */
export function tableDnsSource (current: () => DnsTable, now: () => number = Date.now): DnsAnswerSource {
  let last: DnsTable | undefined
  let serial = 0
  const table = (): DnsTable => {
    const t = current()
    if (t !== last) {
      last = t
      serial = Math.max(serial + 1, Math.floor(now() / 1000)) >>> 0
    }
    return t
  }
  return {
    zones: () => table().zones,
    lookup: (name, type) => lookupDns(table(), name, type),
    serial: () => { table(); return serial }
  }
}

/** A source that follows a replica: call `invalidate()` whenever the log changes. */
export interface NetworkDnsSource extends DnsAnswerSource {
  invalidate: () => void
  /** The table answers come from now (computed if the log changed since the last query). */
  table: () => DnsTable
}

/**
 * The DNS answers of a running node: `state()` is `replica.states().network`. The table is
 * derived from `networkView(state()).dns` lazily, at the first query after an `invalidate()`,
 * so a burst of log changes costs one derivation, and answers never lag the log.
 */
export function networkDnsSource (state: () => NetworkState, now: () => number = Date.now): NetworkDnsSource {
  let cached: DnsTable | undefined
  const table = (): DnsTable => {
    cached ??= dnsTableFromView(networkView(state()).dns)
    return cached
  }
  const src = tableDnsSource(table, now)
  return { ...src, table, invalidate: () => { cached = undefined } }
}
