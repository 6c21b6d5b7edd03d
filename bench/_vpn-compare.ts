/**
 * The side-by-side part of the VPN bench: plain (the bridge), Weft and the userspace VPNs from
 * Debian (_vpn-userspace.ts), between the same two namespaces in one run. Per system and round:
 * one TCP stream A → B for SECONDS s (iperf3, MB/s at the receiver) and PINGS pings 10 ms apart
 * (p50). Rounds interleave the systems, so a burst of load from other work on this shared machine
 * hits all of them. Printed: one `compare` line per system, the ratios of Weft to plain and to
 * each peer, and a table on stderr.
 */
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { LabHost, NetnsLab } from '../test/system/netns.js'
import { progress, round } from './_lib.js'
import { startUserspaceVpns } from './_vpn-userspace.js'

const SECONDS = 5
// More rounds and pings narrow the ping comparison, whose p50s move by more than the gap between
// two VPNs from one run to the next on a shared machine (docs/vpn.md).
const ROUNDS = positive('WEFT_BENCH_VPN_ROUNDS', 2)
const PINGS = positive('WEFT_BENCH_VPN_PINGS', 200)

function positive (name: string, fallback: number): number {
  const v = process.env[name]
  if (v === undefined || v === '') return fallback
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a whole number of at least 1, not "${v}"`)
  return n
}

/** `enter`: run before each of the system's measurements (a Weft row that restarts the daemons its way). */
export interface System { name: string, version: string, addrB: string, enter?: () => Promise<void> }
interface Row { system: System, tcp: number[], p50: number[] }

function line (metric: string, value: number | null, unit: string, extra: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ bench: 'vpn', metric, value: value === null ? null : round(value), unit, target: null, ...extra }) + '\n')
}

const mean = (xs: number[]): number => xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length

async function iperf (lab: NetnsLab, a: LabHost, b: LabHost, addr: string, port: number): Promise<number> {
  const server = lab.exec(b, ['iperf3', '-s', '-1', '-p', String(port)], (SECONDS + 40) * 1000)
  let last = ''
  try {
    for (let i = 0; i < 20; i++) { // until the server listens
      const r = await lab.exec(a, ['iperf3', '-c', addr, '-p', String(port), '-t', String(SECONDS), '-J'], (SECONDS + 30) * 1000)
      let j: { error?: string, end?: { sum_received?: { bits_per_second: number } } } = {}
      try { j = JSON.parse(r.stdout) as typeof j } catch {}
      const bps = j.end?.sum_received?.bits_per_second
      if (r.code === 0 && bps !== undefined) return bps / 8e6
      last = j.error ?? (r.stdout + r.stderr).slice(-300)
      if (!/connect|refused|busy/i.test(last)) break
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  } finally {
    await server
  }
  throw new Error(`iperf3 to ${addr} failed: ${last}`)
}

async function pingP50 (lab: NetnsLab, a: LabHost, addr: string): Promise<number> {
  const r = await lab.exec(a, ['ping', '-n', '-i', '0.01', '-c', String(PINGS), '-W', '1', addr], 60_000)
  const t = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((x, y) => x - y)
  return t.length < PINGS / 2 ? NaN : t[Math.floor(t.length / 2)] as number
}

const ECHO = fileURLToPath(new URL('./_node-echo.ts', import.meta.url))

/**
 * The bare Node TCP echo between A and B (_node-echo.ts): p50 in ms of one round, which is two
 * wake-ups of a Node process; NaN when it could not run.
 */
async function nodeEchoP50 (lab: NetnsLab, a: LabHost, b: LabHost, port: number): Promise<number> {
  const server = lab.spawn(b, [process.execPath, '--import', 'tsx', ECHO, 'server', String(port)], { cwd: fileURLToPath(new URL('..', import.meta.url)) })
  try {
    for (let i = 0; i < 50; i++) {
      const r = await lab.exec(a, [process.execPath, '--import', 'tsx', ECHO, 'client', b.ip, String(port), String(PINGS)], 60_000)
      if (r.code === 0) return (JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { p50Us: number }).p50Us / 1000
      if (!/ECONNREFUSED/.test(r.stderr)) { progress(`vpn: node echo: ${r.stderr.slice(-300)}`); return NaN }
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    return NaN
  } finally {
    await lab.stop(server)
  }
}

export async function compare (lab: NetnsLab, a: LabHost, b: LabHost, weftAddrB: string, weftVersion: string): Promise<void> {
  await compareSystems(lab, a, b, [{ name: 'weft', version: weftVersion, addrB: weftAddrB }])
}

/** The comparison with one or more Weft rows (the last one is "weft" for the ratios). */
export async function compareSystems (lab: NetnsLab, a: LabHost, b: LabHost, wefts: System[]): Promise<void> {
  try {
    execFileSync('sh', ['-c', 'command -v iperf3'], { stdio: 'ignore' })
  } catch {
    line('compare', null, 'MB/s', { skipped: 'iperf3 is not installed (apt-get install iperf3)' })
    return
  }
  progress('vpn: starting the userspace VPNs for the side-by-side comparison')
  const peers = await startUserspaceVpns(lab, a, b)
  for (const s of peers.skipped) line('compare', null, 'MB/s', { system: s.name, skipped: s.reason })
  const rows: Row[] = [
    { system: { name: 'plain', version: 'bridge', addrB: b.ip }, tcp: [], p50: [] },
    ...wefts.map((w) => ({ system: w, tcp: [], p50: [] })),
    ...peers.up.map((p) => ({ system: p, tcp: [], p50: [] }))
  ]
  const echo: number[] = []
  for (let r = 0; r < ROUNDS; r++) {
    progress(`vpn: compare round ${r + 1}/${ROUNDS}: a bare Node TCP echo (the floor of a Node data plane)`)
    echo.push(await nodeEchoP50(lab, a, b, 5399))
    for (const [i, row] of rows.entries()) {
      progress(`vpn: compare round ${r + 1}/${ROUNDS}: ${row.system.name}`)
      try {
        await row.system.enter?.()
        row.tcp.push(await iperf(lab, a, b, row.system.addrB, 5400 + i))
        row.p50.push(await pingP50(lab, a, row.system.addrB))
      } catch (err) {
        progress(`vpn: ${row.system.name}: ${(err as Error).message}`)
      }
    }
  }
  const plain = rows[0] as Row
  const weft = rows[wefts.length] as Row
  for (const row of rows) {
    line('compare', mean(row.tcp), 'MB/s', {
      system: row.system.name,
      version: row.system.version,
      tcpMBps: row.tcp.map(round),
      pingP50Ms: row.p50.map((x) => round(x)),
      pingP50MeanMs: round(mean(row.p50)),
      tcpVsPlain: round(mean(row.tcp) / mean(plain.tcp)),
      weftTcpVsThis: round(mean(weft.tcp) / mean(row.tcp)),
      weftPingP50VsThis: round(mean(weft.p50) / mean(row.p50)),
      setup: `one TCP stream (iperf3, ${SECONDS} s) and ${PINGS} pings 10 ms apart, A → B, ${ROUNDS} interleaved rounds`
    })
  }
  const fastest = rows.slice(wefts.length + 1).reduce<Row | undefined>((best, r) => best === undefined || mean(r.tcp) > mean(best.tcp) ? r : best, undefined)
  const tinc = rows.find((r) => r.system.name === 'tinc')
  if (fastest !== undefined) line('weft_vs_fastest_userspace_tcp', mean(weft.tcp) / mean(fastest.tcp), 'ratio', { fastest: fastest.system.name, target: '>= 1' })
  if (tinc !== undefined) line('weft_vs_tinc_ping_p50', mean(weft.p50) / mean(tinc.p50), 'ratio', { target: '<= 1' })
  // A ping through Weft wakes a Node process four times, a bare Node echo twice.
  line('node_echo_p50', mean(echo), 'ms', { rounds: echo.map((x) => round(x)), setup: `a bare Node TCP echo A → B, ${PINGS} messages of 118 bytes 10 ms apart: two wake-ups of a Node process per round` })
  line('weft_ping_p50_vs_two_node_echoes', mean(weft.p50) / (2 * mean(echo)), 'ratio', { note: 'the floor of a data plane in Node: 1.0 = no cost beyond the four wake-ups themselves' })
  const table = ['| system | TCP MB/s | ping p50 ms |', '|---|---|---|',
    ...rows.map((r) => `| ${r.system.name} ${r.system.version} | ${r.tcp.map((x) => Math.round(x)).join(' / ')} | ${r.p50.map((x) => x.toFixed(2)).join(' / ')} |`)]
  progress(table.join('\n') + `\n(a bare Node TCP echo between the same namespaces, same cadence: p50 ${echo.map((x) => x.toFixed(2)).join(' / ')} ms)`)
}
