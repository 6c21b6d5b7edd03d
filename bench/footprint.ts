/**
 * Footprint bench (`npm run bench -- footprint`): what a node costs on small edge hardware
 * (issue 16). Real `weft up --no-tun` processes on loopback:
 *
 * - RSS of an idle node in a 10-node network (each node bootstraps from the first);
 * - idle bytes sent per node per second at 10 and 30 nodes (TCP bytes_sent of each process's
 *   sockets, from `ss -tinp` sampled every second over a quiet window; /proc/<pid>/io wchar when
 *   ss is missing), and with FOOTPRINT_PROTOCOLS=1 the same by libp2p protocol;
 * - start time until the API answers with a log of N events from 100 authors (built through
 *   POST /api/v1/events, then the node restarted: a clean stop, so its fold checkpoint is
 *   current), the CPU seconds the start took (steadier than wall time on a shared machine), its
 *   RSS then, and `GET /api/v1/state` latency.
 *
 * FOOTPRINT_COMPARE=<dir> also runs another build (e.g. a copy of main's dist/, built with its
 * node_modules beside it), phase by phase before this one, its figures suffixed `@before`, for a
 * before/after in one run. FOOTPRINT_EVENTS=20000,100000, FOOTPRINT_NODES=10 and
 * FOOTPRINT_IDLE_MS=30000 change the sizes; FOOTPRINT_SKIP_NETWORK=1 skips the 10-node part;
 * FOOTPRINT_FLOOD_SETTLE_MS=60000 is how long after the import (a flood of events through the
 * API) RSS is measured again (0: not), and FOOTPRINT_IDLE_AFTER_START_MS=60000 how long after
 * a start with that log its idle RSS is (the figure 5 s after the start is printed too).
 * FOOTPRINT_KEEP=1 keeps the data directories and the token (printed); FOOTPRINT_NODE_LOG=<file>
 * collects the nodes' logs (with FOOTPRINT_ARGS='--log-level debug', the allocator's trims).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { appendFileSync, existsSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'node:http'
import { formatToken, networkIdBytes, newToken } from '../src/log/token.js'
import { cpuSeconds, emitter, mean, now, progress, rssMb } from './_lib.js'
import { generate } from './log.js'
import type { SignedEvent } from '../src/log/event.js'

const here = dirname(fileURLToPath(import.meta.url))
const BUILDS: Array<{ dist: string, suffix: string }> = [
  ...(process.env.FOOTPRINT_COMPARE !== undefined ? [{ dist: process.env.FOOTPRINT_COMPARE, suffix: '@before' }] : []),
  { dist: join(here, '..', 'dist'), suffix: '' }
]
/** Network sizes of the idle part (issue 16: 10 and 30 nodes), e.g. FOOTPRINT_NODES=10. */
const NODE_COUNTS = (process.env.FOOTPRINT_NODES ?? '10,30').split(',').map(Number).filter((n) => n > 1)
/** Nodes started at once after the first. */
const START_BATCH = 10
const SETTLE_MS = Number(process.env.FOOTPRINT_SETTLE_MS ?? 15_000)
/** More `weft up` flags for every node (e.g. FOOTPRINT_ARGS=--no-public-discovery). */
const EXTRA_ARGS = (process.env.FOOTPRINT_ARGS ?? '').split(' ').filter((a) => a !== '')
const EVENT_COUNTS = (process.env.FOOTPRINT_EVENTS ?? '20000,100000').split(',').map(Number).filter((n) => n > 0)
const AUTHORS = 100
/** Envelopes per POST: well under the API's 4 MiB body limit at ~300 bytes of base64 each. */
const POST_BATCH = 5000
const IDLE_WINDOW_MS = Number(process.env.FOOTPRINT_IDLE_MS ?? 30_000)
/** How long after importing a log (a flood) its RSS is measured again; 0 skips it. */
const FLOOD_SETTLE_MS = Number(process.env.FOOTPRINT_FLOOD_SETTLE_MS ?? 60_000)
/** A file every node's log and stderr are appended to (FOOTPRINT_NODE_LOG), e.g. with FOOTPRINT_ARGS='--log-level debug'. */
const NODE_LOG = process.env.FOOTPRINT_NODE_LOG
/** How long after a start with a log its idle RSS is taken (FOOTPRINT_IDLE_AFTER_START_MS). */
const IDLE_AFTER_START_MS = Math.max(5_000, Number(process.env.FOOTPRINT_IDLE_AFTER_START_MS ?? 60_000))
/**
 * FOOTPRINT_PROTOCOLS=1: every node runs with the bench-only preload bench/_protocol-bytes.mjs,
 * and the idle window also reports bytes sent per node per second by libp2p protocol. The nodes
 * then run tsc's entry (dist/cli/main-modules.js), whose modules the preload can patch.
 */
