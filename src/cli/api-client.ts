import { request as httpRequest } from 'node:http'
import { z } from 'zod'
import { apiEndpointPath, readApiEndpoint, readApiToken, readTokenFile } from '../adapters/api-token.js'
import {
  API_PREFIX, ApiErrorSchema, EventsPageSchema, ImportReportSchema, MAX_EVENTS_LIMIT, MAX_IMPORT_ENVELOPES, NodeStatusSchema,
  parseApiUrl, PeersResponseSchema, KubeconfigResponseSchema, SetSettingResponseSchema, SettingsResponseSchema, StateResponseSchema,
  type ApiTarget, type EventsPage, type ImportReport, type NodeStatus, type PeerStatus, type SetSettingResponse,
  type SettingsResponse, type StateResponse,
  LeaveResponseSchema, PingResponseSchema, type LeaveResponse, type PingRequest, type PingResponse
} from '../adapters/api-types.js'
import { isWeftError } from '../log/errors.js'
import {
  ConnectResponseSchema, DisconnectResponseSchema, ExposeResponseSchema, ServicesResponseSchema, SERVICE_ROUTES, UnexposeResponseSchema,
  type ConnectRequest, type ConnectResponse, type DisconnectRequest, type DisconnectResponse, type ExposeRequest, type ExposeResponse,
  type ServicesResponse, type UnexposeRequest, type UnexposeResponse
} from '../node/service-api-types.js'
import { formatZodIssues } from '../log/event.js'
import { CliError } from './errors.js'
import { decodeBase64 } from './input.js'

/**
 * The client of a running daemon's HTTP API (see ../adapters/http-api.ts and docs/api.md).
 * Every response is checked against the shared schemas; every failure becomes a CliError that
 * says what went wrong and where (daemon not running, wrong token, refused request).
 */

const AdminPrepareSchema = z.object({ ticket: z.unknown(), signingInput: z.string(), owner: z.string().nullable(), authorisedWithout: z.boolean() })
const AdminAppendSchema = z.object({ id: z.string(), seq: z.number(), type: z.string() })
const TokenSchema = z.object({ token: z.string(), epoch: z.number() })

export interface ApiClientOptions {
  /** `http://host:port` or `unix:/abs/path.sock`. */
  url: string
  token: string
  /** Per request (default 60 s). */
  timeoutMs?: number
  /** The endpoint file this came from, for messages. */
  endpointFile?: string
  /** The daemon's pid as its endpoint file says, to tell a dead daemon from a hung one. */
  pid?: number
}

/** Options shared by the commands that talk to a daemon. */
export interface ApiCliOptions {
  dataDir: string
  api?: string
  apiTokenFile?: string
}

/** Body bytes per POST /events (the server takes 4 MiB; JSON and base64 cost a little more). */
const IMPORT_BATCH_BYTES = 3 * 1024 * 1024

export class ApiClient {
  readonly url: string
  private readonly target: ApiTarget
  private readonly token: string
  private readonly timeoutMs: number

  constructor (private readonly opts: ApiClientOptions) {
    const target = parseApiUrl(opts.url)
    if (target === undefined) throw new CliError(`"${opts.url}" is not an API URL: give http://host:port or unix:/absolute/path.sock`)
    this.url = opts.url
    this.target = target
    this.token = opts.token
    this.timeoutMs = opts.timeoutMs ?? 60_000
  }

  /** The daemon running on a data dir, from its `api.json` and `api.token`. */
  static async fromDataDir (dataDir: string, tokenFile?: string): Promise<ApiClient> {
    const endpoint = await readApiEndpoint(dataDir)
    if (endpoint === undefined) {
      throw new CliError(`no running daemon found for ${dataDir}: ${apiEndpointPath(dataDir)} is missing (start one with "weft up", or give --api <url>)`)
    }
    const token = await tokenFrom(tokenFile, async () => await readApiToken(dataDir))
    return new ApiClient({ url: endpoint.url, token, endpointFile: apiEndpointPath(dataDir), pid: endpoint.pid })
  }

