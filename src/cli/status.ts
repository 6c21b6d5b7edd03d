import { Option, type Command } from 'commander'
import type { NodeStatus, PeerStatus } from '../adapters/api-types.js'
import type { ApiCliOptions } from './api-client.js'
import { EXIT_OK, run } from './errors.js'
import { dataDirOption, jsonOption } from './options.js'
import { out, plural, printJson, shortPeer, table } from './output.js'

/**
 * `weft status` and `weft peers ls`: a running daemon's live state, through its HTTP API (found
 * from the data dir's api.json, or `--api <url>`). The client is loaded when a command runs, so
 * other commands do not pay for it at start-up.
 */

/** `--api`, `--api-token-file` (and WEFT_API_URL / WEFT_API_TOKEN) for commands that talk to a daemon. */
export function apiOptions (cmd: Command): Command {
  return cmd
    .addOption(new Option('--api <url>', 'a daemon\'s API instead of the data dir\'s: http://host:port or unix:/path.sock').env('WEFT_API_URL'))
    .option('--api-token-file <file>', 'file holding the API token (default: WEFT_API_TOKEN, else <data dir>/api.token)')
}

const client = async (o: ApiCliOptions): Promise<import('./api-client.js').ApiClient> =>
  await (await import('./api-client.js')).ApiClient.fromOptions(o)

type Opts = ApiCliOptions & { json: boolean }

export function registerStatus (program: Command): void {
  jsonOption(apiOptions(dataDirOption(program.command('status')
    .description('show a running node: identity, network, peers, log, address, k3s role, DNS name, sync'))), 'print the status document of the API as JSON')
    .action(async (o: Opts) => { await run(async () => await status(o)) })

  const peers = program.command('peers').description('the peers of a running node')
  jsonOption(apiOptions(dataDirOption(peers.command('ls').description('list known peers: overlay address, connected, online, last seen, round-trip time, path (direct or relayed), addresses'))), 'print {peers: [...]} as JSON')
    .action(async (o: Opts) => { await run(async () => await peersLs(o)) })
}

export async function status (o: Opts): Promise<number> {
  const api = await client(o)
  const [s, peers] = await Promise.all([api.status(), api.peers()])
  if (o.json) {
    printJson(s)
    return EXIT_OK
  }
  out(renderStatus(s))
  out()
  out(peers.length === 0 ? 'no peers known' : renderPeers(peers))
  return EXIT_OK
}

export async function peersLs (o: Opts): Promise<number> {
  const peers = await (await client(o)).peers()
  if (o.json) {
    printJson({ peers })
    return EXIT_OK
  }
  out(peers.length === 0 ? 'no peers known' : renderPeers(peers))
  return EXIT_OK
}

