import { readFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { extname } from 'node:path'
import { cookieValue, DashboardSessions } from './dashboard-sessions.js'

/**
 * The dashboard's side of the API server (docs/dashboard.md): the login that trades a one-time
 * code for a session cookie, the static page (web/dashboard/, plain HTML, CSS and JS shipped
 * in the package: no build step, no CDN), and GET /api/v1/live, a server-sent event stream that
 * tells the page when to fetch again. The page reads everything else from the JSON API, with
 * its session cookie standing in for the token on GET requests only (the dashboard never
 * changes anything, and no cookie can authorise a change).
 */

/** Live streams open at once; past it a new one gets 503 (the page retries). */
export const LIVE_LIMITS = { maxStreams: 16, tickMs: 5_000, coalesceMs: 250 } as const

const STATIC_DIR = new URL('../../web/dashboard/', import.meta.url)
const FILES: Readonly<Record<string, string>> = { '': 'index.html', 'index.html': 'index.html', 'app.js': 'app.js', 'style.css': 'style.css', 'favicon.svg': 'favicon.svg' }
const TYPES: Readonly<Record<string, string>> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml' }

/**
 * What a session cookie may read: the page and the routes it reads, nothing else. GET /token (the
 * network token for new machines), GET /kubeconfig (admin credentials) and every future route
 * still need the API token.
 */
export const SESSION_READABLE: ReadonlySet<string> = new Set([
  '/api/v1/status', '/api/v1/peers', '/api/v1/state', '/api/v1/events', '/api/v1/settings', '/api/v1/services', '/api/v1/live', '/metrics'
])

/** Same-origin only: no inline script or style, no framing, no other host. */
export const DASHBOARD_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': DASHBOARD_CSP,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store'
}

export interface DashboardWebOptions {
  /** The API server's URL once listening (its port names the cookie: cookies ignore ports). */
  url: () => string
  /** Called with a listener for log changes; returns the unsubscribe function. */
  onChange: (fn: () => void) => () => void
  /** What a change event carries: the log's size and highest lamport. */
  position: () => { events: number }
  now?: () => number
}

export class DashboardWeb {
  readonly sessions: DashboardSessions
  private readonly streams = new Set<ServerResponse>()
  private readonly files = new Map<string, Buffer>()

  constructor (private readonly opts: DashboardWebOptions) {
    this.sessions = new DashboardSessions(opts.now)
  }

  /** `weft_session_<port>`: two daemons on one host keep separate sessions. */
  cookieName (): string {
    const port = /:(\d+)$/.exec(this.opts.url())?.[1] ?? '0'
    return `weft_session_${port}`
  }

  /**
   * True when the request is a read the dashboard needs (GET or HEAD of the page or of
   * SESSION_READABLE) and carries a live session cookie.
   */
  sessionReads (req: IncomingMessage, path: string): boolean {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false
    if (!path.startsWith('/dashboard/') && !SESSION_READABLE.has(path)) return false
    const v = cookieValue(req.headers.cookie, this.cookieName())
    return v !== undefined && this.sessions.valid(v)
  }

  /** POST /api/v1/dashboard/login (bearer token): a one-time code and the path to open with it. */
  issueLogin (): { path: string, expiresAt: number } {
    const code = this.sessions.issueCode()
    return { path: `/dashboard/login?code=${code.secret}`, expiresAt: code.expiresAt }
  }

  /** GET /dashboard/login?code=…: set the session cookie and send the browser to a URL without the code. */
  login (_req: IncomingMessage, res: ServerResponse, url: URL): void {
    const code = url.searchParams.get('code') ?? ''
    const session = code === '' ? undefined : this.sessions.redeem(code)
    if (session === undefined) {
      page(res, 401, 'This login link is not valid: it was used already, it expired (a link lasts 60 seconds), or the daemon restarted. Run "weft dashboard" again for a new one.')
      return
    }
    const maxAge = Math.floor((session.expiresAt - (this.opts.now ?? Date.now)()) / 1000)
    res.writeHead(303, {
      ...SECURITY_HEADERS,
      Location: '/dashboard/',
      'Set-Cookie': `${this.cookieName()}=${session.secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAge}`,
      'Content-Length': 0
    })
    res.end()
  }

  /** POST /dashboard/logout: end this browser's session. */
  logout (req: IncomingMessage, res: ServerResponse): void {
    const v = cookieValue(req.headers.cookie, this.cookieName())
    if (v !== undefined) this.sessions.end(v)
    res.writeHead(303, { ...SECURITY_HEADERS, Location: '/dashboard/', 'Set-Cookie': `${this.cookieName()}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`, 'Content-Length': 0 })
    res.end()
  }

  /** 401 for the page without a session: a short HTML page saying how to log in. */
  denied (res: ServerResponse): void {
    page(res, 401, 'Not logged in. Run "weft dashboard" on the node\'s machine and open the URL it prints (or "weft dashboard --open").')
  }

  /** GET /dashboard/<file>: the static page. */
  async serveStatic (res: ServerResponse, rest: string): Promise<void> {
    const name = FILES[rest]
    if (name === undefined) {
      page(res, 404, `No such dashboard file: ${rest}`)
      return
    }
    let body = this.files.get(name)
    if (body === undefined) {
      body = await readFile(new URL(name, STATIC_DIR))
      this.files.set(name, body)
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': TYPES[extname(name)] ?? 'application/octet-stream', 'Content-Length': body.byteLength })
    res.end(body)
  }

  /**
   * GET /api/v1/live: `event: change` (data: {events}) after log changes, at most one per
   * coalesceMs, and `event: tick` every tickMs (traffic and presence change without events).
   */
  live (req: IncomingMessage, res: ServerResponse): boolean {
    if (this.streams.size >= LIVE_LIMITS.maxStreams) return false
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive' })
    res.write(`retry: 2000\n\nevent: hello\ndata: ${JSON.stringify(this.opts.position())}\n\n`)
    this.streams.add(res)
    let timer: NodeJS.Timeout | undefined
    const unsubscribe = this.opts.onChange(() => {
      timer ??= setTimeout(() => {
        timer = undefined
        res.write(`event: change\ndata: ${JSON.stringify(this.opts.position())}\n\n`)
      }, LIVE_LIMITS.coalesceMs)
    })
    const tick = setInterval(() => { res.write('event: tick\ndata: {}\n\n') }, LIVE_LIMITS.tickMs)
    const end = (): void => {
      clearInterval(tick)
      if (timer !== undefined) clearTimeout(timer)
      unsubscribe()
      this.streams.delete(res)
    }
    req.socket.on('close', end)
    res.on('close', end)
    return true
  }

  /** End every live stream (the server is closing). */
  close (): void {
    for (const res of this.streams) res.end()
    this.streams.clear()
  }
}

function page (res: ServerResponse, status: number, message: string): void {
  const esc = message.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;')
  const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Weft dashboard</title></head><body><h1>Weft dashboard</h1><p>${esc}</p></body></html>`
  res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': Buffer.byteLength(body) })
  res.end(body)
}
