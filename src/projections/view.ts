import type { NetworkState } from './network.js'
import type { Departure } from './members.js'
import { deriveRoles, type ClusterRolesView, type K3sRole } from './roles.js'
import { leaseOf, type ClaimStatus, type Lease } from './ipam.js'
import { deriveRoutes, type Route, type RouteConflict, type RouteTable } from './routes.js'
import { deriveServices, type ServicesView } from './services.js'
import { deriveDns, VPN_CAP, type DnsRecord } from './dns.js'
import type { SettingsState } from './settings.js'
import { currentDelegates, latestEpoch, type RefusedEvent, type Revocation } from './authority.js'
import { comparePositions } from './position.js'

export interface MemberView {
  author: string
  peerId: string
  hostname: string
  cluster: string
  requestedRole: string
  role: K3sRole
  roleStable: boolean
  address?: string
  address6?: string
  /**
   * The member's DNS name. Without a VPN device (`vpn` false) the name is reserved: it exists
   * but has no A/AAAA records (NODATA), because the overlay address reaches nothing.
   */
  dnsName?: string
  /** Its join announces a VPN device (the `vpn` cap); false (--no-tun): its overlay address reaches nothing. */
  vpn: boolean
  addrs: readonly string[]
  caps: readonly string[]
}

export interface NetworkView {
  settings: Pick<SettingsState, 'values' | 'origin' | 'problems'>
  members: MemberView[]
  departed: Departure[]
  clusters: ClusterRolesView[]
  ipam: { leases: Lease[], claims: Array<ClaimStatus & { author: string, family: 4 | 6 }> }
  routes: { routes: Array<Route & { peerHost: string }>, conflicts: RouteConflict[], invalid: RouteTable['invalid'] }
  services: ServicesView
  /** `reserved`: names that exist without records (members without a VPN device; answered NODATA). */
  dns: { zone: string, records: DnsRecord[], reserved: string[], invalid: Array<{ name: string, reason: string }> }
  /** Who governs the network: the owner key, delegates, revoked members, refused events (docs/trust.md). */
  authority: { owner: string | null, delegates: string[], revoked: Revocation[], epoch: number, refused: RefusedEvent[], refusedTotal: number }
}

/** Everything a node derives from the log, as plain JSON-able data, in a deterministic order. */
export function networkView (s: NetworkState): NetworkView {
  const settings = s.settings.values
  const clusters = deriveRoles(s.roles, s.members, settings)
  const roleOf = new Map<string, { role: K3sRole, stable: boolean }>()
  for (const c of clusters) for (const m of c.members) roleOf.set(m.author, { role: m.role, stable: m.stable })
  const active = [...s.members.active.values()].sort((a, b) => a.joinedLamport - b.joinedLamport || (a.author < b.author ? -1 : 1))
  const activeClusters = new Set(active.map((m) => m.cluster))
  const services = deriveServices(s.services, activeClusters)
  const dns = deriveDns({
    zone: settings.zone,
    members: active.map((m, i) => ({
      author: m.author,
      hostname: m.hostname,
      cluster: m.cluster,
      joinedOrder: i,
      v4: leaseOf(s.ipam, m.author, 4)?.addr,
      v6: leaseOf(s.ipam, m.author, 6)?.addr,
      caps: m.caps
    })),
    imports: services.imports
  })
  const records = [...dns.records.values()].flat().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.type < b.type ? -1 : a.type > b.type ? 1 : 0))
  const reserved = new Set(dns.reserved)
  const nameOf = (author: string, cluster: string): string | undefined => {
    // A duplicate hostname gets a distinct label; an invalid one, or no address, no name; a
    // member without a VPN device its reserved name (no records).
    const name = `${dns.hostNames.get(author) ?? ''}.${cluster}.${dns.zone}`
    return dns.records.has(name) || reserved.has(name) ? name : undefined
  }
  const hostOf = new Map(active.map((m) => [m.author, m.hostname]))
  const table = deriveRoutes(s.routes, s.ipam, settings)
  return {
    settings: { values: settings, origin: s.settings.origin, problems: s.settings.problems },
    members: active.map((m) => ({
      author: m.author,
      peerId: m.peerId,
      hostname: m.hostname,
      cluster: m.cluster,
      requestedRole: m.role,
      role: roleOf.get(m.author)?.role ?? 'none',
      roleStable: roleOf.get(m.author)?.stable ?? false,
      address: leaseOf(s.ipam, m.author, 4)?.addr,
      address6: leaseOf(s.ipam, m.author, 6)?.addr,
      dnsName: nameOf(m.author, m.cluster),
      vpn: m.caps.includes(VPN_CAP),
      addrs: m.addrs,
      caps: m.caps
    })),
    departed: [...s.members.departed.values()].sort((a, b) => a.lamport - b.lamport || (a.author < b.author ? -1 : 1)),
    clusters,
    ipam: {
      leases: [...s.ipam.leases.values()].sort((a, b) => (a.addr < b.addr ? -1 : 1)),
      claims: [...s.ipam.claims].map(([k, c]) => ({ ...c, author: k.split('/')[0] as string, family: Number(k.split('/')[1]) as 4 | 6 }))
        .sort((a, b) => (a.author < b.author ? -1 : a.author > b.author ? 1 : a.family - b.family))
    },
    routes: { routes: table.routes.map((r) => ({ ...r, peerHost: hostOf.get(r.peer) ?? r.peer.slice(0, 12) })), conflicts: table.conflicts, invalid: table.invalid },
    services,
    dns: { zone: dns.zone, records, reserved: [...dns.reserved], invalid: dns.invalid },
    authority: {
      owner: s.authority.owner ?? null,
      delegates: currentDelegates(s.authority),
      revoked: [...s.authority.revoked.values()].sort((a, b) => comparePositions(a.at, b.at)),
      epoch: latestEpoch(s.authority),
      refused: s.authority.refused,
      refusedTotal: s.authority.refusedTotal
    }
  }
}
