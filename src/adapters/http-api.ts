import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { chmod, lstat, unlink } from 'node:fs/promises'
import { isAbsolute } from 'node:path'
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import type { z } from 'zod'
import { describeForkProof } from '../crdt/fork-proof.js'
import { authorName } from '../log/author.js'
import { toHex } from '../log/bytes.js'
import { isWeftError, WeftError } from '../log/errors.js'
import { compareEvents, formatZodIssues, openEnvelope, type SignedEvent } from '../log/event.js'
import { Ed25519Verifier } from '../log/identity.js'
import { makeSettingsChange, parseSettingValue } from '../projections/settings.js'
import { currentDelegates } from '../projections/authority.js'
import { networkView, type NetworkView } from '../projections/view.js'
import type { ReplicaReducers } from '../projections/reducers.js'
import type { Replica } from './replica.js'
import { BodyBudget, capConnections, serverLimits } from './http-limits.js'
import { DashboardWeb } from './dashboard-web.js'
import { renderMetrics, type MetricsSources } from './metrics.js'
import { serveWebRoute } from './web-routes.js'
import { automerge } from '../projections/automerge.js'
import {
  API_PREFIX, DEFAULT_EVENTS_LIMIT, EventsQuerySchema, ImportRequestSchema, MAX_BODY_BYTES, SetSettingRequestSchema,
  type ApiErrorCode, type EventsPage, type ImportReport, type LeaseMark, type NodeLiveStatus, type NodeStatus,
  type PeerStatus, type PeersResponse, type RoleMark, type SetSettingResponse, type SettingsResponse, type StateResponse
} from './api-types.js'

/**
 * The daemon's HTTP API (node:http, no framework). Every request needs
 * `Authorization: Bearer <token>`; every answer, errors included, is JSON. Routes and payloads
 * are in ./api-types.ts and docs/api.md. A bad request never takes the daemon down: anything a
 * handler throws becomes a JSON error, and the token is never logged.
 */

/** What the server needs from the running node. */
export interface ApiNode {
  replica: Replica<ReplicaReducers>
  /** Live daemon fields; the server adds events/authors/pending (replica) and self (view). */
  status (): NodeLiveStatus
  peers (): PeerStatus[]
  /** Milliseconds since the epoch: the time written into events appended through the API. */
  now (): number
  /**
   * The admin kubeconfig of a cluster, fetched from its init master over the mesh (or read here
   * when this node is that master), its server pointed at the master's overlay address.
   * Rejects with a KubeconfigError (code no-master, no-address, unreachable, not-ready, …).
   */
  kubeconfig? (cluster: string): Promise<string>
  /**
   * More routes, mounted by the daemon (e.g. `/api/v1/services/...`): path → method → handler
   * taking the JSON body (undefined for GET). A handler's error with a 4xx `status` and a string
   * `code` becomes that HTTP answer.
   */
  routes?: ReadonlyArray<readonly [string, Partial<Record<string, (body: unknown) => Promise<unknown>>>]>
  /** Counters beyond GET /status for GET /metrics (./metrics.ts), read at every scrape. */
  metrics? (): MetricsSources
}

export type ApiListen = { kind: 'tcp', host: string, port: number } | { kind: 'unix', path: string }

export interface ApiLogger { warn (obj: object, msg: string): void }

export interface ApiServerOptions {
  node: ApiNode
  listen: ApiListen
  token: string
  logger?: ApiLogger
  /** Aborting it closes the server. */
  signal?: AbortSignal
}

export interface ApiServer {
  /** `http://127.0.0.1:8080` (the real port when 0 was asked) or `unix:/abs/path.sock`. */
  readonly url: string
  /** Open connections and request body bytes held now (see ./http-limits.ts). */
  usage (): { connections: number, bodyBytes: number }
  close (): Promise<void>
}

/** A body bigger than this is not even drained: the connection is closed after the 413. */
const DRAIN_LIMIT = 64 * 1024 * 1024
/** Envelopes verified between two yields to the event loop on POST /events. */
const VERIFY_CHUNK = 256

class HttpError extends Error {
  constructor (readonly status: number, readonly code: ApiErrorCode, message: string, readonly headers: Record<string, string> = {}) {
    super(message)
  }
}

type Handler = (req: Request) => Promise<unknown>