const PROTOCOLS = process.env.FOOTPRINT_PROTOCOLS === '1'

const emit = emitter('footprint')
type Figure = (metric: string, value: number, unit: string, target?: string) => void

interface NodeProc {
  child: ChildProcess
  pid: number
  dataDir: string
  url: string
  apiToken: string
  listen: string[]
  stop: () => Promise<void>
}

async function until<T> (what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe().catch(() => undefined)
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

function api (n: Pick<NodeProc, 'url' | 'apiToken'>, method: string, path: string, body?: unknown): Promise<{ status: number, json: any }> {
  const u = new URL(n.url)
  const text = body === undefined ? undefined : JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method, path, headers: { Authorization: `Bearer ${n.apiToken}`, ...(text !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) } : {}) } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const t = Buffer.concat(chunks).toString('utf8')
        try { resolve({ status: res.statusCode ?? 0, json: JSON.parse(t) }) } catch (err) { reject(err) }
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(text)
  })
}

async function startNode (dist: string, token: string, dataDir: string, peers: string[], countDir?: string): Promise<NodeProc> {
  // The preload patches @libp2p/utils' classes as Node.js loads them: that needs the program
  // module by module (tsc's entry), not the bundle, which holds its own copy of the library.
  const modules = join(dist, 'cli', 'main-modules.js')
  const main = countDir !== undefined && existsSync(modules) ? modules : join(dist, 'cli', 'main.js')
  const args = [main, 'up', '--token', token, '--data-dir', dataDir, '--no-tun', '--no-mdns',
    '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', '--log-level', 'error', ...peers.flatMap((p) => ['--peer', p]), ...EXTRA_ARGS]
  // The preload goes in NODE_OPTIONS, so it reaches the Node.js that main.js's sh line starts.
  const env = countDir !== undefined
    ? { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${join(here, '_protocol-bytes.mjs')}`, PROTOCOL_BYTES_DIR: countDir, PROTOCOL_BYTES_ROOT: join(dist, '..') }
    : process.env
  // As `weft` starts: a main.js whose first line is `#!/bin/sh` starts Node.js itself, with the
  // daemon's V8 flags (src/cli/main.ts); an older build's `#!/usr/bin/env node` runs as it is.
  const viaShell = readFileSync(main, 'utf8').startsWith('#!/bin/sh')
  const child = spawn(viaShell ? '/bin/sh' : process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env })
  // The log (errors only) and stderr, last 4,000 characters: said if the node dies mid-run.
  let stderr = ''
  const keep = (c: Buffer): void => {
    stderr = (stderr + c.toString()).slice(-4000)
    if (NODE_LOG !== undefined) appendFileSync(NODE_LOG, c)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  let stopping = false
  const exited = new Promise<void>((resolve) => child.once('exit', (code, signal) => {
    if (!stopping) progress(`a node exited during the run (${dataDir}, code ${code}, signal ${signal}): ${stderr}`)
    resolve()
  }))
  const ep = await until(`the API of ${dataDir}`, 120_000, async () => {
    if (child.exitCode !== null) throw new Error(`weft up exited (${child.exitCode}): ${stderr}`)
    const j = JSON.parse(await readFile(join(dataDir, 'api.json'), 'utf8')) as { url: string, listen: string[], pid: number }
    return j.pid === child.pid ? j : undefined
  }).catch((err: Error) => { if (child.exitCode !== null) throw new Error(`weft up exited: ${stderr}`); throw err })
  const apiToken = (await readFile(join(dataDir, 'api.token'), 'utf8')).trim()
  return {
    child,
    pid: child.pid as number,
    dataDir,
    url: ep.url,
    apiToken,
    listen: ep.listen,
    stop: async () => { stopping = true; if (child.exitCode === null) { child.kill('SIGTERM'); await exited } }
  }
}

/** Waits `ms`, saying every 10 s the process's RSS and how much of it is anonymous (heaps) or file pages (the binary). */
async function sampleRss (pid: number, ms: number, what: string): Promise<void> {
  const t0 = now()
  while (now() - t0 < ms) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(10_000, ms - (now() - t0))))
    progress(`${Math.round((now() - t0) / 1000)} s ${what}: RSS ${rssMb(pid).toFixed(0)} MB (anonymous ${rssMb(pid, 'RssAnon').toFixed(0)}, file ${rssMb(pid, 'RssFile').toFixed(0)})`)
  }
}

