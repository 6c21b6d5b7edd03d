import http from 'node:http'
import https from 'node:https'
import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { KubeConfig, Watch } from '@kubernetes/client-node'
import {
  KubeError,
  apiVersionOf,
  qualifiedResource,
  resourcePath,
  type DeleteOptions,
  type KubeClient,
  type KubeList,
  type KubeObject,
  type ListOptions,
  type ResourceRef,
  type WatchEventType,
  type WatchOptions
} from './client.js'

export { clusterId } from './client.js'

/**
 * KubeClient over a real API server, with `@kubernetes/client-node` 1.x (2.x does not load on
 * Node 20). The library loads the kubeconfig and turns it into TLS settings and credentials
 * (certificates, bearer tokens, token files, exec and auth-provider plugins); requests are plain
 * JSON over node:http(s) with those settings, so objects arrive exactly as the server sent them
 * (the generated API classes would turn timestamps into Dates and need one class per group).
 * Watches use the library's `Watch`.
 */

export interface LoadKubeConfigOptions {
  /** A kubeconfig file (`--kubeconfig`). */
  kubeconfig?: string
  /** A context of that file other than its current one. */
  context?: string
  /**
   * Where the in-cluster service-account files live, as a prefix to
   * /var/run/secrets/kubernetes.io/serviceaccount (tests); '' in a pod.
   */
  inClusterRoot?: string
}

/**
 * A kubeconfig from, in this order: opts.kubeconfig; the pod's service account when
 * KUBERNETES_SERVICE_HOST is set; $KUBECONFIG (its first file); ~/.kube/config. Throws when
 * there is none (it never falls back to an unauthenticated localhost:8080).
 */
export function loadKubeConfig(opts: LoadKubeConfigOptions = {}): KubeConfig {
  const kc = new KubeConfig()
  const envFile = process.env.KUBECONFIG?.split(':').find((f) => f !== '')
  const homeFile = join(homedir(), '.kube', 'config')
  if (opts.kubeconfig !== undefined) {
    kc.loadFromFile(opts.kubeconfig)
  } else if (process.env.KUBERNETES_SERVICE_HOST !== undefined && process.env.KUBERNETES_SERVICE_HOST !== '') {
    kc.loadFromCluster(opts.inClusterRoot ?? '')
  } else if (envFile !== undefined) {
    kc.loadFromFile(envFile)
  } else if (existsSync(homeFile)) {
    kc.loadFromFile(homeFile)
  } else {
    throw new Error('no kubeconfig: pass --kubeconfig, run in a pod, or set KUBECONFIG')
  }
  if (opts.context !== undefined) kc.setCurrentContext(opts.context)
  if (kc.getCurrentCluster() === null) throw new Error('the kubeconfig has no current cluster')
  return kc
}

export interface HttpKubeClientOptions {
  /** Time limit of one non-watch request, in ms. Default 30 s. */
  requestTimeoutMs?: number
  /** Sent as User-Agent. */
  userAgent?: string
}

export function createHttpKubeClient(kc: KubeConfig, opts: HttpKubeClientOptions = {}): KubeClient {
  return new HttpKubeClient(kc, opts)
}

interface Reply {
  status: number
  body: unknown
}

export class HttpKubeClient implements KubeClient {
  readonly #kc: KubeConfig
  readonly #timeoutMs: number
  readonly #userAgent: string

  constructor(kc: KubeConfig, opts: HttpKubeClientOptions = {}) {
    if (kc.getCurrentCluster() === null) throw new Error('the kubeconfig has no current cluster')
    this.#kc = kc
    this.#timeoutMs = opts.requestTimeoutMs ?? 30_000
    this.#userAgent = opts.userAgent ?? 'weft'
  }

  async get<T extends KubeObject = KubeObject>(res: ResourceRef, namespace: string | undefined, name: string): Promise<T | undefined> {
    requireNamespace(res, namespace)
    const r = await this.#request('GET', resourcePath(res, namespace, name))
    if (r.status === 404) return undefined
    return withTypeMeta(res, this.#expectObject<T>(r, `get ${qualifiedResource(res)} ${JSON.stringify(name)}`))
  }

  async list<T extends KubeObject = KubeObject>(res: ResourceRef, namespace?: string, opts: ListOptions = {}): Promise<KubeList<T>> {
    const query: Record<string, string> = {}
    if (opts.labelSelector !== undefined && opts.labelSelector !== '') query.labelSelector = opts.labelSelector
    const r = await this.#request('GET', resourcePath(res, namespace), query)
    const body = this.#expectObject<{ items?: T[] | null; metadata?: { resourceVersion?: string; continue?: string } }>(
      r, `list ${qualifiedResource(res)}`)
    if (body.metadata?.continue) {
      // Only sent when the request had a limit, which this client never sets.
      throw new KubeError('Unknown', r.status, `list ${qualifiedResource(res)}: the server paginated an unpaginated list`)
    }
    const resourceVersion = body.metadata?.resourceVersion
    if (typeof resourceVersion !== 'string' || resourceVersion === '') {
      throw new KubeError('Unknown', r.status, `list ${qualifiedResource(res)}: no resourceVersion in the answer`)
    }
    // Items of built-in lists come without apiVersion and kind.
    return { items: (body.items ?? []).map((o) => withTypeMeta(res, o)), resourceVersion }
  }