interface Request {
  readonly url: URL
  /** The decoded rest of the path after a prefix route (the setting key). */
  readonly param: string
  /** The JSON body, parsed (a missing body is `undefined`). */
  json (): Promise<unknown>
}

export async function startApiServer (opts: ApiServerOptions): Promise<ApiServer> {
  if (opts.token.length < 16) throw new WeftError('ERR_BAD_INPUT', 'the API token is too short (use ensureApiToken)')
  const api = new Api(opts)
  const server = createServer(serverLimits(), (req, res) => { void api.handle(req, res) })
  const conns = capConnections(server)

  let url: string
  if (opts.listen.kind === 'unix') {
    const path = opts.listen.path
    if (!isAbsolute(path)) throw new WeftError('ERR_BAD_INPUT', `the API socket path must be absolute, got ${path}`)
    await removeStaleSocket(path)
    await listen(server, { path })
    await chmod(path, 0o600)
    url = `unix:${path}`
  } else {
    await listen(server, { host: opts.listen.host, port: opts.listen.port })
    const addr = server.address()
    const port = typeof addr === 'object' && addr !== null ? addr.port : opts.listen.port
    const host = opts.listen.host.includes(':') ? `[${opts.listen.host}]` : opts.listen.host
    url = `http://${host}:${port}`
  }
  api.url = url
  server.on('error', (err) => { opts.logger?.warn({ err: err.message }, 'API server error') })

  let closing: Promise<void> | undefined
  const close = async (): Promise<void> => {
    closing ??= (async () => {
      await new Promise<void>((resolve) => {
        api.web.close()
        server.close(() => { resolve() })
        server.closeIdleConnections()
        // Requests in flight get a moment to finish; then every socket goes.
        setTimeout(() => { server.closeAllConnections() }, 1_000).unref()
      })
      if (opts.listen.kind === 'unix') await unlink(opts.listen.path).catch(() => undefined)
    })()
    await closing
  }
  if (opts.signal !== undefined) {
    if (opts.signal.aborted) await close()
    else opts.signal.addEventListener('abort', () => { void close() }, { once: true })
  }
  return { url, close, usage: () => ({ connections: conns.open(), bodyBytes: api.bodyBytes }) }
}

async function listen (server: Server, where: { path: string } | { host: string, port: number }): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => { reject(err) }
    server.once('error', onError)
    server.listen(where, () => {
      server.off('error', onError)
      resolve()
    })
  })
}

/**
 * A socket file left by a daemon that died is removed; one that still accepts connections
 * belongs to a live process and is an error, as is any other kind of file at that path.
 */
async function removeStaleSocket (path: string): Promise<void> {
  let st
  try {
    st = await lstat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  if (!st.isSocket()) throw new WeftError('ERR_BAD_INPUT', `${path} exists and is not a socket; refusing to replace it with the API socket`)
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(path)
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => { resolve(false) })
  })
  if (alive) throw new WeftError('ERR_BAD_INPUT', `the API socket ${path} is in use by another process (is another "weft up" running on this data dir?)`)
  await unlink(path).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err })
}

interface Cache {
  log: unknown
  fold: unknown
  size: number
  folded: number
  sorted?: SignedEvent[]
  view?: NetworkView
}

class Api {
  url = ''
  private readonly tokenDigest: Buffer
  /** The dashboard's login, page and live stream (docs/dashboard.md). */
  readonly web: DashboardWeb
  private readonly verifier = new Ed25519Verifier()
  private readonly bodies = new BodyBudget()
  get bodyBytes (): number { return this.bodies.bytes }
  private cache: Cache | undefined
  /** PUT /settings computes a change against the current document: one at a time. */
  private settingsQueue: Promise<unknown> = Promise.resolve()
  private readonly routes: Map<string, Partial<Record<string, Handler>>>
  private readonly prefixRoutes: Array<[string, Partial<Record<string, Handler>>]>