/** TCP bytes sent so far by each open socket of the pids (ss), keyed by pid and socket addresses; undefined without ss. */
function socketsSent (pids: readonly number[]): Map<string, { pid: number, sent: number }> | undefined {
  const out = new Map<string, { pid: number, sent: number }>()
  const wanted = new Set(pids)
  let text: string
  try {
    text = execFileSync('ss', ['-tinpH'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  } catch {
    return undefined
  }
  let owner: { pid: number, key: string } | undefined
  for (const line of text.split('\n')) {
    const pid = /pid=(\d+)/.exec(line)
    if (pid !== null) {
      const cols = line.trim().split(/\s+/)
      owner = wanted.has(Number(pid[1])) ? { pid: Number(pid[1]), key: `${pid[1] as string} ${cols[3] ?? ''} ${cols[4] ?? ''}` } : undefined
      continue
    }
    const sent = /bytes_sent:(\d+)/.exec(line)
    if (sent !== null && owner !== undefined) out.set(owner.key, { pid: owner.pid, sent: Number(sent[1]) })
    if (!line.startsWith('\t') && !line.startsWith(' ')) owner = undefined
  }
  return out
}

/**
 * TCP bytes each pid sent over a window of `ms`: ss sampled every second, each socket counted
 * from its first sample in the window (0 for a socket opened in it) to its last, so connections
 * that open and close inside the window count too (less what a socket sent in its last second).
 * Without ss: bytes written (/proc/<pid>/io wchar, which also counts files).
 */
async function sentOverWindow (pids: readonly number[], ms: number): Promise<Map<number, number>> {
  const out = new Map<number, number>(pids.map((p) => [p, 0]))
  const first = socketsSent(pids)
  if (first === undefined) {
    const wchar = (p: number): number => Number(/wchar:\s+(\d+)/.exec(readFileSync(`/proc/${p}/io`, 'utf8'))?.[1] ?? 0)
    const w0 = new Map(pids.map((p) => [p, wchar(p)]))
    await new Promise((resolve) => setTimeout(resolve, ms))
    for (const p of pids) out.set(p, wchar(p) - (w0.get(p) ?? 0))
    return out
  }
  const seen = new Map<string, { pid: number, from: number, to: number }>()
  for (const [k, v] of first) seen.set(k, { pid: v.pid, from: v.sent, to: v.sent })
  const end = Date.now() + ms
  while (Date.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, Math.max(0, end - Date.now()))))
    for (const [k, v] of socketsSent(pids) ?? new Map<string, { pid: number, sent: number }>()) {
      const s = seen.get(k)
      if (s === undefined) seen.set(k, { pid: v.pid, from: 0, to: v.sent })
      else s.to = v.sent
    }
  }
  for (const s of seen.values()) out.set(s.pid, (out.get(s.pid) ?? 0) + Math.max(0, s.to - s.from))
  return out
}

async function stateLatencyMs (n: NodeProc, runs = 7): Promise<{ ms: number, bytes: number }> {
  const times: number[] = []
  let bytes = 0
  for (let i = 0; i < runs; i++) {
    const t = now()
    const r = await api(n, 'GET', '/api/v1/state')
    times.push(now() - t)
    bytes = JSON.stringify(r.json).length
  }
  times.sort((a, b) => a - b)
  return { ms: times[Math.floor(times.length / 2)] as number, bytes }
}

type ProtocolCounts = Record<string, { sent: number, streams: number }>

/** The preload's counts of every pid (bench/_protocol-bytes.mjs), read from its files. */
async function protocolCounts (dir: string, pids: readonly number[]): Promise<Map<number, ProtocolCounts>> {
  const out = new Map<number, ProtocolCounts>()
  for (const p of pids) {
    out.set(p, await readFile(join(dir, `${p}.json`), 'utf8').then((t) => JSON.parse(t) as ProtocolCounts, () => ({})))
  }
  return out
}