  /**
   * `--api <url>` (or WEFT_API_URL) with a token from `--api-token-file`, WEFT_API_TOKEN or the data
   * dir's api.token; without `--api`, the daemon of the data dir.
   */
  static async fromOptions (o: ApiCliOptions): Promise<ApiClient> {
    if (o.api === undefined || o.api === '') return await ApiClient.fromDataDir(o.dataDir, o.apiTokenFile)
    const token = await tokenFrom(o.apiTokenFile, async () => {
      try {
        return await readApiToken(o.dataDir)
      } catch (err) {
        if (isWeftError(err, 'ERR_NOT_FOUND')) throw new CliError(`--api ${o.api} needs its token: give --api-token-file <file> or set WEFT_API_TOKEN`)
        throw err
      }
    })
    return new ApiClient({ url: o.api, token })
  }

  async status (): Promise<NodeStatus> {
    return await this.call('GET', '/status', NodeStatusSchema)
  }

  async peers (): Promise<PeerStatus[]> {
    return (await this.call('GET', '/peers', PeersResponseSchema)).peers
  }

  /** One page of events in total order from lamport `from`; `next` is where the next page starts. */
  async events (from = 0, limit = MAX_EVENTS_LIMIT): Promise<EventsPage> {
    return await this.call('GET', `/events?from=${from}&limit=${limit}`, EventsPageSchema)
  }

  /** Every envelope of the daemon's log, in total order, page by page. */
  async allEnvelopes (): Promise<Uint8Array[]> {
    const out: Uint8Array[] = []
    let from: number | null = 0
    while (from !== null) {
      const page: EventsPage = await this.events(from, MAX_EVENTS_LIMIT)
      for (const e of page.events) {
        const bytes = decodeBase64(e.envelope)
        if (bytes === undefined) throw new CliError(`the API at ${this.url} sent event ${e.id} with an envelope that is not base64`)
        out.push(bytes)
      }
      if (page.next !== null && page.next <= from) throw new CliError(`the API at ${this.url} sent a page that does not advance (from ${from}, next ${page.next})`)
      from = page.next
    }
    return out
  }

  async ping (req: PingRequest): Promise<PingResponse> {
    return await this.call('POST', '/ping', PingResponseSchema, req)
  }

  /** This node leaves the network (node.leave) and its daemon stops. */
  async leave (reason?: string): Promise<LeaveResponse> {
    return await this.call('POST', '/node/leave', LeaveResponseSchema, reason === undefined ? {} : { reason })
  }

  async state (): Promise<StateResponse> {
    // The view is checked in the fields the CLI reads; the rest is passed through as sent.
    return await this.call('GET', '/state', StateResponseSchema) as unknown as StateResponse
  }

  async settings (): Promise<SettingsResponse> {
    return await this.call('GET', '/settings', SettingsResponseSchema)
  }

  /** The cluster's admin kubeconfig, fetched by the daemon from the cluster's init master. */
  async kubeconfig (cluster: string): Promise<string> {
    return (await this.call('GET', `/kubeconfig?cluster=${encodeURIComponent(cluster)}`, KubeconfigResponseSchema)).kubeconfig
  }

  async setSetting (key: string, value: string): Promise<SetSettingResponse> {
    return await this.call('PUT', `/settings/${encodeURIComponent(key)}`, SetSettingResponseSchema, { value })
  }

  /** Compose an administrative event this daemon will author; returns what to cosign. */
  async adminPrepare (action: Record<string, unknown>): Promise<{ ticket: unknown, signingInput: string, owner: string | null, authorisedWithout: boolean }> {
    return await this.call('POST', '/admin/prepare', AdminPrepareSchema, action)
  }

  async adminAppend (ticket: unknown, auth?: { by: string, sig: string }): Promise<{ id: string, seq: number, type: string }> {
    return await this.call('POST', '/admin/append', AdminAppendSchema, { ticket, ...(auth !== undefined ? { auth } : {}) })
  }

  /** The token for new machines (current admission epoch). */
  async currentToken (): Promise<{ token: string, epoch: number }> {
    return await this.call('GET', '/token', TokenSchema)
  }

  /** `weft service expose`: this node serves `name` at `target` and exports it. */
  async serviceExpose (req: ExposeRequest): Promise<ExposeResponse> {
    return await this.call('POST', SERVICE_ROUTES.expose, ExposeResponseSchema, req)
  }