  constructor (private readonly opts: ApiServerOptions) {
    this.tokenDigest = digest(opts.token)
    this.web = new DashboardWeb({
      url: () => this.url,
      onChange: (fn) => opts.node.replica.onChange(() => { fn() }),
      position: () => ({ events: opts.node.replica.log.size }),
      now: () => opts.node.now()
    })
    this.routes = new Map<string, Partial<Record<string, Handler>>>([
      [`${API_PREFIX}/status`, { GET: async () => this.getStatus() }],
      [`${API_PREFIX}/peers`, { GET: async () => this.getPeers() }],
      [`${API_PREFIX}/events`, { GET: async (r) => this.getEvents(r), POST: async (r) => await this.postEvents(r) }],
      [`${API_PREFIX}/state`, { GET: async () => this.getState() }],
      [`${API_PREFIX}/settings`, { GET: async () => this.getSettings() }],
      [`${API_PREFIX}/kubeconfig`, { GET: async (r) => await this.getKubeconfig(r) }],
      // POST: a session cookie never authorises it, so only the token holder gets a login code.
      [`${API_PREFIX}/dashboard/login`, { POST: async () => this.web.issueLogin() }]
    ])
    this.prefixRoutes = [[`${API_PREFIX}/settings/`, { PUT: async (r) => await this.putSetting(r) }]]
    for (const [path, methods] of opts.node.routes ?? []) {
      const handlers: Partial<Record<string, Handler>> = {}
      for (const [method, h] of Object.entries(methods)) {
        if (h !== undefined) handlers[method] = async (r) => await h(method === 'GET' ? undefined : await r.json())
      }
      this.routes.set(path, handlers)
    }
  }

  private get node (): ApiNode { return this.opts.node }

