/**
 * DNS bench (`npm run bench -- dns`): queries per second and latency of Weft's DNS server
 * against dnsmasq (Debian's `dnsmasq-base`) serving the same static zone: 100 node names,
 * `node-<i>.default.weft.internal` A records. One load generator for both, in a worker thread (its
 * own core): N UDP sockets, each with one query outstanding at a time (so N in flight), the
 * 100 names in turn, plain queries without EDNS, a lost query re-sent after 1 s.
 *
 * The Weft server runs on this process's main thread, as in the daemon (one event loop);
 * dnsmasq is a child process (one thread too). Rounds alternate Weft and dnsmasq, so both see
 * the same machine load; the median round is reported, and ratios are the median of the
 * per-round ratios (each pair ran back to back). CPU per query (the server's own CPU time:
 * Weft's main-thread busy time from eventLoopUtilization, dnsmasq's utime + stime from /proc)
 * moves much less with the machine's load than queries per second do. Without dnsmasq on the PATH the
 * comparison prints `skipped` lines with the reason, and the Weft figures alone.
 *
 * Also: Weft forwarding names outside its zones to dnsmasq (the cost of a forward, per-query
 * socket included), against dnsmasq asked directly.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { performance } from 'node:perf_hooks'
import { tmpdir, cpus } from 'node:os'
import { join } from 'node:path'
import dgram from 'node:dgram'
import { Worker } from 'node:worker_threads'
import { startDnsServer, tableDnsSource, type DnsServer } from '../src/adapters/dns-server.js'
import { dnsExchange } from '../src/adapters/dns-client.js'
import { encodeQuery, TYPE } from '../src/adapters/dns-wire.js'
import { deriveDns, type DnsMember } from '../src/projections/dns.js'
import { silentLogger } from '../src/net/mesh-logger.js'
import { progress, round } from './_lib.js'

const NAMES = 100
const ROUNDS = 3
const WARMUP_MS = 500
const DURATION_MS = 3000
const CONCURRENCY = [32, 1]

function figure (metric: string, value: number, unit: string, extra: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ bench: 'dns', metric, value: round(value), unit, target: null, ...extra }) + '\n')
}

function skipped (metric: string, unit: string, reason: string): void {
  process.stdout.write(JSON.stringify({ bench: 'dns', metric, value: null, unit, target: null, skipped: reason }) + '\n')
}

interface Load {
  qps: number
  p50: number
  p99: number
  p999: number
  completed: number
  lost: number
  /** CPU the server spent per answered query, in microseconds (steadier than q/s on a shared machine). */
  cpuUs: number
}

/** CPU milliseconds a server has used so far: our main thread's busy time, or a child's utime + stime. */
type CpuClock = () => number

function mainThreadBusy (): CpuClock {
  return () => performance.eventLoopUtilization().active
}

function processCpu (pid: number): CpuClock {
  const tick = 1000 / 100 // USER_HZ is 100 on Linux
  return () => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) * tick
  }
}

/** The load generator (CommonJS, run with `eval`: no TypeScript loader needed in the worker). */
const LOAD_WORKER = `
const { workerData, parentPort } = require('node:worker_threads')
const dgram = require('node:dgram')
const { performance } = require('node:perf_hooks')
const { host, port, queries, concurrency, warmupMs, durationMs, timeoutMs } = workerData
const qs = queries.map((b) => Buffer.from(b, 'base64'))
let measuring = false
let done = false
let completed = 0
let lost = 0
let next = 0
let ids = 1
const lat = []
const slots = []
function fire (slot) {
  if (done) return
  const q = Buffer.from(qs[next++ % qs.length])
  slot.id = ids = (ids + 1) & 0xffff
  q.writeUInt16BE(slot.id, 0)
  slot.t0 = performance.now()
  slot.socket.send(q)
}
for (let i = 0; i < concurrency; i++) {
  const socket = dgram.createSocket('udp4')
  const slot = { socket, id: -1, t0: 0 }
  socket.on('message', (m) => {
    if (m.length < 12 || m.readUInt16BE(0) !== slot.id) return
    if (measuring) { lat.push(performance.now() - slot.t0); completed++ }
    fire(slot)
  })
  socket.on('error', () => {})
  socket.connect(port, host, () => fire(slot))
  slots.push(slot)
}
const sweep = setInterval(() => {
  const t = performance.now()
  for (const s of slots) if (s.id >= 0 && t - s.t0 > timeoutMs) { if (measuring) lost++; fire(s) }
}, 100)
setTimeout(() => {
  measuring = true
  const start = performance.now()
  setTimeout(() => {
    measuring = false
    done = true
    const secs = (performance.now() - start) / 1000
    clearInterval(sweep)
    for (const s of slots) s.socket.close()
    lat.sort((a, b) => a - b)
    const pct = (p) => lat.length === 0 ? NaN : lat[Math.min(lat.length - 1, Math.floor(lat.length * p))]
    parentPort.postMessage({ qps: completed / secs, p50: pct(0.5), p99: pct(0.99), p999: pct(0.999), completed, lost })
  }, durationMs)
  parentPort.postMessage('start')
}, warmupMs)
`

