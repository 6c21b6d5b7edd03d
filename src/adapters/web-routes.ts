import type { IncomingMessage, ServerResponse } from 'node:http'
import { API_PREFIX } from './api-types.js'
import type { DashboardWeb } from './dashboard-web.js'

/**
 * The API server's routes that answer with something other than JSON: GET /metrics (the
 * Prometheus text format), GET /api/v1/live (server-sent events) and the dashboard's pages
 * under /dashboard/ (HTML). The JSON routes stay in ./http-api.ts.
 */

export interface WebRoutesContext {
  web: DashboardWeb
  /** Throws the server's 401 unless the request has the bearer token (or, on GET, a session). */
  authorize: (req: IncomingMessage) => void
  metrics: () => Promise<{ contentType: string, text: string }>
}

/** A client error for the server's error path (status and code, as mounted routes throw). */
function refuse (status: number, code: string, message: string): Error {
  return Object.assign(new Error(message), { status, code })
}

function only (method: string, allowed: string, path: string): void {
  if (method !== allowed && !(allowed === 'GET' && method === 'HEAD')) throw refuse(405, 'method_not_allowed', `${method} is not allowed on ${path}; use ${allowed}`)
}

/** Serve `req` if it is one of these routes; false when it is a JSON route. */
export async function serveWebRoute (ctx: WebRoutesContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
  const path = url.pathname
  const method = req.method ?? 'GET'
  if (path === '/metrics') {
    ctx.authorize(req)
    only(method, 'GET', path)
    const { contentType, text } = await ctx.metrics()
    res.writeHead(200, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' })
    res.end(method === 'HEAD' ? undefined : text)
    return true
  }
  if (path === `${API_PREFIX}/live`) {
    ctx.authorize(req)
    only(method, 'GET', path)
    if (!ctx.web.live(req, res)) {
      const body = JSON.stringify({ error: { code: 'busy', message: 'too many live streams are open; retry in a moment' } })
      res.writeHead(503, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Retry-After': '2' })
      res.end(body)
    }
    return true
  }
  if (path === '/dashboard') {
    res.writeHead(302, { Location: '/dashboard/', 'Content-Length': 0 })
    res.end()
    return true
  }
  if (path === '/dashboard/login') {
    only(method, 'GET', path)
    ctx.web.login(req, res, url)
    return true
  }
  if (path === '/dashboard/logout') {
    only(method, 'POST', path)
    ctx.web.logout(req, res)
    return true
  }
  if (path.startsWith('/dashboard/')) {
    try {
      ctx.authorize(req)
    } catch {
      ctx.web.denied(res)
      return true
    }
    only(method, 'GET', path)
    await ctx.web.serveStatic(res, path.slice('/dashboard/'.length))
    return true
  }
  return false
}