  /** GET /kubeconfig?cluster=C → {cluster, kubeconfig}; errors keep the protocol's codes. */
  private async getKubeconfig (r: { url: URL }): Promise<unknown> {
    const unknownParam = [...r.url.searchParams.keys()].find((k) => k !== 'cluster')
    if (unknownParam !== undefined) throw new HttpError(400, 'bad_request', `unknown query parameter ${unknownParam}; this route takes cluster`)
    const cluster = r.url.searchParams.get('cluster') ?? ''
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(cluster)) throw new HttpError(400, 'bad_request', 'cluster must be a cluster name (a DNS label), e.g. ?cluster=default')
    const fetch = this.node.kubeconfig
    if (fetch === undefined) throw new HttpError(404, 'not_found', 'this node does not serve kubeconfigs')
    try {
      return { cluster, kubeconfig: await fetch.call(this.node, cluster) }
    } catch (err) {
      const code = (err as { code?: unknown }).code
      const status = code === 'no-master' || code === 'no-address' ? 409 : code === 'not-member' ? 403 : code === 'not-ready' ? 503 : code === 'unreachable' ? 502 : undefined
      if (status === undefined) throw err
      throw new HttpError(status, code as ApiErrorCode, (err as Error).message)
    }
  }

  async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL | undefined
    let held = 0
    try {
      url = new URL(req.url ?? '/', 'http://weft.invalid')
      const ctx = { web: this.web, authorize: (r: IncomingMessage) => { this.authorize(r) }, metrics: async () => await this.getMetrics() }
      if (await serveWebRoute(ctx, req, res, url)) return
      this.authorize(req)
      const method = req.method ?? 'GET'
      const { handlers, param } = this.route(url.pathname)
      const handler = handlers[method]
      if (handler === undefined) {
        const allow = Object.keys(handlers).join(', ')
        throw new HttpError(405, 'method_not_allowed', `${method} is not allowed on ${url.pathname}; use ${allow}`, { Allow: allow })
      }
      // The body's bytes count against the budget until the handler is done with them.
      const body = await handler({ url, param, json: async () => await readJson(req, method, this.bodies, (n) => { held += n }) })
      send(res, 200, body)
    } catch (err) {
      try {
        this.fail(req, res, url, err)
      } catch {
        res.destroy() // the connection is gone; nothing more to say on it
      }
    } finally {
      this.bodies.give(held)
    }
  }

  private authorize (req: IncomingMessage): void {
    const header = req.headers.authorization
    // The dashboard's session cookie reads what the page shows, never writes (./dashboard-web.ts).
    if (header === undefined && this.web.sessionReads(req, new URL(req.url ?? '/', 'http://weft.invalid').pathname)) return
    const m = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)
    if (m === null) {
      throw new HttpError(401, 'unauthorized', 'this API needs "Authorization: Bearer <token>" (the token is in api.token in the data dir)', { 'WWW-Authenticate': 'Bearer realm="weft"' })
    }
    // Digests have one length whatever was sent, so the comparison time says nothing.
    if (!timingSafeEqual(digest(m[1] as string), this.tokenDigest)) {
      throw new HttpError(401, 'unauthorized', 'wrong API token', { 'WWW-Authenticate': 'Bearer realm="weft", error="invalid_token"' })
    }
  }

  private route (path: string): { handlers: Partial<Record<string, Handler>>, param: string } {
    const exact = this.routes.get(path)
    if (exact !== undefined) return { handlers: exact, param: '' }
    for (const [prefix, handlers] of this.prefixRoutes) {
      if (path.startsWith(prefix) && path.length > prefix.length && !path.slice(prefix.length).includes('/')) {
        let param: string
        try {
          param = decodeURIComponent(path.slice(prefix.length))
        } catch {
          throw new HttpError(400, 'bad_request', `bad percent-encoding in ${path}`)
        }
        return { handlers, param }
      }
    }
    throw new HttpError(404, 'not_found', `no route ${path}; the API has ${[...this.routes.keys(), ...this.prefixRoutes.map(([p]) => `${p}<key>`)].join(', ')}`)
  }

  private fail (req: IncomingMessage, res: ServerResponse, url: URL | undefined, err: unknown): void {
    let e: HttpError
    if (err instanceof HttpError) {
      e = err
    } else if (isWeftError(err, 'ERR_BAD_INPUT')) {
      e = new HttpError(400, 'bad_request', err.message)
    } else if (isClientError(err)) {
      e = new HttpError(err.status, err.code as ApiErrorCode, err.message)
    } else if (isWeftError(err, 'ERR_AUTHOR_FROZEN')) {
      e = new HttpError(409, 'read_only', err.message)
    } else {
      const message = err instanceof Error ? err.message : String(err)
      e = new HttpError(500, 'internal', message)
      // Method and path only: never headers (the token) nor bodies.
      this.opts.logger?.warn({ method: req.method, path: url?.pathname, err: message }, 'API request failed')
    }
    if (res.headersSent) {
      res.destroy()
      return
    }
    send(res, e.status, { error: { code: e.code, message: e.message } }, e.headers)
    if (e.headers.Connection === 'close') res.once('finish', () => { req.destroy() })
  }

  // ---- cached derived data -----------------------------------------------------------------

  private current (): Cache {
    const r = this.node.replica
    const c = this.cache
    if (c !== undefined && c.log === r.log && c.fold === r.fold && c.size === r.log.size && c.folded === r.fold.length) return c
    this.cache = { log: r.log, fold: r.fold, size: r.log.size, folded: r.fold.length }
    return this.cache
  }

  /** Every event of the merged log (frozen authors' included) in total order. */
  private sorted (): SignedEvent[] {
    const c = this.current()
    c.sorted ??= [...this.node.replica.log.events()].sort(compareEvents)
    return c.sorted
  }

  private view (): NetworkView {
    const c = this.current()
    c.view ??= networkView(this.node.replica.states().network)
    return c.view
  }

  // ---- handlers ----------------------------------------------------------------------------

  private getStatus (): NodeStatus {
    const live = this.node.status()
    const log = this.node.replica.log
    const me = this.view().members.find((m) => m.author === live.author)
    return {
      ...live,
      api: live.api === undefined || live.api === '' ? this.url : live.api,
      events: log.size,
      authors: log.authors().length,
      pending: log.pendingCount,
      self: me === undefined ? {} : { address: me.address, role: me.role, roleStable: me.roleStable, dnsName: me.dnsName, vpn: me.vpn }
    }
  }

  private async getMetrics (): Promise<{ contentType: string, text: string }> {
    return await renderMetrics({ status: this.getStatus(), peers: this.node.peers(), view: this.view(), sources: this.node.metrics?.() ?? {} })
  }

  private getPeers (): PeersResponse {
    return { peers: this.node.peers() }
  }

  private getEvents (r: Request): EventsPage {
    const q = parse(EventsQuerySchema, queryObject(r.url), 'query')
    const from = q.from ?? 0
    const limit = q.limit ?? DEFAULT_EVENTS_LIMIT
    const all = this.sorted()
    // First event with lamport >= from.
    let lo = 0
    let hi = all.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((all[mid] as SignedEvent).fields.lamport < from) lo = mid + 1
      else hi = mid
    }
    let end = Math.min(lo + limit, all.length)
    // Never split the events of one lamport: `next` must be a lamport to start from.
    while (end < all.length && end > lo && (all[end] as SignedEvent).fields.lamport === (all[end - 1] as SignedEvent).fields.lamport) end++
    const events = all.slice(lo, end).map((e) => ({
      id: e.idHex,
      lamport: e.fields.lamport,
      author: authorName(e.fields.author),
      seq: e.fields.seq,
      type: e.fields.type,
      time: e.fields.time,
      envelope: Buffer.from(e.envelope).toString('base64')
    }))
    return { events, next: end < all.length ? (all[end] as SignedEvent).fields.lamport : null }
  }

  private async postEvents (r: Request): Promise<ImportReport> {
    const body = parse(ImportRequestSchema, await r.json(), 'body')
    const replica = this.node.replica
    const rejected: ImportReport['rejected'] = []
    const opened: SignedEvent[] = []
    const indexOf: number[] = []
    for (let i = 0; i < body.envelopes.length; i++) {
      if (i > 0 && i % VERIFY_CHUNK === 0) await yieldToLoop() // signature checks: let other requests and gossip run
      const bytes = strictBase64(body.envelopes[i] as string)
      if (bytes === undefined) {
        rejected.push({ index: i, code: 'ERR_BAD_INPUT', message: 'the envelope is not strict base64' })
        continue
      }
      try {
        opened.push(openEnvelope(bytes, replica.net, this.verifier))
        indexOf.push(i)
      } catch (err) {
        rejected.push({ index: i, code: isWeftError(err) ? err.code : 'ERR_BAD_ENVELOPE', message: (err as Error).message })
      }
    }
    const res = await replica.ingest(opened)
    const rejectedIds = new Set<string>()
    for (const rej of res.rejected) {
      const e = opened[rej.index]
      if (e !== undefined) rejectedIds.add(e.idHex)
      rejected.push({ index: indexOf[rej.index] ?? -1, code: rej.code, message: rej.message })
    }
    rejected.sort((a, b) => a.index - b.index)
    const log = replica.log
    const parkedEvents: ImportReport['parkedEvents'] = []
    opened.forEach((e, k) => {
      if (log.has(e.idHex) || rejectedIds.has(e.idHex)) return
      const missing = [e.fields.prev, ...e.fields.deps].filter((x): x is Uint8Array => x !== null).map(toHex).filter((x) => !log.has(x))
      parkedEvents.push({ index: indexOf[k] as number, id: e.idHex, missing })
    })
    // `parked` counts what still waits: an event parked and then freed by a later one of the
    // same request is not.
    return { added: res.added.length, duplicates: res.duplicates, parked: parkedEvents.length, rejected, parkedEvents, forks: res.forks.map(describeForkProof) }
  }

  private getState (): StateResponse {
    const view = this.view()
    const roles: Record<string, RoleMark> = {}
    for (const m of view.members) roles[m.author] = m.roleStable ? 'stable' : 'tentative'
    const leases: Record<string, LeaseMark> = {}
    for (const c of view.ipam.claims) leases[`${c.author}/${c.family}`] = c.status
    const r = this.node.replica
    return {
      // Not the last of sorted(): sorting 100,000 events after every change cost /state 100+ ms.
      at: { events: r.log.size, folded: r.fold.length, lamport: r.log.maxLamport },
      view,
      marks: { roles, leases }
    }
  }

  private getSettings (): SettingsResponse {
    const s = this.view().settings
    return { values: s.values as SettingsResponse['values'], origin: s.origin as SettingsResponse['origin'], problems: s.problems }
  }

  private async putSetting (r: Request): Promise<SetSettingResponse> {
    const body = parse(SetSettingRequestSchema, await r.json(), 'body')
    const run = this.settingsQueue.then(async () => await this.setSetting(r.param, body.value))
    this.settingsQueue = run.catch(() => undefined)
    return await run
  }

  private async setSetting (key: string, text: string): Promise<SetSettingResponse> {
    const replica = this.node.replica
    // Throws ERR_BAD_INPUT (→ 400) naming the problem, or the known keys for an unknown one.
    const value = parseSettingValue(key, text) as SetSettingResponse['value']
    const author = replica.authorHex
    if (author === undefined) throw new HttpError(409, 'read_only', 'this node has no identity to sign with; settings cannot be changed through it')
    const authority = replica.states().network.authority
    if (authority.owner !== undefined && !currentDelegates(authority).includes(author)) {
      throw new HttpError(403, 'forbidden', 'settings changes need the network owner\'s signature: use "weft settings set <key> <value> --owner-key <file>" (it cosigns through /api/v1/admin), or have the owner grant this node (weft admin grant)')
    }
    const state = replica.states().network.settings
    // Automerge is loaded when settings are first written or read as a document (issue 16).
    const current = state.doc === null ? undefined : (automerge().toJS(state.doc) as Record<string, unknown>)[key]
    if (current !== undefined && JSON.stringify(current) === JSON.stringify(value)) {
      return { event: null, key, value, unchanged: true }
    }
    const change = makeSettingsChange(state, author, key, text)
    const ev = await replica.append('settings.change', { change }, this.node.now())
    return { event: ev.idHex, key, value, unchanged: false }
  }
}

