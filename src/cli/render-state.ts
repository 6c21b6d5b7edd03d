import type { MembersState } from '../projections/members.js'
import type { NetworkState } from '../projections/network.js'
import { networkView, type NetworkView } from '../projections/view.js'
import { authorName } from '../log/author.js'
import { fromHex } from '../log/bytes.js'
import { plain, shortPeer, table } from './output.js'
import { overlayAddress } from './status.js'

/**
 * Human rendering of folded state, one renderer per projection key of `cliReducers`. A key
 * without a renderer is printed as JSON, so a new reducer shows up in `weft log state` the day
 * it is added to ./reducers.ts; register a renderer here to give it a table.
 */
export interface ProjectionRenderer<S = unknown> {
  /** Section heading. */
  readonly title: string
  /** Text lines for people (no trailing newline). */
  human (state: S): string
  /** What `--json` prints for this projection (default: the state, Maps as objects). */
  json? (state: S): unknown
}

const renderers = new Map<string, ProjectionRenderer<never>>()

export function registerRenderer<S> (key: string, renderer: ProjectionRenderer<S>): void {
  renderers.set(key, renderer as ProjectionRenderer<never>)
}

export function renderStates (states: Record<string, unknown>): string {
  const parts: string[] = []
  for (const [key, state] of Object.entries(states)) {
    const r = renderers.get(key) as ProjectionRenderer | undefined
    if (r === undefined) {
      parts.push(`${key}:\n${JSON.stringify(plain(state), null, 2)}`)
    } else {
      parts.push(`${r.title}:\n${r.human(state)}`)
    }
  }
  return parts.join('\n\n')
}

/** For `--json`: the whole state object, Maps as objects. */
export function statesJson (states: Record<string, unknown>): unknown {
  const out: Record<string, unknown> = {}
  for (const [key, state] of Object.entries(states)) {
    const r = renderers.get(key) as ProjectionRenderer | undefined
    out[key] = plain(r?.json === undefined ? state : r.json(state))
  }
  return out
}

registerRenderer<MembersState>('members', {
  title: 'members',
  human (s) {
    const rows = [...s.active.values()]
      .sort((a, b) => a.joinedLamport - b.joinedLamport || (a.peerId < b.peerId ? -1 : 1))
      .map((m) => [m.hostname, m.cluster, m.role, m.peerId, String(m.joinedLamport)])
    const lines = [rows.length === 0 ? '(no members)' : table(['HOST', 'CLUSTER', 'ROLE', 'PEER ID', 'JOINED'], rows)]
    if (s.departed.size > 0) {
      const gone = [...s.departed.values()].sort((a, b) => a.lamport - b.lamport)
        .map((d) => [peerOf(d.author), d.how === 'evict' ? `evicted by ${shortPeer(peerOf(d.by))}` : 'left', String(d.lamport), d.reason ?? ''])
      lines.push('', 'departed:', table(['PEER', 'HOW', 'LAMPORT', 'REASON'], gone))
    }
    return lines.join('\n')
  }
})

function peerOf (authorHex: string): string {
  return authorName(fromHex(authorHex))
}

registerRenderer<NetworkState>('network', {
  title: 'network',
  human: (s) => renderView(networkView(s)),
  json: (s) => networkView(s)
})

/** Every projection as tables: members and roles, clusters, addresses, routes, services, DNS, settings. */
export function renderView (v: NetworkView): string {
  const out: string[] = []
  out.push('members:', v.members.length === 0
    ? '(no members)'
    : table(['HOST', 'CLUSTER', 'K3S ROLE', 'ADDRESS', 'DNS NAME', 'PEER ID'], v.members.map((m) => [
      m.hostname, m.cluster, `${m.role}${m.roleStable ? '' : ' (tentative)'}`, overlayAddress(m), m.dnsName ?? '-', shortPeer(m.peerId)
    ])))
  if (v.departed.length > 0) {
    out.push('', 'departed:', table(['PEER', 'HOW', 'LAMPORT', 'REASON'], v.departed.map((d) => [shortPeer(peerOf(d.author)), d.how, String(d.lamport), d.reason ?? ''])))
  }
  if (v.clusters.length > 0) {
    const host = (a?: string): string => v.members.find((m) => m.author === a)?.hostname ?? (a === undefined ? '-' : a.slice(0, 12))
    out.push('', 'clusters:', table(['CLUSTER', 'STATUS', 'INIT MASTER', 'HOW', 'NOTE'], v.clusters.map((c) => [
      c.cluster, c.status, host(c.master?.author), c.master?.how ?? '-', [c.reason, ...c.conflicts.map((x) => `${host(x.author)} ${x.reason}`)].filter(Boolean).join('; ')
    ])))
  }
  const problems = v.ipam.claims.filter((c) => c.status === 'lost' || c.status === 'invalid')
  if (problems.length > 0) {
    out.push('', 'address claims not held:', table(['PEER', 'ADDRESS', 'STATUS', 'REASON'], problems.map((c) => [shortPeer(peerOf(c.author)), c.addr, c.status, c.reason ?? ''])))
  }
  out.push('', 'routes:', v.routes.routes.length === 0 ? '(none)' : table(['DESTINATION', 'VIA', 'KIND'], v.routes.routes.map((r) => [r.cidr, r.peerHost, r.kind])))
  if (v.routes.conflicts.length > 0) {
    out.push('', 'conflicting advertisements (not used):', table(['CIDR', 'PEER', 'CLASHES WITH'], v.routes.conflicts.map((c) => [c.cidr, shortPeer(peerOf(c.peer)), c.clashesWith])))
  }
  if (v.routes.invalid.length > 0) {
    out.push('', 'invalid advertisements (not used):', table(['CIDR', 'PEER', 'REASON'], v.routes.invalid.map((c) => [c.cidr, shortPeer(peerOf(c.peer)), c.reason])))
  }
  if (v.services.imports.length > 0) {
    out.push('', 'service imports:', table(['SERVICE', 'TYPE', 'PORTS', 'CLUSTERS', 'CONFLICTS'], v.services.imports.map((i) => [
      `${i.namespace}/${i.name}`, i.type, i.ports.map((p) => `${p.port}/${p.protocol}`).join(','), i.clusters.join(','), i.conflicts.join(',')
    ])))
  }
  out.push('', `dns (zone ${v.dns.zone}):`, v.dns.records.length === 0 ? '(no records)' : table(['NAME', 'TYPE', 'VALUE'], v.dns.records.map((r) => [
    r.name, r.type, typeof r.value === 'string' ? r.value : `${r.value.priority} ${r.value.weight} ${r.value.port} ${r.value.target}`
  ])))
  if (v.dns.invalid.length > 0) out.push('', 'names not served:', table(['NAME', 'REASON'], v.dns.invalid.map((i) => [i.name, i.reason])))
  const sv = v.settings.values as Record<string, unknown>
  out.push('', 'settings:', table(['KEY', 'VALUE', 'ORIGIN'], Object.keys(sv).map((k) => {
    const o = (v.settings.origin as Record<string, { author: string, lamport: number } | undefined>)[k]
    return [k, JSON.stringify(sv[k]), o === undefined ? 'default' : `${shortPeer(peerOf(o.author))} @${o.lamport}`]
  })))
  if (v.settings.problems.length > 0) out.push('', 'settings problems:', ...v.settings.problems.map((p) => `  ${p.event.slice(0, 12)} ${p.reason}`))
  return out.join('\n')
}
