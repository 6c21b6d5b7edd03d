import type { Command } from 'commander'
import type { PeerStatus, StateResponse } from '../adapters/api-types.js'
import type { ApiCliOptions, ApiClient } from './api-client.js'
import { EXIT_OK, run } from './errors.js'
import { dataDirOption, jsonOption } from './options.js'
import { out, printJson, table } from './output.js'
import { apiOptions, duration, overlayAddress } from './status.js'

/**
 * `weft node ls` (every member, online or not) and `weft node leave` (this node leaves the
 * network for good: node.leave), through a running daemon's API.
 */

type Opts = ApiCliOptions & { json: boolean }

const client = async (o: ApiCliOptions): Promise<ApiClient> => await (await import('./api-client.js')).ApiClient.fromOptions(o)

/** One member, as `weft node ls --json` prints it (docs/cli.md). */
export interface NodeEntry {
  hostname: string
  cluster: string
  role: string
  roleStable: boolean
  address?: string
  address6?: string
  /** Whether its join announces a VPN device (false: --no-tun, the address reaches nothing). */
  vpn: boolean
  dnsName?: string
  peerId: string
  author: string
  /** This node itself. */
  self: boolean
  /** Heard from recently (presence); this node is always online. */
  online: boolean
  lastSeenMs?: number
}

export function registerNode (program: Command): void {
  // `weft node evict|revoke` (admin.ts) live under the same noun.
  const node = program.commands.find((c) => c.name() === 'node') ?? program.command('node').description('members of the network')
  jsonOption(apiOptions(dataDirOption(node.command('ls')
    .description('list every member, online or not: host, cluster, role, overlay address, DNS name, last seen'))), 'print {nodes: [...]} as JSON')
    .action(async (o: Opts) => { await run(async () => await nodeLs(o)) })
  jsonOption(apiOptions(dataDirOption(node.command('leave')
    .description('this node leaves the network for good (node.leave: the others drop its address, name and vote); its daemon then stops')
    .option('--reason <text>', 'why, recorded in the event'))), 'print {event, pushedTo} as JSON')
    .action(async (o: Opts & { reason?: string }) => { await run(async () => await nodeLeave(o)) })
}

export function nodeEntries (state: StateResponse, peers: readonly PeerStatus[], self: string): NodeEntry[] {
  const byAuthor = new Map(peers.filter((p) => p.author !== undefined).map((p) => [p.author as string, p]))
  return state.view.members.map((m) => {
    const p = byAuthor.get(m.author)
    const me = m.author === self
    return {
      hostname: m.hostname,
      cluster: m.cluster,
      role: m.role,
      roleStable: m.roleStable,
      ...(m.address !== undefined ? { address: m.address } : {}),
      ...(m.address6 !== undefined ? { address6: m.address6 } : {}),
      vpn: m.caps.includes('vpn'),
      ...(m.dnsName !== undefined ? { dnsName: m.dnsName } : {}),
      peerId: m.peerId,
      author: m.author,
      self: me,
      online: me || p?.online === true,
      ...(!me && p?.lastSeenMs !== undefined ? { lastSeenMs: p.lastSeenMs } : {})
    }
  }).sort((a, b) => a.cluster.localeCompare(b.cluster) || a.hostname.localeCompare(b.hostname) || (a.author < b.author ? -1 : 1))
}

export function renderNodes (nodes: readonly NodeEntry[]): string {
  return table(['HOST', 'CLUSTER', 'ROLE', 'ADDRESS', 'DNS NAME', 'STATE', 'LAST SEEN', 'PEER ID'], nodes.map((n) => [
    n.hostname,
    n.cluster,
    `${n.role}${n.roleStable ? '' : ' (tentative)'}`,
    overlayAddress({ ...n, caps: n.vpn ? ['vpn'] : [] }),
    n.dnsName ?? '-',
    n.self ? 'this node' : n.online ? 'online' : 'offline',
    n.self ? '-' : n.lastSeenMs === undefined ? 'never' : `${duration(n.lastSeenMs)} ago`,
    n.peerId
  ]))
}

async function nodeLs (o: Opts): Promise<number> {
  const api = await client(o)
  const [state, peers, status] = await Promise.all([api.state(), api.peers(), api.status()])
  const nodes = nodeEntries(state, peers, status.author)
  if (o.json) {
    printJson({ nodes })
    return EXIT_OK
  }
  out(nodes.length === 0 ? 'no members yet' : renderNodes(nodes))
  const offline = nodes.filter((n) => !n.online).length
  // An offline member keeps its address and name and counts toward majorities until it leaves
  // or the owner evicts it: say how.
  if (offline > 0) out(`\n${offline} offline: a member that is gone for good still counts toward majorities; on it run "weft node leave", or have the owner run "weft node evict <peer id>"`)
  return EXIT_OK
}

async function nodeLeave (o: Opts & { reason?: string }): Promise<number> {
  const r = await (await client(o)).leave(o.reason)
  if (o.json) {
    printJson(r)
    return EXIT_OK
  }
  out(`left the network: node.leave ${r.event.slice(0, 12)}, sent to ${r.pushedTo} peer${r.pushedTo === 1 ? '' : 's'}; the daemon stops now (started again, it joins again)`)
  return EXIT_OK
}