function digest (text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest()
}

function parse<S extends z.ZodType> (schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value)
  if (!r.success) throw new HttpError(400, 'bad_request', `bad ${what}: ${formatZodIssues(r.error)}`)
  return r.data
}

function queryObject (url: URL): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of url.searchParams) {
    if (Object.hasOwn(out, k)) throw new HttpError(400, 'bad_request', `bad query: "${k}" is given twice`)
    out[k] = v
  }
  return out
}

/** The request body as JSON: at most MAX_BODY_BYTES, application/json (or no type), within the shared budget. */
async function readJson (req: IncomingMessage, method: string, budget: BodyBudget, took: (bytes: number) => void): Promise<unknown> {
  const type = req.headers['content-type']
  if (type !== undefined && !/^application\/json\s*(;|$)/i.test(type)) {
    throw new HttpError(415, 'unsupported_media_type', `send the body as application/json, not ${type}`)
  }
  const declared = Number(req.headers['content-length'] ?? NaN)
  if (declared > DRAIN_LIMIT) throw tooLarge(true)
  // Past the limit the rest is read and dropped, so the client gets the 413 instead of a reset.
  const chunks: Buffer[] = []
  let total = 0
  await new Promise<void>((resolve, reject) => {
    req.on('data', (c: Buffer) => {
      total += c.byteLength
      if (total <= MAX_BODY_BYTES) {
        // Many clients sending big bodies at once would add up: past the budget, 503.
        if (!budget.take(c.byteLength)) {
          req.pause()
          reject(new HttpError(503, 'busy', 'the API is reading other large requests; retry in a moment', { 'Retry-After': '1', Connection: 'close' }))
          return
        }
        took(c.byteLength)
        chunks.push(c)
      } else if (total > DRAIN_LIMIT) { req.pause(); reject(tooLarge(true)) }
    })
    req.once('end', () => { resolve() })
    // `on`, not `once`: a second error event without a listener would crash the daemon.
    req.on('error', reject)
    req.once('aborted', () => { reject(new HttpError(400, 'bad_request', 'the request was aborted')) })
  })
  if (total > MAX_BODY_BYTES) throw tooLarge(false)
  const text = Buffer.concat(chunks).toString('utf8')
  if (text.trim() === '') throw new HttpError(400, 'bad_request', `${method} needs a JSON body`)
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new HttpError(400, 'bad_request', `the body is not valid JSON: ${(err as Error).message}`)
  }
}