async function load (port: number, queries: Buffer[], concurrency: number, cpu: CpuClock): Promise<Load> {
  const w = new Worker(LOAD_WORKER, {
    eval: true,
    workerData: { host: '127.0.0.1', port, queries: queries.map((q) => q.toString('base64')), concurrency, warmupMs: WARMUP_MS, durationMs: DURATION_MS, timeoutMs: 1000 }
  })
  try {
    let cpu0 = 0
    return await new Promise<Load>((resolve, reject) => {
      w.on('message', (m: Omit<Load, 'cpuUs'> | 'start') => {
        if (m === 'start') cpu0 = cpu()
        else resolve({ ...m, cpuUs: (cpu() - cpu0) * 1000 / m.completed })
      })
      w.once('error', reject)
    })
  } finally {
    await w.terminate()
  }
}

function median (xs: Load[]): Load {
  return [...xs].sort((a, b) => a.qps - b.qps)[Math.floor(xs.length / 2)] as Load
}

function mid (xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
}

/** The median of per-round ratios: each round's pair ran back to back, under the same load. */
function pairedRatio (a: Load[], b: Load[], of: (l: Load) => number): number {
  return mid(a.map((x, i) => of(x) / of(b[i] as Load)))
}

function dnsmasqMissing (): string | undefined {
  const r = spawnSync('dnsmasq', ['--version'], { encoding: 'utf8' })
  if (r.error !== undefined) return `dnsmasq not found (${(r.error as NodeJS.ErrnoException).code ?? r.error.message}); install the Debian package dnsmasq-base`
  return undefined
}

async function freePort (): Promise<number> {
  const s = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve))
  const p = s.address().port
  await new Promise<void>((resolve) => s.close(() => { resolve() }))
  return p
}

