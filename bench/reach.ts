/**
 * Reach bench (`npm run bench -- reach`): the simulated internet of test/system/internet-lab.ts
 * (~1% loss and 60–100 ms round trip between NATted machines (delay-wire.ts); two stand-in public libp2p nodes, one public Weft member, one machine behind each of a
 * port-preserving, a port-restricted and a symmetric NAT), every Weft node started with only the
 * token, `--bootstrap` and `--public-ranges`. One JSON line per NAT pair: the time from start to
 * connected and whether the connection is direct (hole punched) or relayed; one line for the time
 * to agreement on the log, and per pair when it first went direct (`direct_ms`, null: still
 * relayed 45 s after the start; WEFT_REUSEPORT=off: without dials from the listening port, so
 * without hole punching). Goal (issue 15): every pair < 30 s; direct wherever hole punching can
 * work (docs/mesh.md "Hole punching over TCP": here only port-preserving ↔ port-restricted).
 * Then, per pair, the time until it is linked without limits (a member relay, or direct) and
 * synced over it; and the VPN from the port-preserving member over a direct link (to the public
 * member), a hole-punched one (to the port-restricted member) and a relayed one (to the symmetric
 * member, through the public member's relay): ping p50 and TCP throughput, in the same run, with
 * the punched/direct and relayed/direct ratios (WEFT_BENCH_REACH_DIRECT_PORT=off:
 * without the VPN's direct path, so both take a libp2p stream). Needs root, nft,
 * /dev/net/tun and ping; without them, prints a line saying it was skipped.
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { disagreement, tcpTransfer, tunNetnsSupport, stateOf, waitApi, waitFor, type WeftNode } from '../test/system/netns.js'
import { buildInternet, connectTimes, directTimes, LAN_DELAY_MS, NAT_KINDS, overlayAddr, startReachNodes, unlimitedLink, untilPingAnswered, wanLoss, type Internet } from '../test/system/internet-lab.js'
import { formatToken, newToken } from '../src/log/token.js'
import { now, progress, round } from './_lib.js'

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url))
const TARGET = '< 30000'
/** Pings per path, 20 ms apart; TCP seconds per path. */
const PINGS = 100
const TCP_SECONDS = 5
/** Until when (from the start) pairs are watched for a hole-punched link; agreement and the rest come after. */
const DIRECT_WINDOW_MS = 45_000

function line (fields: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ bench: 'reach', ...fields }) + '\n')
}

function unsupported (): string | undefined {
  const s = tunNetnsSupport()
  if (!s.ok) return s.reason
  try { execFileSync('nft', ['--version'], { stdio: 'pipe' }) } catch { return 'nft (nftables) is missing' }
  try { execFileSync('ping', ['-V'], { stdio: 'pipe' }) } catch { return '"ping" is missing (install iputils-ping)' }
  if (!existsSync(CLI)) return `${CLI} is missing: run "npm run build" first`
  return undefined
}