function tooLarge (close: boolean): HttpError {
  return new HttpError(413, 'payload_too_large', `the request body is larger than ${MAX_BODY_BYTES} bytes; send fewer envelopes per request`, close ? { Connection: 'close' } : {})
}

function send (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body, jsonReplacer)
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...headers
  })
  res.end(text)
}

/** Maps → objects, Sets → arrays, bytes → hex, bigints → strings (the view is plain already). */
function jsonReplacer (_key: string, value: unknown): unknown {
  if (value instanceof Map) return Object.fromEntries(value)
  if (value instanceof Set) return [...value]
  if (value instanceof Uint8Array) return toHex(value)
  if (typeof value === 'bigint') return value.toString()
  return value
}

/** Strict base64 (standard alphabet, padded): what Buffer would silently skip is refused. */
function strictBase64 (text: string): Uint8Array | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined
  const b = Buffer.from(text, 'base64')
  if (b.toString('base64') !== text) return undefined
  return new Uint8Array(b)
}

/** An error a mounted route throws on purpose: a 4xx status and a code for the client. */
function isClientError (err: unknown): err is Error & { status: number, code: string } {
  const e = err as { status?: unknown, code?: unknown }
  return err instanceof Error && typeof e.status === 'number' && e.status >= 400 && e.status < 500 && typeof e.code === 'string'
}
