/**
 * Footprint bench, LAN part (`npm run bench -- footprint-netns`): idle traffic and memory of N
 * real `weft up --no-tun` processes, each in its own network namespace on one Linux bridge, as
 * machines on a LAN (issue 16: "idle bytes per node per second at 10 and 30 nodes in
 * namespaces"). Only `--token`, `--data-dir` and `--no-tun`: discovery by mDNS, default intervals.
 *
 * What a node sends is read on the wire: the bridge side of its namespace's veth receives every
 * frame the namespace sends (TCP/IP and Ethernet headers, mDNS multicast, ARP included), so the
 * figure is what a metered link would bill, not only the payload that `footprint` counts.
 *
 * With tcpdump installed, the first node's frames are captured over the window and split into
 * mDNS (UDP 5353), member TCP and the rest: `idle_wire_sent_first_node_<N>_netns <part>`.
 *
 * FOOTPRINT_NETNS_EVENTS=100000 first floods the first node with that many events from 100 authors
 * (through its API, 5,000 at a time) and waits until every node holds them, so the window
 * measures nodes that hold a large log (issue 16: "RSS with 100,000 events and 30 peers"); the
 * figures then say `_<events>_events`, with the time the log took to reach every node.
 *
 * FOOTPRINT_NODES=10,30 (the sizes), FOOTPRINT_SETTLE_MS (default 130000: past the first two
 * minutes, when rendezvous runs at its fast pace) and FOOTPRINT_IDLE_MS (default 120000: the
 * window), FOOTPRINT_PCAP=<prefix> (keeps the first node's capture as <prefix>-<N>.pcap). Needs root and dist/; without them it prints a `skipped` line.
 */
import { copyFileSync, existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { NetnsLab, netnsSupport, startWeft, waitApi, waitFor, weftApi, WEFT_API_PORT, type WeftNode } from '../test/system/netns.js'
import { generate } from './log.js'
import { networkIdBytes, parseToken } from '../src/log/token.js'
import { cpuSeconds, emitter, mean, now, progress, rssMb } from './_lib.js'
import { execFileSync, spawn } from 'node:child_process'
import { join } from 'node:path'

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url))
const NODE_COUNTS = (process.env.FOOTPRINT_NODES ?? '10,30').split(',').map(Number).filter((n) => n > 1)
const SETTLE_MS = Number(process.env.FOOTPRINT_SETTLE_MS ?? 130_000)
const IDLE_MS = Number(process.env.FOOTPRINT_IDLE_MS ?? 120_000)
/** Nodes started at once: 30 daemons loading their modules together on 2 cores take minutes. */
const START_BATCH = 10

const emit = emitter('footprint')
const LOG_EVENTS = Number(process.env.FOOTPRINT_NETNS_EVENTS ?? 0)
const AUTHORS = 100
const POST_BATCH = 5000

function txBytes (hostVeth: string): number {
  // The bridge side of the pair: what it receives is what the namespace sent.
  return Number(readFileSync(`/sys/class/net/${hostVeth}/statistics/rx_bytes`, 'utf8').trim())
}

function hasTcpdump (): boolean {
  try { execFileSync('tcpdump', ['--version'], { stdio: 'ignore' }); return true } catch { return false }
}

/** Bytes of the frames in a capture that match a filter (`-e` prints each frame's length). */
function frameBytes (pcap: string, filter: string): number {
  const out = execFileSync('tcpdump', ['-nn', '-e', '-r', pcap, filter], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 256 * 1024 * 1024 })
  let sum = 0
  for (const m of out.matchAll(/, length (\d+):/g)) sum += Number(m[1])
  return sum
}