export async function run (): Promise<void> {
  const why = unsupported()
  if (why !== undefined) {
    line({ metric: 'connect_ms', value: null, unit: 'ms', target: TARGET, skipped: why })
    return
  }
  progress('reach: building the simulated internet (3 NATs, 2 public nodes, 1 public member)')
  const net = await buildInternet({ nats: NAT_KINDS, publicNodes: 2, publicMembers: 1 })
  try {
    const started = now()
    // WEFT_BENCH_REACH_DIRECT_PORT=off: no VPN direct path, so the direct link's packets take a
    // libp2p stream too, and the ratio is the relay hop's own cost.
    const directPort = process.env.WEFT_BENCH_REACH_DIRECT_PORT
    const nodes = startReachNodes(net, CLI, formatToken(newToken()), { tun: true, extra: directPort !== undefined ? ['--direct-port', directPort] : [] })
    if (directPort !== undefined) progress(`reach: every node with --direct-port ${directPort}`)
    for (const n of nodes) await waitApi(n, 30_000)
    const natted = nodes.slice(net.publicMembers.length)
    const times = await connectTimes(net, natted, started, 90_000)
    for (const t of times) {
      line({ metric: 'connect_ms', pair: t.pair, value: round(t.ms), unit: 'ms', target: TARGET, path: t.path })
    }
    // Hole punching: when each pair's traffic first took a direct connection (null: never, in the
    // window), watched while agreement and the unlimited links are waited for.
    const direct = directTimes(net, natted, started, DIRECT_WINDOW_MS)
    await waitFor(async () => disagreement(await Promise.all(nodes.map(async (n) => await stateOf(net.lab, n))), nodes.length) === undefined, 'agreement', 90_000, 250)
    line({ metric: 'agreement_ms', value: round(now() - started), unit: 'ms', target: null, nodes: nodes.length })
    for (let i = 0; i < natted.length; i++) {
      for (let j = i + 1; j < natted.length; j++) {
        const link = await unlimitedLink(net, natted[i] as WeftNode, natted[j] as WeftNode, 90_000)
        line({ metric: 'unlimited_ms', pair: `${net.natted[i]?.nat ?? i} ↔ ${net.natted[j]?.nat ?? j}`, value: round(link.at - started), unit: 'ms', target: null, path: link.direct ? 'direct' : 'relayed' })
      }
    }
    progress(`reach: watching for hole-punched (direct) links until ${DIRECT_WINDOW_MS / 1000} s after the start`)
    for (const d of await direct) {
      line({ metric: 'direct_ms', pair: d.pair, value: d.ms === null ? null : round(d.ms), unit: 'ms', target: null, path: d.path, reuseport: process.env.WEFT_REUSEPORT ?? 'on' })
    }
    await vpnFigures(net, natted[0] as WeftNode, [
      { path: 'direct', to: nodes[0] as WeftNode },
      { path: 'punched', to: natted[1] as WeftNode },
      { path: 'relayed', to: natted[2] as WeftNode }
    ])
    const loss = await wanLoss(net)
    line({ metric: 'wan_loss', value: round(loss.dropped / Math.max(1, loss.forwarded) * 100), unit: '%', target: null, per_router_and_direction: true, forwarded: loss.forwarded, dropped: loss.dropped, delay: `${LAN_DELAY_MS.join('/')} ms one way between each NATted machine and its router (userspace wire; no netem in this kernel)` })
  } finally {
    await net.lab.destroy()
  }
}

/**
 * The VPN from `from` (behind the port-preserving NAT) over each path: `direct` to the public
 * member, `punched` to the port-restricted member (hole punched, when it was), `relayed` to the
 * symmetric one (through the member relay).
 */
async function vpnFigures (net: Internet, from: WeftNode, paths: ReadonlyArray<{ path: string, to: WeftNode }>): Promise<void> {
  const out: Record<string, { p50: number, mbps: number }> = {}
  for (const [k, p] of paths.entries()) {
    progress(`reach: VPN ${from.host.hostname} → ${p.to.host.hostname} (${p.path}): ${PINGS} pings, ${TCP_SECONDS} s of TCP`)
    const addr = await overlayAddr(net, p.to)
    await untilPingAnswered(net, from, addr, 30_000)
    const r = await net.lab.exec(from.host, ['ping', '-n', '-i', '0.02', '-c', String(PINGS), '-W', '2', addr], 60_000)
    const t = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((x, y) => x - y)
    const p50 = t.length < PINGS / 2 ? NaN : t[Math.floor(t.length / 2)] as number
    const x = await tcpTransfer(net.lab, from.host, p.to.host, addr, { seconds: TCP_SECONDS, port: 5401 + k, timeoutMs: 60_000 })
    out[p.path] = { p50, mbps: x.mbps }
    line({ metric: 'vpn_ping_p50_ms', path: p.path, direct_port: process.env.WEFT_BENCH_REACH_DIRECT_PORT ?? 'default', value: round(p50), unit: 'ms', target: null, answered: t.length, sent: PINGS })
    line({ metric: 'vpn_tcp_mbps', path: p.path, direct_port: process.env.WEFT_BENCH_REACH_DIRECT_PORT ?? 'default', value: round(x.mbps), unit: 'MB/s', target: null, seconds: TCP_SECONDS })
  }
  const d = out.direct
  for (const k of ['punched', 'relayed']) {
    const o = out[k]
    if (d !== undefined && o !== undefined) line({ metric: `vpn_${k}_to_direct`, value: null, unit: 'ratio', target: null, ping_p50: round(o.p50 / d.p50), tcp: round(o.mbps / d.mbps) })
  }
}