async function startDnsmasq (dir: string, records: Array<[string, string]>): Promise<{ port: number, child: ChildProcess }> {
  const port = await freePort()
  const conf = join(dir, 'dnsmasq.conf')
  await writeFile(conf, [
    `port=${port}`,
    'listen-address=127.0.0.1',
    'bind-interfaces',
    'no-resolv',
    'no-hosts',
    'pid-file=',
    'local=/weft.internal/',
    'local=/bench.test/',
    ...records.map(([name, addr]) => `host-record=${name},${addr}`),
    ''
  ].join('\n'))
  const child = spawn('dnsmasq', ['--no-daemon', `--conf-file=${conf}`, '--log-facility=-'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const probe = encodeQuery(1, records[0]?.[0] as string, TYPE.A)
  for (let i = 0; i < 50; i++) {
    if (child.exitCode !== null) throw new Error(`dnsmasq exited (${child.exitCode}): ${stderr.trim()}`)
    const r = await dnsExchange({ host: '127.0.0.1', port, family: 4 }, probe, { proto: 'udp', timeoutMs: 100 })
    if (r !== undefined) return { port, child }
  }
  child.kill()
  throw new Error(`dnsmasq did not answer on port ${port}: ${stderr.trim()}`)
}

export async function run (): Promise<void> {
  const members: DnsMember[] = Array.from({ length: NAMES }, (_, i) => ({
    author: `a${i}`, hostname: `node-${i}`, cluster: 'default', joinedOrder: i, v4: `10.1.${i >> 8}.${(i & 255) + 1}`, caps: []
  }))
  const table = deriveDns({ zone: 'weft.internal', members, imports: [] })
  const zoneRecords: Array<[string, string]> = members.map((m) => [`${m.hostname}.default.weft.internal`, m.v4 as string])
  const outsideRecords: Array<[string, string]> = members.map((m, i) => [`host-${i}.bench.test`, m.v4 as string])
  const zoneQueries = zoneRecords.map(([name]) => encodeQuery(0, name, TYPE.A))
  const outsideQueries = outsideRecords.map(([name]) => encodeQuery(0, name, TYPE.A))

  const missing = dnsmasqMissing()
  const dir = await mkdtemp(join(tmpdir(), 'weft-dns-bench-'))
  let dnsmasq: { port: number, child: ChildProcess } | undefined
  let weft: DnsServer | undefined
  let forwarder: DnsServer | undefined
  try {
    if (missing === undefined) dnsmasq = await startDnsmasq(dir, [...zoneRecords, ...outsideRecords])
    weft = await startDnsServer({ listen: [{ host: '127.0.0.1', port: 0 }], answer: tableDnsSource(() => table), log: silentLogger })
    const weftPort = (weft.addresses()[0] as { port: number }).port
    const check = await dnsExchange({ host: '127.0.0.1', port: weftPort, family: 4 }, encodeQuery(1, 'node-7.default.weft.internal', TYPE.A), { proto: 'udp', timeoutMs: 1000 })
    if (check === undefined || check.readUInt16BE(6) !== 1) throw new Error('the Weft server did not answer the bench zone')
    progress(`${NAMES} names, ${cpus().length} cores, ${ROUNDS} rounds of ${DURATION_MS} ms per server and concurrency`)

    for (const c of CONCURRENCY) {
      const w: Load[] = []
      const d: Load[] = []
      for (let r = 0; r < ROUNDS; r++) {
        w.push(await load(weftPort, zoneQueries, c, mainThreadBusy()))
        progress(`weft    c=${c} round ${r + 1}: ${Math.round(w[r]?.qps ?? 0)} q/s, p99 ${(w[r]?.p99 ?? 0).toFixed(3)} ms, ${(w[r]?.cpuUs ?? 0).toFixed(1)} µs CPU/query`)
        if (dnsmasq !== undefined) {
          d.push(await load(dnsmasq.port, zoneQueries, c, processCpu(dnsmasq.child.pid as number)))
          progress(`dnsmasq c=${c} round ${r + 1}: ${Math.round(d[r]?.qps ?? 0)} q/s, p99 ${(d[r]?.p99 ?? 0).toFixed(3)} ms, ${(d[r]?.cpuUs ?? 0).toFixed(1)} µs CPU/query`)
        }
      }
      const wm = median(w)
      const extra = { concurrency: c, names: NAMES, lost: wm.lost }
      figure(`weft_qps_c${c}`, wm.qps, 'queries/s', extra)
      figure(`weft_p50_c${c}`, wm.p50, 'ms', extra)
      figure(`weft_p99_c${c}`, wm.p99, 'ms', extra)
      figure(`weft_cpu_per_query_c${c}`, mid(w.map((l) => l.cpuUs)), 'µs', extra)
      if (dnsmasq !== undefined) {
        const dm = median(d)
        const dextra = { concurrency: c, names: NAMES, lost: dm.lost }
        figure(`dnsmasq_qps_c${c}`, dm.qps, 'queries/s', dextra)
        figure(`dnsmasq_p50_c${c}`, dm.p50, 'ms', dextra)
        figure(`dnsmasq_p99_c${c}`, dm.p99, 'ms', dextra)
        figure(`dnsmasq_cpu_per_query_c${c}`, mid(d.map((l) => l.cpuUs)), 'µs', dextra)
        figure(`cpu_per_query_ratio_weft_over_dnsmasq_c${c}`, pairedRatio(w, d, (l) => l.cpuUs), 'ratio', { concurrency: c, rounds: ROUNDS })
        figure(`qps_ratio_weft_over_dnsmasq_c${c}`, pairedRatio(w, d, (l) => l.qps), 'ratio', { concurrency: c, rounds: ROUNDS })
        figure(`p99_ratio_weft_over_dnsmasq_c${c}`, pairedRatio(w, d, (l) => l.p99), 'ratio', { concurrency: c, rounds: ROUNDS })
      } else {
        for (const m of [`dnsmasq_qps_c${c}`, `qps_ratio_weft_over_dnsmasq_c${c}`, `p99_ratio_weft_over_dnsmasq_c${c}`]) skipped(m, m.includes('ratio') ? 'ratio' : 'queries/s', missing as string)
      }
    }

    if (dnsmasq !== undefined) {
      // Forwarding: Weft relays names outside its zones to dnsmasq.
      const c = CONCURRENCY[0] as number
      forwarder = await startDnsServer({ listen: [{ host: '127.0.0.1', port: 0 }], answer: tableDnsSource(() => table), upstreams: [`127.0.0.1:${dnsmasq.port}`], log: silentLogger })
      const fport = (forwarder.addresses()[0] as { port: number }).port
      const f: Load[] = []
      const d: Load[] = []
      for (let r = 0; r < ROUNDS; r++) {
        f.push(await load(fport, outsideQueries, c, mainThreadBusy()))
        d.push(await load(dnsmasq.port, outsideQueries, c, processCpu(dnsmasq.child.pid as number)))
        progress(`forward c=${c} round ${r + 1}: weft→dnsmasq ${Math.round(f[r]?.qps ?? 0)} q/s, dnsmasq ${Math.round(d[r]?.qps ?? 0)} q/s`)
      }
      const fm = median(f)
      const dm = median(d)
      figure(`weft_forward_qps_c${c}`, fm.qps, 'queries/s', { concurrency: c, lost: fm.lost })
      figure(`weft_forward_p99_c${c}`, fm.p99, 'ms', { concurrency: c })
      figure(`weft_forward_cpu_per_query_c${c}`, mid(f.map((l) => l.cpuUs)), 'µs', { concurrency: c })
      figure(`dnsmasq_direct_qps_c${c}`, dm.qps, 'queries/s', { concurrency: c })
      figure(`forward_qps_ratio_weft_via_over_dnsmasq_direct_c${c}`, pairedRatio(f, d, (l) => l.qps), 'ratio', { concurrency: c, rounds: ROUNDS })
    } else {
      skipped('weft_forward_qps_c32', 'queries/s', missing as string)
    }
  } finally {
    await weft?.close()
    await forwarder?.close()
    if (dnsmasq !== undefined) {
      dnsmasq.child.kill('SIGTERM')
      if (dnsmasq.child.exitCode === null) await new Promise((resolve) => dnsmasq?.child.once('exit', resolve))
    }
    await rm(dir, { recursive: true, force: true })
  }
}
