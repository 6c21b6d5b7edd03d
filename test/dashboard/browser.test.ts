/**
 * The dashboard end to end: real `weft up` processes on loopback (alpha, bravo, charlie), Debian's
 * Chromium driven by playwright-core. Logs in through the one-time URL `weft dashboard` prints,
 * checks every view shows the mesh's data, that a service exposed meanwhile appears without a
 * reload (server-sent events), and that without a login the page and its data answer 401.
 *
 * Needs root (Chromium runs with --no-sandbox, which is only acceptable for root in CI) and
 * /usr/bin/chromium (`apt-get install chromium`); skipped with the reason printed otherwise.
 * Needs dist/ (`npm run build`). With WEFT_DASHBOARD_SHOTS=1 it also writes a screenshot of
 * each view to docs/dashboard/<view>.png (`npm run dashboard-shots`).
 */
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { formatToken, newToken } from '../../src/log/token.js'
import { weft } from '../cli/helpers.js'
import { startDaemon, tempDir, waitFor, type DaemonProc } from '../mesh/daemons.js'

const CHROMIUM = '/usr/bin/chromium'
const SHOTS = process.env.WEFT_DASHBOARD_SHOTS === '1'
const SHOT_DIR = fileURLToPath(new URL('../../docs/dashboard/', import.meta.url))

