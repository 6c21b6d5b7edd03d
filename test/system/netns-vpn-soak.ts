/**
 * The VPN soak, shared by the CI test (netns-vpn-soak.test.ts, 60 s) and the bench
 * (`npm run bench -- vpn --soak`, 10 min): one full-speed TCP connection A → B through the overlay
 * and, at the same time, 100 pings a second A → B. Reported: the longest outage (the longest run
 * of unanswered pings, and the longest silence between two answers), loss, ping percentiles, and
 * whether the path is healthy right after the load stops (no queue left stuck).
 */
import { tcpTransfer, type LabHost, type NetnsLab } from './netns.js'

export interface SoakResult {
  seconds: number
  tcpMBps: number
  pingsSent: number
  pingsAnswered: number
  /** Longest time without an answer (ms), from the runs of lost pings and the gaps between answers. */
  maxOutageMs: number
  pingP50Ms: number
  pingP99Ms: number
  /** Of 20 pings (10 ms apart) right after the load, how many were answered. */
  afterAnswered: number
}

const INTERVAL_S = 0.01

export async function soak (lab: NetnsLab, a: LabHost, b: LabHost, addrB: string, seconds: number, port = 5299): Promise<SoakResult> {
  const pinger = lab.exec(a, ['ping', '-n', '-D', '-i', String(INTERVAL_S), '-W', '1', '-w', String(seconds), addrB], (seconds + 30) * 1000)
  const tcp = tcpTransfer(lab, a, b, addrB, { seconds, port, timeoutMs: (seconds + 60) * 1000 })
  const [p, t] = await Promise.all([pinger, tcp])
  const replies: Array<{ ts: number, seq: number, ms: number }> = []
  for (const m of p.stdout.matchAll(/^\[(\d+\.\d+)\] .*icmp_seq=(\d+) .*time=([\d.]+) ms/gm)) {
    replies.push({ ts: Number(m[1]) * 1000, seq: Number(m[2]), ms: Number(m[3]) })
  }
  const sent = Number(/(\d+) packets transmitted/.exec(p.stdout)?.[1] ?? 0)
  replies.sort((x, y) => x.seq - y.seq)
  let maxOutage = replies.length === 0 ? seconds * 1000 : ((replies[0]?.seq ?? 1) - 1) * INTERVAL_S * 1000
  for (let i = 1; i < replies.length; i++) {
    const prev = replies[i - 1] as { ts: number, seq: number }
    const cur = replies[i] as { ts: number, seq: number }
    maxOutage = Math.max(maxOutage, (cur.seq - prev.seq) * INTERVAL_S * 1000, cur.ts - prev.ts)
  }
  if (replies.length > 0) maxOutage = Math.max(maxOutage, (sent - (replies[replies.length - 1]?.seq ?? sent)) * INTERVAL_S * 1000)
  const rtts = replies.map((r) => r.ms).sort((x, y) => x - y)
  const pct = (q: number): number => rtts.length === 0 ? NaN : rtts[Math.min(rtts.length - 1, Math.floor(q * rtts.length))] as number
  const after = await lab.exec(a, ['ping', '-n', '-i', String(INTERVAL_S), '-c', '20', '-W', '1', addrB], 30_000)
  const afterAnswered = Number(/(\d+) received/.exec(after.stdout)?.[1] ?? 0)
  return {
    seconds,
    tcpMBps: t.mbps,
    pingsSent: sent,
    pingsAnswered: replies.length,
    maxOutageMs: Math.round(maxOutage),
    pingP50Ms: pct(0.5),
    pingP99Ms: pct(0.99),
    afterAnswered
  }
}