/** Bytes per node per second by protocol over a window, biggest first (mean over the nodes). */
function protocolRates (before: Map<number, ProtocolCounts>, after: Map<number, ProtocolCounts>, secs: number): Array<{ protocol: string, rate: number, streams: number }> {
  const sums = new Map<string, { sent: number, streams: number }>()
  for (const [pid, a] of after) {
    const b = before.get(pid) ?? {}
    for (const [proto, c] of Object.entries(a)) {
      const s = sums.get(proto) ?? { sent: 0, streams: 0 }
      s.sent += c.sent - (b[proto]?.sent ?? 0)
      s.streams += c.streams - (b[proto]?.streams ?? 0)
      sums.set(proto, s)
    }
  }
  const n = Math.max(1, after.size)
  return [...sums].map(([protocol, s]) => ({ protocol, rate: s.sent / n / secs, streams: s.streams / n / (secs / 60) }))
    .filter((r) => r.rate > 0).sort((a, b) => b.rate - a.rate)
}

async function idleNetwork (dist: string, figure: Figure, token: string, root: string, count: number): Promise<void> {
  progress(`starting ${count} nodes (${dist})`)
  const nodes: NodeProc[] = []
  const countDir = PROTOCOLS ? join(root, 'protocol-bytes') : undefined
  if (countDir !== undefined) await mkdir(countDir, { recursive: true })
  try {
    nodes.push(await startNode(dist, token, join(root, 'n0'), [], countDir))
    const seed = nodes[0]?.listen[0] as string
    // Started a few at a time: 30 daemons loading modules at once on 2 cores take minutes.
    for (let i = 1; i < count; i += START_BATCH) {
      const batch = Array.from({ length: Math.min(START_BATCH, count - i) }, (_, k) => i + k)
      nodes.push(...await Promise.all(batch.map(async (j) => await startNode(dist, token, join(root, `n${j}`), [seed], countDir))))
    }
    progress('waiting until every node sees the others online')
    // On a loaded machine this can take long; past the deadline the figures are still taken
    // (online_seen_min then says how far it got). Online means a presence link, which needs a
    // connection: past DIAL_DISCOVERED_BELOW (32) peers a node does not dial every other one.
    await until('every node sees all others online', 240_000, async () => {
      const s = await Promise.all(nodes.map(async (n) => (await api(n, 'GET', '/api/v1/status')).json))
      return s.every((x) => x.peers.online >= count - 1) ? true : undefined
    }).catch((err: Error) => { progress(err.message) })
    // Joins, leases and first syncs settle before the quiet window. With public discovery, the
    // first 2 minutes also run rendezvous at its fast pace (src/net/mesh.ts): a start-up cost,
    // not idle; FOOTPRINT_SETTLE_MS=130000 measures past it.
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
    const pids = nodes.map((n) => n.pid)
    const p0 = countDir !== undefined ? await protocolCounts(countDir, pids) : undefined
    const t0 = now()
    const sent = await sentOverWindow(pids, IDLE_WINDOW_MS)
    const secs = (now() - t0) / 1000
    // The preload writes every second: wait for a file written after the window closed.
    if (countDir !== undefined) await new Promise((resolve) => setTimeout(resolve, 1_100))
    const p1 = countDir !== undefined ? await protocolCounts(countDir, pids) : undefined
    const rates = pids.map((p) => (sent.get(p) ?? 0) / secs)
    const rss = pids.map((p) => rssMb(p))
    figure(`idle_rss_mean_${count}_nodes`, mean(rss), 'MB', '< 80')
    figure(`idle_rss_max_${count}_nodes`, Math.max(...rss), 'MB', '< 80')
    // RSS less the file-backed pages (mostly the Node.js binary, shared by every Node.js process).
    figure(`idle_rss_anon_mean_${count}_nodes`, mean(pids.map((p) => rssMb(p, 'RssAnon'))), 'MB')
    figure(`idle_sent_per_node_${count}_nodes`, mean(rates), 'B/s', '< 1024')
    figure(`idle_sent_max_node_${count}_nodes`, Math.max(...rates), 'B/s', '< 1024')
    if (p0 !== undefined && p1 !== undefined) {
      for (const r of protocolRates(p0, p1, (now() - t0) / 1000)) {
        figure(`idle_sent_per_node_${count}_nodes ${r.protocol}`, r.rate, 'B/s')
        if (r.streams > 0) figure(`idle_streams_per_node_${count}_nodes ${r.protocol}`, r.streams, '/min')
      }
    }
    const online = await Promise.all(nodes.map(async (n) => (await api(n, 'GET', '/api/v1/status')).json.peers.online as number))
    figure(`online_seen_min_${count}_nodes`, Math.min(...online), 'peers', `= ${count - 1}`)
    const st = await stateLatencyMs(nodes[0] as NodeProc)
    figure(`state_latency_${count}_nodes`, st.ms, 'ms', '< 50')
  } finally {
    await Promise.all(nodes.map(async (n) => { await n.stop() }))
  }
}