function support (): string | undefined {
  if (process.getuid?.() !== 0) return `needs root to run Chromium with --no-sandbox (uid is ${String(process.getuid?.())})`
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing (apt-get install chromium)`
  return undefined
}

const skip = support()
if (skip !== undefined) console.warn(`skipping test/dashboard/browser.test.ts: ${skip}`)

async function post (d: DaemonProc, path: string, body: unknown): Promise<any> {
  const res = await fetch(`${d.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${d.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const json = await res.json() as unknown
  if (!res.ok) throw new Error(`POST ${path}: ${res.status} ${JSON.stringify(json)}`)
  return json
}

/** A TCP server that accepts and closes: a target for `service expose`. */
async function echoServer (): Promise<{ server: Server, port: number }> {
  const server = createServer((s) => { s.end('hello\n') })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const a = server.address()
  return { server, port: typeof a === 'object' && a !== null ? a.port : 0 }
}

describe.skipIf(skip !== undefined)('the dashboard in Chromium', () => {
  const token = formatToken(newToken())
  const nodes: DaemonProc[] = []
  let dir: { dir: string, cleanup: () => Promise<void> } | undefined
  let browser: Browser | undefined
  let context: BrowserContext | undefined
  let page: Page
  let target: { server: Server, port: number } | undefined
  let base = ''
  const A = (): DaemonProc => nodes[0] as DaemonProc

  beforeAll(async () => {
    dir = await tempDir('weft-dash-')
    target = await echoServer()
    const a = await startDaemon({ token, dataDir: join(dir.dir, 'a'), name: 'alpha' })
    nodes.push(a)
    nodes.push(await startDaemon({ token, dataDir: join(dir.dir, 'b'), name: 'bravo', peers: [a.listen[0] as string], extra: ['--advertise', '192.168.77.0/24'] }))
    nodes.push(await startDaemon({ token, dataDir: join(dir.dir, 'c'), name: 'charlie', peers: [a.listen[0] as string] }))
    await waitFor(async () => {
      const s = await a.get('/api/v1/state')
      return s.view.members.length === 3 && s.view.members.every((m: { address?: string }) => m.address !== undefined)
    }, 'three members with addresses', 30_000)
    await post(nodes[2] as DaemonProc, '/api/v1/services/expose', { name: 'db', target: `127.0.0.1:${target.port}` })
    await post(a, '/api/v1/services/connect', { name: 'db', listen: '127.0.0.1:0', port: target.port })
    const { chromium } = await import('playwright-core')
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] })
    context = await browser.newContext({ viewport: { width: 1280, height: 760 } })
    page = await context.newPage()
  }, 120_000)

  afterAll(async () => {
    await browser?.close()
    await Promise.all(nodes.map(async (n) => await n.stop()))
    target?.server.close()
    await dir?.cleanup()
  })

  it('without a login, the page and its data answer 401', async () => {
    const anon = await (browser as Browser).newContext()
    const p = await anon.newPage()
    const res = await p.goto(`${A().url}/dashboard/`)
    expect(res?.status()).toBe(401)
    expect(await p.textContent('body')).toContain('weft dashboard')
    for (const path of ['/api/v1/status', '/api/v1/state', '/api/v1/events', '/api/v1/live', '/dashboard/app.js', '/metrics']) {
      const r = await p.request.get(`${A().url}${path}`)
      expect(r.status(), path).toBe(401)
    }
    await anon.close()
  })

  it('logs in through the one-time URL of "weft dashboard"; the URL then carries no secret', async () => {
    const r = await weft(['dashboard', '--data-dir', A().dataDir, '--json'])
    expect(r.code, r.stderr).toBe(0)
    const { url } = JSON.parse(r.stdout) as { url: string }
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/dashboard\/login\?code=/)
    base = new URL(url).origin
    await page.goto(url)
    expect(page.url()).toBe(`${base}/dashboard/`)
    const cookies = await (context as BrowserContext).cookies()
    expect(cookies).toHaveLength(1)
    expect(cookies[0]).toMatchObject({ httpOnly: true, sameSite: 'Strict' })
    expect(cookies[0]?.value).not.toBe(A().token)
    // The code was used: a second browser cannot log in with it.
    const other = await (browser as Browser).newContext()
    const again = await (await other.newPage()).goto(url)
    expect(again?.status()).toBe(401)
    await other.close()
    // The page's script sees no cookie (HttpOnly).
    expect(await page.evaluate(() => (globalThis as unknown as { document: { cookie: string } }).document.cookie)).toBe('')
    await page.waitForSelector('#live.on', { timeout: 10_000 })
  })

  const show = async (view: string, text: string | RegExp, timeout = 20_000): Promise<string> => {
    await page.click(`#tabs a[data-view="${view}"]`)
    const section = page.locator(`#view-${view}`)
    await section.getByText(text).first().waitFor({ timeout })
    return await section.innerText()
  }

  it('shows every view with the mesh\'s data', async () => {
    const state = await A().get('/api/v1/state')
    const byName = new Map<string, { address: string, dnsName: string }>(state.view.members.map((m: any) => [m.hostname, m]))

    const members = await show('members', 'charlie')
    for (const n of ['alpha', 'bravo', 'charlie']) {
      expect(members).toContain(byName.get(n)?.address)
      expect(members).toContain(byName.get(n)?.dnsName)
    }
    expect(members).toContain('this node')
    // The nodes run with --no-tun: each address is marked unreachable, each name reserved (issue 17).
    expect(members.match(/no VPN: unreachable/g)).toHaveLength(3)
    expect(members.match(/reserved: no A record/g)).toHaveLength(3)
    expect(members).toMatch(/online/)
    expect(members).toMatch(/direct 127\.0\.0\.1:\d+/)
    expect(members).toMatch(/stable|tentative/)
    // RTTs come from libp2p's connection monitor (every 10 s).
    await page.locator('#view-members').getByText(/\d+\.\d ms/).first().waitFor({ timeout: 30_000 })
    if (SHOTS) await shot('members')

    const clusters = await show('clusters', 'default')
    expect(clusters).toMatch(/waiting|tentative|stable/)
    expect(clusters).toContain('k3s is not run by this node')
    if (SHOTS) await shot('clusters')

    const routes = await show('routes', '192.168.77.0/24')
    expect(routes).toContain(`${byName.get('charlie')?.address}/32`)
    expect(routes).toMatch(/advertised\s+bravo/)
    if (SHOTS) await shot('routes')

    const services = await show('services', 'default/db')
    expect(services).toContain('charlie') // the export's author
    expect(services).toMatch(/127\.0\.0\.1:\d+/) // alpha's listener
    if (SHOTS) await shot('services')

    const vpn = await show('vpn', /VPN/)
    expect(vpn).toContain('--no-tun')
    // docs/dashboard/vpn.png comes from browser-vpn.test.ts, with real VPN traffic.

    const log = await show('log', 'node.join')
    for (const n of ['alpha', 'bravo', 'charlie']) expect(log).toContain(n)
    expect(log).toContain('service.export')
    expect(log).toMatch(/#1 \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} node\.join/) // the author's time, ISO (UTC)
    if (SHOTS) await shot('log')

    const status = await A().get('/api/v1/status')
    const problems = await show('problems', /Problems \(\d+\)/)
    const expected = Array.isArray(status.problems) ? status.problems.length : 0
    expect(problems).toContain(`Problems (${expected})`)
    if (SHOTS) await shot('problems')
  }, 120_000)

  it('a service exposed meanwhile appears without a reload (live update)', async () => {
    await show('services', 'default/db')
    await page.evaluate(() => { (globalThis as unknown as { marker: number }).marker = 42 })
    await post(nodes[1] as DaemonProc, '/api/v1/services/expose', { name: 'web', target: `127.0.0.1:${(target as { port: number }).port}` })
    await page.locator('#view-services').getByText('default/web').first().waitFor({ timeout: 20_000 })
    // Same document: the marker set before is still there.
    expect(await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker)).toBe(42)
  }, 60_000)

  async function shot (view: string): Promise<void> {
    await mkdir(SHOT_DIR, { recursive: true })
    await page.screenshot({ path: join(SHOT_DIR, `${view}.png`), fullPage: false })
  }
})