  async serviceUnexpose (req: UnexposeRequest): Promise<UnexposeResponse> {
    return await this.call('DELETE', SERVICE_ROUTES.expose, UnexposeResponseSchema, req)
  }

  /** `weft service connect`: a local listener whose connections are tunnelled to the service. */
  async serviceConnect (req: ConnectRequest): Promise<ConnectResponse> {
    return await this.call('POST', SERVICE_ROUTES.connect, ConnectResponseSchema, req)
  }

  async serviceDisconnect (req: DisconnectRequest): Promise<DisconnectResponse> {
    return await this.call('DELETE', SERVICE_ROUTES.connect, DisconnectResponseSchema, req)
  }

  async serviceLs (): Promise<ServicesResponse> {
    return await this.call('GET', SERVICE_ROUTES.list, ServicesResponseSchema)
  }

  /**
   * POST envelopes to the daemon in batches that fit its limits; the report's indexes are
   * positions in `envelopes`.
   */
  async importEnvelopes (envelopes: readonly Uint8Array[], onBatch?: (done: number) => void): Promise<ImportReport> {
    const total: ImportReport = { added: 0, duplicates: 0, parked: 0, rejected: [], parkedEvents: [], forks: [] }
    const texts = envelopes.map((e) => Buffer.from(e).toString('base64'))
    let offset = 0
    for (const batch of batches(texts)) {
      const r = await this.call('POST', '/events', ImportReportSchema, { envelopes: batch })
      total.added += r.added
      total.duplicates += r.duplicates
      total.rejected.push(...r.rejected.map((x) => ({ ...x, index: x.index + offset })))
      total.parkedEvents.push(...r.parkedEvents.map((x) => ({ ...x, index: x.index + offset })))
      total.forks.push(...r.forks)
      offset += batch.length
      onBatch?.(offset)
    }
    if (total.parkedEvents.length > 0) {
      // A later batch may have brought the parents of an earlier batch's parked events (the
      // daemon then folded them): ask again which still wait. They count as duplicates now.
      const still = new Set<string>()
      for (const batch of batches(total.parkedEvents.map((p) => texts[p.index] as string))) {
        for (const p of (await this.call('POST', '/events', ImportReportSchema, { envelopes: batch })).parkedEvents) still.add(p.id)
      }
      total.parkedEvents = total.parkedEvents.filter((p) => still.has(p.id))
    }
    total.parked = total.parkedEvents.length
    return total
  }

  async callRaw (method: string, path: string, body?: unknown): Promise<{ status: number, json: unknown }> {
    const { status, text } = await this.send(method, `${API_PREFIX}${path}`, body)
    let json: unknown
    try { json = JSON.parse(text) } catch { json = undefined }
    return { status, json }
  }