async function startWithLog (dist: string, figure: Figure, tokenText: string, events: readonly SignedEvent[], dataDir: string): Promise<void> {
  const count = events.length
  let node = await startNode(dist, tokenText, dataDir, [])
  try {
    progress(`importing ${count} events through POST /api/v1/events`)
    for (let i = 0; i < events.length; i += POST_BATCH) {
      const envelopes = events.slice(i, i + POST_BATCH).map((e) => Buffer.from(e.envelope).toString('base64'))
      const r = await api(node, 'POST', '/api/v1/events', { envelopes })
      if (r.status !== 200) throw new Error(`import failed: ${JSON.stringify(r.json).slice(0, 300)}`)
    }
    figure(`rss_after_import_${count}_events`, rssMb(node.pid), 'MB')
    // A flood's memory must come back (issue 16: under the goal within a minute).
    if (FLOOD_SETTLE_MS > 0) {
      progress(`waiting ${FLOOD_SETTLE_MS / 1000} s after the import`)
      await sampleRss(node.pid, FLOOD_SETTLE_MS, 'after the import')
      figure(`rss_${FLOOD_SETTLE_MS / 1000}s_after_import_${count}_events`, rssMb(node.pid), 'MB', '< 150')
    }
  } finally {
    await node.stop()
  }
  const t0 = now()
  node = await startNode(dist, tokenText, dataDir, [])
  try {
    await until('the API to answer', 120_000, async () => (await api(node, 'GET', '/api/v1/status')).status === 200 ? true : undefined)
    figure(`start_until_api_${count}_events`, (now() - t0) / 1000, 's', '< 2')
    figure(`start_cpu_${count}_events`, cpuSeconds(node.pid), 's')
    const st = await stateLatencyMs(node)
    figure(`state_latency_${count}_events`, st.ms, 'ms', '< 50')
    figure(`state_bytes_${count}_events`, st.bytes / 1e6, 'MB')
    await new Promise((resolve) => setTimeout(resolve, 5_000))
    figure(`rss_5s_after_start_${count}_events`, rssMb(node.pid), 'MB')
    // Idle means after the start's own garbage is given back: V8's memory reducer shrinks the
    // heap 20–40 s after a start with 100,000 events (RSS 146 → 126 MB in one run).
    await sampleRss(node.pid, IDLE_AFTER_START_MS - 5_000, 'after the start')
    figure(`rss_idle_${count}_events`, rssMb(node.pid), 'MB', '< 150')
    figure(`rss_idle_anon_${count}_events`, rssMb(node.pid, 'RssAnon'), 'MB')
  } finally {
    await node.stop()
  }
}

export async function run (): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'weft-footprint-'))
  const token = newToken()
  const tokenText = formatToken(token)
  try {
    const figures = BUILDS.map((b) => ({ ...b, figure: ((m, v, u, t) => { emit(`${m}${b.suffix}`, v, u, t) }) as Figure }))
    if (process.env.FOOTPRINT_SKIP_NETWORK !== '1') {
      for (const count of NODE_COUNTS) {
        for (const b of figures) await idleNetwork(b.dist, b.figure, tokenText, join(root, `net${count}${b.suffix}`), count)
      }
    }
    for (const count of EVENT_COUNTS) {
      progress(`generating ${count} events from ${AUTHORS} authors`)
      const events = generate(count, AUTHORS, 42, networkIdBytes(token))
      for (const b of figures) await startWithLog(b.dist, b.figure, tokenText, events, join(root, `log-${count}${b.suffix}`))
    }
    // The idle traffic on the wire, in namespaces (footprint-netns.ts; it says `skipped` without
    // root). FOOTPRINT_NETNS=0 leaves it out.
    if (process.env.FOOTPRINT_NETNS !== '0' && process.env.FOOTPRINT_SKIP_NETWORK !== '1') await (await import('./footprint-netns.js')).run()
  } finally {
    // FOOTPRINT_KEEP=1 keeps the data directories (to profile a start with their log).
    if (process.env.FOOTPRINT_KEEP === '1') {
      await writeFile(join(root, 'token'), tokenText + '\n', { mode: 0o600 })
      progress(`kept ${root} (the network's token in ${join(root, 'token')})`)
    } else {
      await rm(root, { recursive: true, force: true })
    }
  }
}
