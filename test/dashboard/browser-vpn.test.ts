/**
 * The dashboard's VPN view and the VPN metrics with real traffic: two `weft up` nodes with their
 * TUN devices, each in its own network namespace (test/system/netns.ts), ping each other over
 * the overlay; Chromium, in the host's namespace, reaches node-1's API through a TCP → unix
 * socket → namespace forwarder and must show the packets per peer, and GET /metrics must count
 * them.
 *
 * Needs root, `ip netns`, /dev/net/tun, `ping` and /usr/bin/chromium; skipped with the reason
 * printed otherwise. Needs dist/ (`npm run build`). WEFT_DASHBOARD_SHOTS=1 writes
 * docs/dashboard/vpn.png.
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { connect, createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Browser } from 'playwright-core'
import { formatToken, newToken } from '../../src/log/token.js'
import { NetnsLab, startWeft, stateOf, tunNetnsSupport, waitApi, waitFor, WEFT_API_PORT, type WeftNode } from '../system/netns.js'
import { parsePromText, sampleValue } from './prom-text.js'

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))
const CHROMIUM = '/usr/bin/chromium'
const SHOTS = process.env.WEFT_DASHBOARD_SHOTS === '1'

function support (): string | undefined {
  const t = tunNetnsSupport()
  if (!t.ok) return t.reason
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing (apt-get install chromium)`
  try { execFileSync('ping', ['-V'], { stdio: 'ignore' }) } catch { return '"ping" is missing (install iputils-ping)' }
  return undefined
}

const skip = support()
if (skip !== undefined) console.warn(`skipping test/dashboard/browser-vpn.test.ts: ${skip}`)

describe.skipIf(skip !== undefined)('the dashboard\'s VPN view with real traffic', () => {
  let lab: NetnsLab | undefined
  const nodes: WeftNode[] = []
  let proxy: Server | undefined
  let browser: Browser | undefined
  let base = ''
  let addrB = ''

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`)
    lab = await NetnsLab.create(2, { subnet: '10.79.0' })
    const token = formatToken(newToken())
    for (const h of lab.hosts) nodes.push(startWeft(lab, h, CLI, token))
    for (const n of nodes) await waitApi(n, 30_000)
    const l = lab
    addrB = await waitFor(async () => {
      const s = await stateOf(l, nodes[0] as WeftNode)
      return s.members.length === 2 && s.members.every((m) => m.address !== undefined) ? s.members.find((m) => m.hostname === 'node-2')?.address : undefined
    }, 'both members with overlay addresses', 60_000, 250)
    // All three answered (ping exits 0 on one reply; the first packets may be lost while the link opens).
    await waitFor(async () => / 3 received/.test((await l.exec(l.hosts[0] as never, ['ping', '-c', '3', '-i', '0.2', '-W', '1', addrB])).stdout), 'node-1 to ping node-2 over the overlay, 3 of 3', 30_000, 250)
    const socketPath = await lab.forward(lab.hosts[0] as never, WEFT_API_PORT)
    proxy = createServer((c) => {
      const u = connect(socketPath)
      c.pipe(u); u.pipe(c)
      u.on('error', () => c.destroy()); c.on('error', () => u.destroy())
    })
    await new Promise<void>((resolve) => proxy?.listen(0, '127.0.0.1', resolve))
    const a = proxy.address()
    base = `http://127.0.0.1:${typeof a === 'object' && a !== null ? a.port : 0}`
    const { chromium } = await import('playwright-core')
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] })
  }, 150_000)

  afterAll(async () => {
    await browser?.close()
    proxy?.close()
    await lab?.destroy()
  })

  const bearer = (): Record<string, string> => ({ Authorization: `Bearer ${(nodes[0] as WeftNode).apiToken ?? ''}` })

  it('GET /metrics counts the VPN packets to the peer', async () => {
    const res = await fetch(`${base}/metrics`, { headers: bearer() })
    expect(res.status).toBe(200)
    const scrape = parsePromText(await res.text())
    expect(sampleValue(scrape, 'weft_vpn_up')).toBe(1)
    expect(sampleValue(scrape, 'weft_vpn_peer_packets_total', { peer: 'node-2', direction: 'tx' })).toBeGreaterThanOrEqual(3)
    expect(sampleValue(scrape, 'weft_vpn_peer_packets_total', { peer: 'node-2', direction: 'rx' })).toBeGreaterThanOrEqual(3)
    expect(sampleValue(scrape, 'weft_vpn_device_packets_total', { direction: 'rx' })).toBeGreaterThanOrEqual(3)
    expect(sampleValue(scrape, 'weft_members')).toBe(2)
  })

  it('shows the traffic per peer, live', async () => {
    const login = await fetch(`${base}/api/v1/dashboard/login`, { method: 'POST', headers: { ...bearer(), 'content-type': 'application/json' }, body: '{}' })
    const { path } = await login.json() as { path: string }
    const page = await (browser as Browser).newPage({ viewport: { width: 1280, height: 760 } })
    await page.goto(`${base}${path}`)
    expect(page.url()).toBe(`${base}/dashboard/`)
    await page.click('#tabs a[data-view="vpn"]')
    const view = page.locator('#view-vpn')
    await view.getByText('node-2').first().waitFor({ timeout: 20_000 })
    const before = await view.innerText()
    expect(before).toMatch(/VPN traffic on \S+/)
    const sentCell = view.locator('tr', { hasText: 'node-2' }).locator('td').nth(2)
    const sentNow = async (): Promise<number> => Number((await sentCell.innerText()).replace(/,/g, ''))
    const sent = await sentNow()
    expect(sent).toBeGreaterThanOrEqual(3)
    // More pings: the counters on the page grow without a reload (the live stream's ticks).
    const l = lab as NetnsLab
    expect((await l.exec(l.hosts[0] as never, ['ping', '-c', '20', '-i', '0.2', '-W', '1', addrB])).code).toBe(0)
    await waitFor(async () => (await sentNow()) >= sent + 20, 'the page to show the new packets', 20_000, 250)
    if (SHOTS) {
      const dir = fileURLToPath(new URL('../../docs/dashboard/', import.meta.url))
      await mkdir(dir, { recursive: true })
      await page.screenshot({ path: join(dir, 'vpn.png') })
    }
    await page.close()
  }, 90_000)
})
