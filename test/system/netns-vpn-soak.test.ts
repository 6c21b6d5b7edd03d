/**
 * VPN soak (60 s): two `weft up` nodes in network namespaces on one bridge; one full-speed TCP
 * connection A → B through the overlay and 100 pings a second A → B at the same time
 * (netns-vpn-soak.ts). The VPN must never be out for more than a second, and right after the
 * load the path must answer at once (no queue left stuck). The bench runs the same for 10 min
 * (`npm run bench -- vpn --soak`).
 *
 * Needs root, `ip netns`, /dev/net/tun and `ping`; skipped with the reason printed otherwise.
 * Needs dist/ (`npm test` builds first; otherwise run `npm run build`).
 */
import { execFile, execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { NetnsLab, netnsSupport, tail, type WeftNode } from './netns.js'
import { startVpnPair } from './netns-vpn-pair.js'
import { soak } from './netns-vpn-soak.js'

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))
const SECONDS = Number(process.env.WEFT_SOAK_SECONDS ?? 60)

function has (cmd: string, args: string[]): boolean {
  try { execFileSync(cmd, args, { stdio: 'ignore', timeout: 10_000 }); return true } catch { return false }
}

function support (): { ok: boolean, reason: string } {
  const s = netnsSupport()
  if (!s.ok) return s
  if (!existsSync('/dev/net/tun')) return { ok: false, reason: '/dev/net/tun does not exist (modprobe tun)' }
  if (!has('ping', ['-V'])) return { ok: false, reason: '"ping" is missing (install iputils-ping)' }
  return { ok: true, reason: '' }
}

const sup = support()
if (!sup.ok) console.warn(`skipping test/system/netns-vpn-soak.test.ts: ${sup.reason}`)

interface VpnStatus { addresses: string[], tun: { faults?: number }, drops: Record<string, number>, peers: Array<{ connected: boolean }> }

describe.skipIf(!sup.ok)('VPN soak: full-speed TCP and 100 pings/s', () => {
  let lab: NetnsLab | undefined
  const nodes: WeftNode[] = []
  afterAll(async () => { await lab?.destroy() }, 30_000)

  it(`${SECONDS} s with no outage over 1 s and no stuck queue`, async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`)
    const token = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [CLI, 'token', 'new'], (err, stdout) => { err !== null ? reject(err) : resolve(stdout.trim()) })
    })
    lab = await NetnsLab.create(2, { hostnamePrefix: 'soak' })
    const l = lab
    try {
      const pair = await startVpnPair<VpnStatus>(l, CLI, token)
      nodes.push(...pair.nodes)
      const { a, b, addrB, vpn } = pair
      const r = await soak(l, a, b, addrB, SECONDS)
      console.log(`[vpn soak] ${JSON.stringify(r)}`)
      expect(r.pingsAnswered, 'pings answered').toBeGreaterThan(0)
      expect(r.maxOutageMs, 'longest outage (ms)').toBeLessThanOrEqual(1000)
      expect(r.afterAnswered, 'pings answered right after the load (of 20)').toBeGreaterThanOrEqual(19)
      expect(r.tcpMBps).toBeGreaterThan(0)
      for (const i of [0, 1] as const) {
        const v = await vpn(i)
        expect(v.peers.some((p) => p.connected)).toBe(true)
      }
    } catch (err) {
      const logs = await Promise.all(nodes.map(async (n) => `--- ${n.host.hostname} ---\n${await tail(n.proc.logFile, 20)}`))
      ;(err as Error).message += `\n${logs.join('\n')}`
      throw err
    }
  }, (SECONDS + 150) * 1000)
})
