/**
 * Mesh bench, LAN agreement part (`npm run bench -- mesh-netns`, also run by `mesh`): 10 real
 * `weft up` processes, each in its own network namespace on one Linux bridge, started with ONLY
 * `--token` and `--data-dir` (mDNS discovery, default listen and API, default intervals). The
 * figure is the time from the last `weft up` start until all 10 report the same members, k3s
 * roles, overlay addresses and DNS names through their APIs. Target: < 5 s. Needs root; without
 * it, prints a line saying it was skipped and why.
 *
 * Two runs:
 *  - `agreement_10_netns`: 9 machines are up and agree; the 10th boots (as on a LAN where
 *    machines come up one after another; each machine's boot has the CPU to itself).
 *  - `agreement_10_netns_all_at_once`: all 10 start together, sharing this machine's cores.
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import {
  NetnsLab, disagreement, netnsSupport, startWeft, stateOf, waitApi, weftApi,
  type StateSummary, type WeftNode
} from '../test/system/netns.js'
import { now, progress, round } from './_lib.js'

const N = 10
const TARGET = '< 5000'
const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url))
const POLL_MS = 100
const MDNS_INTERVAL_MS = 5_000

function figure (metric: string, value: number, unit: string, target: string | null = null, extra: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ bench: 'mesh', metric, value: round(value), unit, target, ...extra }) + '\n')
}

function skipped (metric: string, reason: string): void {
  process.stdout.write(JSON.stringify({ bench: 'mesh', metric, value: null, unit: 'ms', target: TARGET, skipped: reason }) + '\n')
}

async function states (lab: NetnsLab, nodes: readonly WeftNode[]): Promise<StateSummary[] | undefined> {
  try {
    return await Promise.all(nodes.map(async (n) => await stateOf(lab, n)))
  } catch {
    return undefined
  }
}

/** Polls until the nodes agree; returns the moment (performance.now()) and the states. */
async function agreement (lab: NetnsLab, nodes: readonly WeftNode[], timeoutMs: number): Promise<{ at: number, states: StateSummary[] }> {
  const deadline = now() + timeoutMs
  let why = 'no answer yet'
  while (now() < deadline) {
    const s = await states(lab, nodes)
    const at = now()
    if (s !== undefined) {
      const d = disagreement(s, nodes.length)
      if (d === undefined) return { at, states: s }
      why = d
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS))
  }
  throw new Error(`${nodes.length} nodes did not agree within ${timeoutMs} ms: ${why}`)
}

interface RunResult { ms: number, lastApiMs: number, stableRoles: number, connectedAtAgreement: number[] }

async function oneRun (mode: 'one-more' | 'all-at-once', token: string): Promise<RunResult> {
  const lab = await NetnsLab.create(N)
  try {
    const nodes: WeftNode[] = []
    if (mode === 'one-more') {
      for (const h of lab.hosts.slice(0, N - 1)) {
        const n = startWeft(lab, h, CLI, token)
        nodes.push(n)
        await waitApi(n, 30_000)
      }
      await agreement(lab, nodes, 60_000)
      progress(`netns: ${N - 1} nodes agree; starting node ${N}`)
      nodes.push(startWeft(lab, lab.hosts[N - 1] as (typeof lab.hosts)[number], CLI, token))
    } else {
      for (const h of lab.hosts) nodes.push(startWeft(lab, h, CLI, token))
    }
    const last = nodes[N - 1] as WeftNode
    const t0 = last.spawnedAt
    await waitApi(last, 30_000)
    const lastApiMs = now() - t0
    const apis = Promise.all(nodes.map(async (n) => { await waitApi(n, 30_000) }))
    await apis
    const { at, states: agreed } = await agreement(lab, nodes, 60_000)
    const ms = at - t0
    const connected = await Promise.all(nodes.map(async (n) => (await weftApi<{ peers: { connected: number } }>(lab, n, 'GET', '/status')).peers.connected))
    return { ms, lastApiMs, stableRoles: (agreed[0] as StateSummary).members.filter((m) => m.roleStable).length, connectedAtAgreement: connected }
  } finally {
    await lab.destroy()
  }
}

export async function run (): Promise<void> {
  const support = netnsSupport()
  if (!support.ok) {
    progress(`netns: skipped: ${support.reason}`)
    skipped('agreement_10_netns', support.reason)
    skipped('agreement_10_netns_all_at_once', support.reason)
    return
  }
  if (!existsSync(CLI)) {
    const reason = `${CLI} is missing: run "npm run build" first`
    skipped('agreement_10_netns', reason)
    skipped('agreement_10_netns_all_at_once', reason)
    return
  }
  const token = execFileSync(process.execPath, [CLI, 'token', 'new'], { encoding: 'utf8' }).trim()
  const setup = `${N} weft up processes, one per network namespace on one Linux bridge, with only --token and --data-dir ` +
    `(mDNS every ${MDNS_INTERVAL_MS} ms, default listen, API and sync interval); agreement = identical members, roles, overlay IPs ` +
    `and DNS names in every node's GET /api/v1/state, polled every ${POLL_MS} ms`
  const note = 'a starting node sends an mDNS query at once and every node answers it (answers are multicast), so discovery does not wait for the mDNS interval'

  progress(`netns: ${N - 1} nodes, then the ${N}th`)
  const a = await oneRun('one-more', token)
  figure('agreement_10_netns', a.ms, 'ms', TARGET, {
    setup, mode: `${N - 1} nodes up and agreeing, then the ${N}th starts; from its spawn`, note,
    lastNodeApiUpMs: round(a.lastApiMs), stableRoles: a.stableRoles, connectedPeers: a.connectedAtAgreement.join(',')
  })
  figure('agreement_10_netns_after_api_up', a.ms - a.lastApiMs, 'ms', null, {
    note: 'the same run, from the moment the last node\'s API listened (its process boot left out): discovery, connections, sync, agreement'
  })
  progress(`netns: ${N} nodes at once`)
  const b = await oneRun('all-at-once', token)
  figure('agreement_10_netns_all_at_once', b.ms, 'ms', TARGET, {
    mode: `all ${N} spawned together on this ${cores()}-core machine; from the last spawn`,
    lastNodeApiUpMs: round(b.lastApiMs), stableRoles: b.stableRoles, connectedPeers: b.connectedAtAgreement.join(',')
  })
}

function cores (): number {
  try {
    return Number(execFileSync('nproc', { encoding: 'utf8' }).trim())
  } catch {
    return NaN
  }
}