export function renderStatus (s: NodeStatus): string {
  const now = s.startedAt + s.uptimeMs // the daemon's clock
  const rows: string[][] = [
    ['node', `${s.hostname} ${s.peerId}`],
    ['network', `${s.networkId}, cluster ${s.cluster}`],
    ['version', `${s.version}, up ${duration(s.uptimeMs)} (since ${new Date(s.startedAt).toISOString()})`],
    ...(s.listen.length === 0 ? [['listen', '-']] : s.listen.map((a, i) => [i === 0 ? 'listen' : '', a])),
    ['api', s.api],
    ['peers', `${s.peers.connected} connected, ${s.peers.online} online${s.peers.public !== undefined && s.peers.public > 0 ? `, ${s.peers.public} public (DHT, relays)` : ''}`],
    ['events', `${plural(s.events, 'event')} from ${plural(s.authors, 'author')}, ${s.pending} waiting for parents`],
    ['address', s.self.address === undefined ? '-' : noVpn(s) ? `${s.self.address} (no VPN: reaches nothing)` : s.self.address],
    ['role', s.self.role === undefined ? '-' : `${s.self.role}${s.self.roleStable === true ? ' (stable)' : ' (tentative: may still change)'}`],
    ['DNS name', s.self.dnsName === undefined ? '-' : noVpn(s) ? `${s.self.dnsName} (reserved: no address records without a VPN)` : s.self.dnsName],
    ...memberRows(s),
    ['sync', `${plural(s.sync.rounds, 'round')}, ${plural(s.sync.eventsPulled, 'event')} pulled, last ${s.sync.lastRoundAt === undefined ? 'never' : `${duration(Math.max(0, now - s.sync.lastRoundAt))} ago`}`]
  ]
  const v = s.vpn
  if (v === undefined) {
    rows.push(['vpn', s.problems?.some((p) => p.code === 'tun-unavailable') === true ? 'off (no TUN device: see problems)' : 'off (--no-tun)'])
  } else {
    const drops = Object.entries(v.drops).filter(([, n]) => n > 0).map(([r, n]) => `${r} ${n}`)
    rows.push(['vpn', `${v.device} ${v.addresses.join(' ') || '(no address yet)'}, mtu ${v.mtu}`])
    if (v.routes.length > 0) rows.push(['vpn routes', v.routes.join(', ')])
    rows.push(['vpn traffic', `in ${plural(v.tun.txPackets, 'packet')} (${v.tun.txBytes} B), out ${plural(v.tun.rxPackets, 'packet')} (${v.tun.rxBytes} B)`])
    rows.push(['vpn drops', drops.length === 0 ? 'none' : drops.join(', ')])
    // Older daemons do not say.
    const pt = v.packetThread
    const loop = pt?.loop === 'native' ? ', native loop' : pt?.loop === 'javascript' ? `, JavaScript loop (${pt.loopReason ?? 'no native loop'})` : ''
    if (pt !== undefined) rows.push(['vpn thread', pt.running ? `packet thread${loop}${pt.restarts > 0 ? `, restarted ${plural(pt.restarts, 'time')}` : ''}` : `main thread (${pt.reason ?? 'no packet thread'})`])
    const paths = v.peers.filter((p) => p.path !== undefined && p.path !== 'none')
    if (paths.length > 0) {
      const direct = paths.filter((p) => p.path === 'direct').length
      rows.push(['vpn paths', `${direct} of ${plural(paths.length, 'peer')} on the direct path${v.directPort !== undefined ? ` (port ${v.directPort})` : ' (off)'}, ${paths.length - direct} over the mesh`])
    }
    // Older daemons have no fault counters.
    const faults = v.tun.faults ?? 0
    if (faults > 0) rows.push(['vpn faults', `${plural(faults, 'fault')} recovered (${plural(v.tun.reopens ?? 0, 'reopen')}), last: ${v.tun.lastFault ?? '-'}`])
  }
  rows.push(['k3s', k3sLine(s.k3s, now)])
  // Older daemons send no list: nothing to say either way.
  if (s.problems !== undefined) {
    if (s.problems.length === 0) rows.push(['problems', 'none'])
    for (const [i, p] of s.problems.entries()) {
      rows.push([i === 0 ? 'problems' : '', `${p.severity === 'error' ? 'ERROR' : 'WARNING'} ${p.code}: ${p.message} (since ${new Date(p.since).toISOString()})`])
      rows.push(['', `  fix: ${p.fix}`])
    }
  }
  return table(['FIELD', 'VALUE'], rows)
}

/** This node runs without a VPN device (older daemons send no `self.vpn`: no VPN status either). */
function noVpn (s: NodeStatus): boolean {
  return s.self.vpn === false || (s.self.vpn === undefined && s.vpn === undefined)
}