  private async call<S extends z.ZodType> (method: string, path: string, schema: S, body?: unknown): Promise<z.output<S>> {
    const { status, text } = await this.send(method, `${API_PREFIX}${path}`, body)
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      throw new CliError(`the API at ${this.url} answered ${method} ${path} with HTTP ${status} and a body that is not JSON (is something else listening there?)`)
    }
    if (status !== 200) throw this.refused(status, json, method, path)
    const r = schema.safeParse(json)
    if (!r.success) throw new CliError(`unexpected answer from the API at ${this.url} to ${method} ${path}: ${formatZodIssues(r.error)} (is the daemon another version of weft?)`)
    return r.data
  }

  private refused (status: number, json: unknown, method: string, path: string): CliError {
    const e = ApiErrorSchema.safeParse(json)
    const message = e.success ? e.data.error.message : `HTTP ${status}`
    if (status === 401) {
      return new CliError(`the API at ${this.url} refused the token (${message}); use the api.token of the daemon's data dir, --api-token-file or WEFT_API_TOKEN`)
    }
    // A 400 explains the caller's mistake (an unknown setting, a bad value): say just that.
    if (status === 400) return new CliError(message)
    return new CliError(`the API at ${this.url} refused ${method} ${path}: ${message} (HTTP ${status})`)
  }

  private async send (method: string, path: string, body: unknown): Promise<{ status: number, text: string }> {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const headers: Record<string, string> = { Authorization: `Bearer ${this.token}`, Accept: 'application/json' }
    if (payload !== undefined) headers['Content-Type'] = 'application/json'
    const once = async (): Promise<{ status: number, text: string }> => {
      if (this.target.kind === 'http') {
        const res = await fetch(`${this.target.base}${path}`, { method, headers, body: payload, signal: AbortSignal.timeout(this.timeoutMs) })
        return { status: res.status, text: await res.text() }
      }
      return await unixRequest(this.target.path, method, path, headers, payload, this.timeoutMs)
    }
    try {
      return await once()
    } catch (err) {
      // A kept-alive connection the server closed meanwhile: every route is idempotent (the log
      // dedupes events, an unchanged setting is not appended twice), so one retry is safe.
      if (!closedUnderUs(err)) throw this.unreachable(err)
      try {
        return await once()
      } catch (again) {
        throw this.unreachable(again)
      }
    }
  }

  private unreachable (err: unknown): CliError {
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException }
    const code = e.cause?.code ?? e.code ?? (e.name === 'TimeoutError' ? 'ETIMEDOUT' : undefined)
    const why = code === 'ECONNREFUSED'
      ? 'connection refused'
      : code === 'ENOENT'
        ? 'the socket does not exist'
        : code === 'ETIMEDOUT' || code === 'UND_ERR_HEADERS_TIMEOUT'
          ? `no answer within ${Math.round(this.timeoutMs / 1000)} s`
          : closedUnderUs(err)
            ? 'the daemon closed the connection'
            : (e.cause?.message ?? e.message)
    let hint = ''
    if (this.opts.endpointFile !== undefined) {
      hint = this.opts.pid !== undefined && !processAlive(this.opts.pid)
        ? `; the daemon (pid ${this.opts.pid}) named in ${this.opts.endpointFile} is not running (it did not stop cleanly: delete that file)`
        : `; is the daemon named in ${this.opts.endpointFile} still running?`
    } else if (code === 'ECONNREFUSED' || code === 'ENOENT') {
      hint = '; is "weft up" running there?'
    }
    return new CliError(`cannot reach the weft API at ${this.url}: ${why}${hint}`)
  }
}

/** Runs of base64 envelopes that fit one POST /events (count and body size). */
function batches (texts: readonly string[]): string[][] {
  const out: string[][] = []
  let cur: string[] = []
  let bytes = 0
  for (const t of texts) {
    if (cur.length > 0 && (cur.length >= MAX_IMPORT_ENVELOPES || bytes + t.length + 3 > IMPORT_BATCH_BYTES)) {
      out.push(cur)
      cur = []
      bytes = 0
    }
    cur.push(t)
    bytes += t.length + 3
  }
  if (cur.length > 0) out.push(cur)
  return out
}

async function tokenFrom (file: string | undefined, fallback: () => Promise<string>): Promise<string> {
  if (file !== undefined && file !== '') return await readTokenFile(file)
  const env = process.env.WEFT_API_TOKEN?.trim()
  if (env !== undefined && env !== '') return env
  try {
    return await fallback()
  } catch (err) {
    if (isWeftError(err, 'ERR_NOT_FOUND')) throw new CliError(`${err.message}: give --api-token-file <file> or set WEFT_API_TOKEN`)
    throw err
  }
}

function closedUnderUs (err: unknown): boolean {
  const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException }
  const code = e.cause?.code ?? e.code
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE'
}

function processAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function unixRequest (socketPath: string, method: string, path: string, headers: Record<string, string>, payload: string | undefined, timeoutMs: number): Promise<{ status: number, text: string }> {
  return await new Promise((resolve, reject) => {
    const req = httpRequest({
      socketPath,
      path,
      method,
      headers: payload === undefined ? headers : { ...headers, 'Content-Length': String(Buffer.byteLength(payload)) }
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }) })
      res.on('error', reject)
    })
    req.setTimeout(timeoutMs, () => { req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })) })
    req.on('error', reject)
    req.end(payload)
  })
}
