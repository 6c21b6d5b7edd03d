/**
 * Reach bench (`npm run bench -- reach`): the simulated internet of test/system/internet-lab.ts
 * (two stand-in public libp2p nodes, one public Weft member, one machine behind each of a
 * port-preserving, a port-restricted and a symmetric NAT), every Weft node started with only the
 * token, `--bootstrap` and `--public-ranges`. One JSON line per NAT pair: the time from start to
 * connected and whether the connection is direct (hole punched) or relayed; one line for the time
 * to agreement on the log. Goal (issue 15): every pair < 30 s; direct wherever one side is not
 * symmetric. The VPN's throughput and ping over direct and relayed links are not measured yet
 * (a line says so). Needs root and nft; without them, prints a line saying it was skipped.
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { disagreement, netnsSupport, stateOf, waitApi, waitFor } from '../test/system/netns.js'
import { buildInternet, connectTimes, NAT_KINDS, startReachNodes } from '../test/system/internet-lab.js'
import { formatToken, newToken } from '../src/log/token.js'
import { now, progress, round } from './_lib.js'

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url))
const TARGET = '< 30000'

function line (fields: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ bench: 'reach', ...fields }) + '\n')
}

function unsupported (): string | undefined {
  const s = netnsSupport()
  if (!s.ok) return s.reason
  try { execFileSync('nft', ['--version'], { stdio: 'pipe' }) } catch { return 'nft (nftables) is missing' }
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
    const nodes = startReachNodes(net, CLI, formatToken(newToken()))
    for (const n of nodes) await waitApi(n, 30_000)
    const natted = nodes.slice(net.publicMembers.length)
    const times = await connectTimes(net, natted, started, 90_000)
    for (const t of times) {
      line({ metric: 'connect_ms', pair: t.pair, value: round(t.ms), unit: 'ms', target: TARGET, path: t.path })
    }
    await waitFor(async () => disagreement(await Promise.all(nodes.map(async (n) => await stateOf(net.lab, n))), nodes.length) === undefined, 'agreement', 90_000, 250)
    line({ metric: 'agreement_ms', value: round(now() - started), unit: 'ms', target: null, nodes: nodes.length })
    line({ metric: 'vpn_over_relay', value: null, unit: 'Mbit/s', target: null, skipped: 'not measured yet: the NATted pairs connect through public relays (limited), which carry no VPN traffic' })
  } finally {
    await net.lab.destroy()
  }
}
