import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startApiServer, type ApiServer } from '../../src/adapters/http-api.js'
import { LOGIN_LIMITS } from '../../src/adapters/dashboard-sessions.js'
import { DASHBOARD_CSP } from '../../src/adapters/dashboard-web.js'
import { joinBody } from '../support/fixtures.js'
import { cliReplica, fakeNode, raw, type CliReplica, type FakeNode } from '../api/support.js'

const TOKEN = 'dashboard-test-token-0123456789abcdef'

/** The dashboard's login over plain HTTP: code → cookie, what the cookie may and may not do. */
describe('dashboard login and session', () => {
  let a: CliReplica
  let node: FakeNode
  let server: ApiServer
  let port = ''

  beforeAll(async () => {
    a = await cliReplica(1)
    await a.append('node.join', joinBody('alpha'), 1000)
    node = fakeNode(a)
    server = await startApiServer({ node, listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, token: TOKEN })
    port = new URL(server.url).port
  })
  afterAll(async () => { await server.close(); await a.close() })

  const newCode = async (): Promise<string> => {
    const r = await raw(server.url, 'POST', '/api/v1/dashboard/login', { token: TOKEN, body: '{}' })
    expect(r.status).toBe(200)
    expect(r.json.path).toMatch(/^\/dashboard\/login\?code=[A-Za-z0-9_-]{32}$/)
    return r.json.path as string
  }

  const login = async (): Promise<string> => {
    const r = await raw(server.url, 'GET', await newCode())
    expect(r.status).toBe(303)
    expect(r.headers.location).toBe('/dashboard/')
    const cookie = String(r.headers['set-cookie'])
    expect(cookie).toMatch(new RegExp(`^weft_session_${port}=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=/; Max-Age=\\d+$`))
    return cookie.split(';')[0] as string
  }

  it('without a login the page, its files and its data answer 401', async () => {
    for (const path of ['/dashboard/', '/dashboard/app.js', '/dashboard/style.css', '/api/v1/status', '/api/v1/state', '/api/v1/live', '/metrics']) {
      expect((await raw(server.url, 'GET', path)).status, path).toBe(401)
    }
    expect((await raw(server.url, 'GET', '/dashboard/', { headers: { Cookie: `weft_session_${port}=forged` } })).status).toBe(401)
    // Only the token holder gets a login code.
    expect((await raw(server.url, 'POST', '/api/v1/dashboard/login', { body: '{}' })).status).toBe(401)
  })

  it('a login code works once, and the session cookie reads the page and the API with a CSP', async () => {
    const path = await newCode()
    const first = await raw(server.url, 'GET', path)
    expect(first.status).toBe(303)
    expect((await raw(server.url, 'GET', path)).status).toBe(401)
    const cookie = String(first.headers['set-cookie']).split(';')[0] as string
    const page = await raw(server.url, 'GET', '/dashboard/', { headers: { Cookie: cookie } })
    expect(page.status).toBe(200)
    expect(page.headers['content-security-policy']).toBe(DASHBOARD_CSP)
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(page.text).toContain('<script type="module" src="app.js">')
    expect(page.text).not.toMatch(/<script>|style="/) // nothing inline: the CSP forbids it
    const js = await raw(server.url, 'GET', '/dashboard/app.js', { headers: { Cookie: cookie } })
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8')
    const status = await raw(server.url, 'GET', '/api/v1/status', { headers: { Cookie: cookie } })
    expect(status.status).toBe(200)
    expect(status.json.hostname).toBe('alpha')
    expect((await raw(server.url, 'GET', '/dashboard/../api.token', { headers: { Cookie: cookie } })).status).toBe(401)
    expect((await raw(server.url, 'GET', '/dashboard/%2e%2e%2fapi.token', { headers: { Cookie: cookie } })).status).toBe(404)
  })

  it('a session cookie never authorises a change, nor a new login code', async () => {
    const cookie = await login()
    const put = await raw(server.url, 'PUT', '/api/v1/settings/mtu', { headers: { Cookie: cookie }, body: JSON.stringify({ value: '1400' }) })
    expect(put.status).toBe(401)
    expect((await raw(server.url, 'POST', '/api/v1/dashboard/login', { headers: { Cookie: cookie }, body: '{}' })).status).toBe(401)
    expect((await raw(server.url, 'POST', '/api/v1/events', { headers: { Cookie: cookie }, body: '{"envelopes":[]}' })).status).toBe(401)
    // Reads of secrets stay with the token: the network token for new machines, admin kubeconfigs.
    expect((await raw(server.url, 'GET', '/api/v1/token', { headers: { Cookie: cookie } })).status).toBe(401)
    expect((await raw(server.url, 'GET', '/api/v1/kubeconfig?cluster=default', { headers: { Cookie: cookie } })).status).toBe(401)
    expect((await raw(server.url, 'GET', '/api/v1/token', { token: TOKEN })).status).toBe(200)
  })

  it('a code expires after LOGIN_LIMITS.codeTtlMs; logging out ends the session', async () => {
    const path = await newCode()
    node.clock += LOGIN_LIMITS.codeTtlMs + 1
    expect((await raw(server.url, 'GET', path)).status).toBe(401)
    const cookie = await login()
    expect((await raw(server.url, 'GET', '/api/v1/peers', { headers: { Cookie: cookie } })).status).toBe(200)
    const out = await raw(server.url, 'POST', '/dashboard/logout', { headers: { Cookie: cookie } })
    expect(out.status).toBe(303)
    expect((await raw(server.url, 'GET', '/api/v1/peers', { headers: { Cookie: cookie } })).status).toBe(401)
    node.clock += LOGIN_LIMITS.sessionTtlMs
    const later = await login()
    node.clock += LOGIN_LIMITS.sessionTtlMs + 1
    expect((await raw(server.url, 'GET', '/api/v1/peers', { headers: { Cookie: later } })).status).toBe(401)
  })

  it('GET /api/v1/live streams a change event when the log changes', async () => {
    const cookie = await login()
    const text = await new Promise<string>((resolve, reject) => {
      let got = ''
      let appended = false
      const req = request({ host: '127.0.0.1', port: Number(port), path: '/api/v1/live', headers: { Cookie: cookie }, agent: false }, (res) => {
        expect(res.statusCode).toBe(200)
        expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8')
        res.setEncoding('utf8').on('data', (d: string) => {
          got += d
          if (!appended && got.includes('event: hello')) { appended = true; void a.append('ip.claim', { addr: '10.1.0.1' }, 1001) }
          if (got.includes('event: change')) { req.destroy(); resolve(got) }
        })
      })
      req.on('error', (err) => { if (got.includes('event: change')) resolve(got); else reject(err) })
      req.setTimeout(10_000, () => { req.destroy(new Error(`no change event; got ${got}`)) })
      req.end()
    })
    expect(text).toMatch(new RegExp(`event: change\\ndata: \\{"events":${a.log.size}\\}`))
  })
})