/** The k3s supervisor in one line: its state, role, pid and restarts (docs/k3s.md). */
function k3sLine (k: Record<string, unknown> | undefined, now: number): string {
  if (k === undefined) return 'off (no --k3s)'
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)
  const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined)
  const parts = [str(k.state) ?? 'unknown']
  const role = str(k.role)
  if (role !== undefined) parts.push(`as ${role}${str(k.cluster) !== undefined ? ` of ${str(k.cluster) as string}` : ''}`)
  if (num(k.pid) !== undefined) parts.push(`pid ${num(k.pid) as number}`)
  if ((num(k.restarts) ?? 0) > 0) parts.push(plural(num(k.restarts) as number, 'restart'))
  const restartAt = num(k.restartAt)
  if (restartAt !== undefined) parts.push(`next start in ${duration(Math.max(0, restartAt - now))}`)
  const reason = str(k.reason)
  return `${parts.join(', ')}${reason !== undefined ? `: ${reason}` : ''}`
}

/**
 * The cluster's members and the offline ones by name: an offline member still counts toward the
 * majority a k3s decision needs (only an eviction by the owner removes it), so a cluster that
 * stays tentative is explained here.
 */
function memberRows (s: NodeStatus): string[][] {
  const m = s.members
  if (m === undefined) return []
  const votes = m.votes === undefined ? '' : `; ${m.votes.for} of ${m.votes.electorate} acknowledged the k3s master`
  const rows = [['members', `${m.total} in cluster ${m.cluster}, ${m.online} online${votes}`]]
  for (const [i, o] of m.offline.entries()) {
    rows.push([i === 0 ? 'offline' : '', `${o.hostname} (${o.role}) ${o.author.slice(0, 12)}, ${o.lastSeenMs === undefined ? 'never seen by this node' : `last seen ${duration(o.lastSeenMs)} ago`}; still counts toward the majority`])
  }
  return rows
}

export function renderPeers (peers: readonly PeerStatus[]): string {
  const sorted = [...peers].sort((a, b) => Number(b.connected) - Number(a.connected) || Number(b.online) - Number(a.online) ||
    (a.hostname ?? '\uffff').localeCompare(b.hostname ?? '\uffff') || (a.peerId < b.peerId ? -1 : 1))
  return table(['PEER ID', 'HOST', 'OVERLAY', 'CONNECTED', 'ONLINE', 'LAST SEEN', 'RTT', 'PATH', 'ADDRESSES'], sorted.map((p) => [
    shortPeer(p.peerId),
    p.hostname ?? '-',
    p.address === undefined ? '-' : p.vpn === false ? `${p.address} (no VPN)` : p.address,
    p.connected ? 'yes' : 'no',
    p.online ? 'yes' : 'no',
    p.lastSeenMs === undefined ? '-' : `${duration(p.lastSeenMs)} ago`,
    p.latencyMs === undefined ? '-' : rtt(p.latencyMs),
    // The peer id is the row's first column: the path shows the address only.
    p.path === undefined ? '-' : `${p.path.addr.replace(/\/p2p\/[^/]+$/, '')} (${p.path.direct ? 'direct' : p.path.limited === true ? 'relayed, limited' : 'relayed'})`,
    p.addrs.length === 0 ? '-' : `${p.addrs[0] as string}${p.addrs.length > 1 ? ` (+${p.addrs.length - 1})` : ''}`
  ]))
}

/** A round-trip time: a decimal below 10 ms. */
export function rtt (ms: number): string {
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`
}

/**
 * A member's overlay addresses; marked "(no VPN)" when its join announces no VPN device
 * (--no-tun): the address is held but reaches nothing.
 */
export function overlayAddress (m: { address?: string, address6?: string, caps: readonly string[] }): string {
  const a = [m.address, m.address6].filter(Boolean).join(' ')
  if (a === '') return '-'
  return m.caps.includes('vpn') ? a : `${a} (no VPN)`
}

/** 950 ms → "0s", 75 s → "1m15s", 2 h → "2h0m", 3 days → "3d0h". */
export function duration (ms: number): string {
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${s % 60}s`
  const h = Math.floor(m / 60)
  if (h < 24) return `${h}h${m % 60}m`
  return `${Math.floor(h / 24)}d${h % 24}h`
}