async function idle (token: string, count: number): Promise<void> {
  const lab = await NetnsLab.create(count, { hostnamePrefix: 'fp' })
  const nodes: WeftNode[] = []
  try {
    progress(`starting ${count} nodes, one per namespace`)
    for (let i = 0; i < count; i += START_BATCH) {
      const batch = lab.hosts.slice(i, i + START_BATCH).map((h) => startWeft(lab, h, CLI, token, ['--no-tun'], { asWeft: true }))
      nodes.push(...batch)
      await Promise.all(batch.map(async (n) => { await waitApi(n, 120_000) }))
    }
    progress('waiting until every node sees the others online')
    await waitFor(async () => {
      const s = await Promise.all(nodes.map(async (n) => await weftApi<{ peers: { online: number } }>(lab, n, 'GET', '/status')))
      return s.every((x) => x.peers.online >= count - 1) ? true : undefined
    }, 'every node to see all others online', 240_000, 1_000).catch((err: Error) => { progress(err.message) })
    const held = LOG_EVENTS > 0 ? await flood(token, lab, nodes, count) : 0
    const tag = held > 0 ? `_${count}_netns_${LOG_EVENTS}_events` : `_${count}_netns`
    progress(`settling ${SETTLE_MS / 1000} s, then measuring ${IDLE_MS / 1000} s`)
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
    const first = lab.hosts[0]
    const pcap = join(lab.dir, 'first.pcap')
    // The bridge side sees what the namespace sends as incoming frames.
    const dump = hasTcpdump() && first !== undefined ? spawn('tcpdump', ['-i', first.hostVeth, '-Q', 'in', '-s', '96', '-w', pcap], { stdio: 'ignore' }) : undefined
    const before = lab.hosts.map((h) => txBytes(h.hostVeth))
    const cpuBefore = nodes.map((n) => cpuSeconds(n.proc.pid))
    const t0 = now()
    await new Promise((resolve) => setTimeout(resolve, IDLE_MS))
    const secs = (now() - t0) / 1000
    if (dump !== undefined) {
      dump.kill('SIGINT')
      await new Promise((resolve) => dump.once('exit', resolve))
      if (process.env.FOOTPRINT_PCAP !== undefined) copyFileSync(pcap, `${process.env.FOOTPRINT_PCAP}-${count}.pcap`)
      for (const [part, filter] of [['mdns', 'udp port 5353'], ['tcp', 'tcp'], ['other', 'not tcp and not udp port 5353']] as const) {
        emit(`idle_wire_sent_first_node${tag} ${part}`, frameBytes(pcap, filter) / secs, 'B/s')
      }
    }
    const rates = lab.hosts.map((h, i) => (txBytes(h.hostVeth) - (before[i] as number)) / secs)
    emit(`idle_wire_sent_per_node${tag}`, mean(rates), 'B/s', '< 1024')
    emit(`idle_wire_sent_max_node${tag}`, Math.max(...rates), 'B/s', '< 1024')
    const rss = nodes.map((n) => rssMb(n.proc.pid))
    // CPU of an idle node, % of one core: what the heap settings trade memory against.
    emit(`idle_cpu_mean${tag}`, mean(nodes.map((n, i) => (cpuSeconds(n.proc.pid) - (cpuBefore[i] as number)) / secs * 100)), '% of a core')
    emit(`idle_rss_mean${tag}`, mean(rss), 'MB', held > 0 ? '< 150' : '< 80')
    // Anonymous memory (heaps): what the machine must provide; the rest is file pages (the binary).
    emit(`idle_rss_anon_mean${tag}`, mean(nodes.map((n) => rssMb(n.proc.pid, 'RssAnon'))), 'MB')
    // A node too loaded to answer counts as seeing nobody, and is counted: the bench still reports.
    const online = await Promise.all(nodes.map(async (n) => await weftApi<{ peers: { online: number } }>(lab, n, 'GET', '/status').then((s) => s.peers.online, () => Number.NaN)))
    emit(`online_seen_min${tag}`, Math.min(...online.map((x) => Number.isNaN(x) ? 0 : x)), 'peers', `= ${count - 1}`)
    emit(`status_unanswered${tag}`, online.filter((x) => Number.isNaN(x)).length, 'nodes', '= 0')
  } finally {
    await lab.destroy()
  }
}

/**
 * Floods the first node with LOG_EVENTS events and waits until every node holds them; returns
 * how many each holds. The events are the footprint bench's (bench/log.ts `generate`).
 */
async function flood (token: string, lab: NetnsLab, nodes: readonly WeftNode[], count: number): Promise<number> {
  const first = nodes[0] as WeftNode
  progress(`generating ${LOG_EVENTS} events from ${AUTHORS} authors`)
  const events = generate(LOG_EVENTS, AUTHORS, 42, networkIdBytes(parseToken(token)))
  const base = await weftApi<{ events: number }>(lab, first, 'GET', '/status')
  const t0 = now()
  progress(`importing them into the first node, ${POST_BATCH} at a time`)
  for (let i = 0; i < events.length; i += POST_BATCH) {
    const envelopes = events.slice(i, i + POST_BATCH).map((e) => Buffer.from(e.envelope).toString('base64'))
    const r = await lab.http(first.host, WEFT_API_PORT, 'POST', '/api/v1/events', { headers: { Authorization: `Bearer ${first.apiToken ?? ''}` }, body: { envelopes }, timeoutMs: 120_000 })
    if (r.status !== 200) throw new Error(`import failed: HTTP ${r.status} ${r.body.slice(0, 300)}`)
  }
  const want = base.events + LOG_EVENTS
  progress(`waiting until all ${count} nodes hold ${want} events`)
  await waitFor(async () => {
    const s = await Promise.all(nodes.map(async (n) => await weftApi<{ events: number }>(lab, n, 'GET', '/status').then((x) => x.events, () => 0)))
    return s.every((x) => x >= want) ? true : undefined
  }, `every node to hold ${want} events`, 900_000, 2_000)
  emit(`flood_reached_every_node_${count}_netns_${LOG_EVENTS}_events`, (now() - t0) / 1000, 's')
  return want
}

export async function run (): Promise<void> {
  const support = netnsSupport()
  const why = !support.ok ? support.reason : !existsSync(CLI) ? 'dist/ is missing: run npm run build' : undefined
  if (why !== undefined) {
    progress(`footprint-netns: skipped: ${why}`)
    process.stdout.write(JSON.stringify({ bench: 'footprint', metric: 'idle_wire_sent_per_node_netns', value: null, unit: 'B/s', target: '< 1024', skipped: why }) + '\n')
    return
  }
  const token = execFileSync(process.execPath, [CLI, 'token', 'new'], { encoding: 'utf8' }).trim()
  for (const count of NODE_COUNTS) await idle(token, count)
}