  watch<T extends KubeObject = KubeObject>(
    res: ResourceRef,
    namespace: string | undefined,
    opts: WatchOptions,
    onEvent: (type: WatchEventType, obj: T) => void
  ): Promise<void> {
    const path = resourcePath(res, namespace)
    const query: Record<string, string | boolean | number> = {
      resourceVersion: opts.resourceVersion,
      allowWatchBookmarks: opts.allowWatchBookmarks ?? true
    }
    if (opts.labelSelector !== undefined && opts.labelSelector !== '') query.labelSelector = opts.labelSelector
    if (opts.timeoutSeconds !== undefined) query.timeoutSeconds = opts.timeoutSeconds
    const what = `watch ${qualifiedResource(res)}`
    return new Promise<void>((resolve, reject) => {
      if (opts.signal.aborted) {
        resolve()
        return
      }
      let settled = false
      let controller: AbortController | undefined
      const finish = (err?: unknown): void => {
        if (settled) return
        settled = true
        opts.signal.removeEventListener('abort', onAbort)
        controller?.abort()
        if (err === undefined) resolve()
        else reject(err)
      }
      const onAbort = (): void => finish()
      opts.signal.addEventListener('abort', onAbort, { once: true })

      const onLine = (type: string, obj: unknown): void => {
        if (settled) return
        if (type === 'ERROR') {
          const code = typeof (obj as { code?: unknown })?.code === 'number' ? (obj as { code: number }).code : 500
          finish(KubeError.fromStatus(code, obj, what))
          return
        }
        if (type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED' && type !== 'BOOKMARK') return
        if (typeof obj !== 'object' || obj === null) return
        try {
          onEvent(type, type === 'BOOKMARK' ? (obj as T) : withTypeMeta(res, obj as T))
        } catch (err) {
          finish(err)
        }
      }
      const onDone = (err: unknown): void => {
        if (settled) return
        if (err === null || err === undefined || opts.signal.aborted) finish()
        else finish(toKubeError(err, what))
      }
      new Watch(this.#kc).watch(path, query, onLine, onDone).then(
        (c) => {
          controller = c
          if (settled) c.abort()
        },
        (err: unknown) => finish(toKubeError(err, what))
      )
    })
  }

  async create<T extends KubeObject = KubeObject>(res: ResourceRef, namespace: string | undefined, obj: T): Promise<T> {
    requireNamespace(res, namespace)
    const r = await this.#request('POST', resourcePath(res, namespace), undefined, withTypeMeta(res, obj))
    return withTypeMeta(res, this.#expectObject<T>(r, `create ${qualifiedResource(res)} ${JSON.stringify(obj.metadata?.name ?? '')}`))
  }

  async replace<T extends KubeObject = KubeObject>(res: ResourceRef, namespace: string | undefined, obj: T): Promise<T> {
    return this.#put(res, namespace, obj, undefined)
  }

  async replaceStatus<T extends KubeObject = KubeObject>(res: ResourceRef, namespace: string | undefined, obj: T): Promise<T> {
    return this.#put(res, namespace, obj, 'status')
  }

  /**
   * Server-side apply (PATCH application/apply-patch+yaml; JSON is YAML): the object as this
   * field manager wants it; `force` takes over fields another manager owns.
   */
  async apply<T extends KubeObject = KubeObject>(res: ResourceRef, namespace: string | undefined, obj: T, opts: { fieldManager: string; force?: boolean }): Promise<T> {
    requireNamespace(res, namespace)
    const name = obj.metadata?.name
    if (name === undefined || name === '') throw new TypeError('apply needs metadata.name')
    const query: Record<string, string> = { fieldManager: opts.fieldManager }
    if (opts.force === true) query.force = 'true'
    const r = await this.#request('PATCH', resourcePath(res, namespace, name), query, withTypeMeta(res, obj), 'application/apply-patch+yaml')
    return withTypeMeta(res, this.#expectObject<T>(r, `apply ${qualifiedResource(res)} ${JSON.stringify(name)}`))
  }

  async delete(res: ResourceRef, namespace: string | undefined, name: string, opts: DeleteOptions = {}): Promise<boolean> {
    requireNamespace(res, namespace)
    const body = opts.preconditions === undefined
      ? undefined
      : { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: opts.preconditions }
    const r = await this.#request('DELETE', resourcePath(res, namespace, name), undefined, body)
    if (r.status === 404) return false
    this.#expectObject(r, `delete ${qualifiedResource(res)} ${JSON.stringify(name)}`)
    return true
  }

  async #put<T extends KubeObject>(res: ResourceRef, namespace: string | undefined, obj: T, sub: 'status' | undefined): Promise<T> {
    requireNamespace(res, namespace)
    const name = obj.metadata?.name
    if (name === undefined || name === '') throw new TypeError('replace needs metadata.name')
    const r = await this.#request('PUT', resourcePath(res, namespace, name, sub), undefined, withTypeMeta(res, obj))
    const verb = sub === undefined ? 'replace' : 'replace status of'
    return withTypeMeta(res, this.#expectObject<T>(r, `${verb} ${qualifiedResource(res)} ${JSON.stringify(name)}`))
  }

  #expectObject<T>(r: Reply, what: string): T {
    if (r.status < 200 || r.status > 299) throw KubeError.fromStatus(r.status, r.body, what)
    if (typeof r.body !== 'object' || r.body === null) {
      throw new KubeError('Unknown', r.status, `${what}: the answer is not a JSON object`)
    }
    return r.body as T
  }

  async #request(method: string, path: string, query?: Record<string, string>, body?: unknown, contentType = 'application/json'): Promise<Reply> {
    const cluster = this.#kc.getCurrentCluster()
    if (cluster === null) throw new Error('the kubeconfig has no current cluster')
    // The server URL may carry a path (API proxies such as Rancher's do).
    const url = new URL(cluster.server.replace(/\/+$/, '') + path)
    for (const [k, v] of Object.entries(query ?? {})) url.searchParams.set(k, v)
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    const opts: https.RequestOptions = {
      method,
      headers: {
        Accept: 'application/json',
        'User-Agent': this.#userAgent,
        ...(payload === undefined ? {} : { 'Content-Type': contentType, 'Content-Length': String(payload.length) })
      }
    }
    // Sets the agent (CA, client certificate) and the credentials (headers, or auth for basic).
    await this.#kc.applyToHTTPSOptions(opts)
    const what = `${method} ${url.pathname}`
    return new Promise<Reply>((resolve, reject) => {
      const lib = url.protocol === 'https:' ? https : http
      const req = lib.request(url, opts as http.RequestOptions, (resp) => {
        const chunks: Buffer[] = []
        resp.on('data', (c: Buffer) => chunks.push(c))
        resp.on('error', (err) => reject(toKubeError(err, what)))
        resp.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let parsed: unknown = text
          if (text !== '') {
            try {
              parsed = JSON.parse(text)
            } catch {
              // Not JSON (a proxy's error page, say): keep the text.
            }
          }
          resolve({ status: resp.statusCode ?? 0, body: parsed })
        })
      })
      req.setTimeout(this.#timeoutMs, () => {
        req.destroy(new KubeError('Unavailable', 0, `${what}: no answer within ${this.#timeoutMs} ms`))
      })
      req.on('error', (err) => reject(toKubeError(err, what)))
      req.end(payload)
    })
  }
}

function requireNamespace(res: ResourceRef, namespace: string | undefined): void {
  if (res.namespaced && (namespace === undefined || namespace === '')) {
    throw new TypeError(`${qualifiedResource(res)} is namespaced: a namespace is required`)
  }
}

/** The object with apiVersion and kind set from the resource when missing. */
function withTypeMeta<T extends KubeObject>(res: ResourceRef, obj: T): T {
  if (obj.apiVersion !== undefined && obj.kind !== undefined) return obj
  return { ...obj, apiVersion: obj.apiVersion ?? apiVersionOf(res), kind: obj.kind ?? res.kind }
}

/** A KubeError for anything a request or the Watch class failed with. */
function toKubeError(err: unknown, what: string): KubeError {
  if (err instanceof KubeError) return err
  const statusCode = (err as { statusCode?: unknown } | null)?.statusCode
  if (typeof statusCode === 'number') {
    // The Watch class drops the body of a non-200 answer: only the status is known.
    return KubeError.fromStatus(statusCode, undefined, what)
  }
  const message = err instanceof Error ? err.message : String(err)
  return new KubeError('Unavailable', 0, `${what}: ${message}`, { cause: err })
}
