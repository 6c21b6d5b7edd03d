import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { randomBytes, randomUUID } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { KubeConfig } from '@kubernetes/client-node'
import YAML from 'yaml'
import {
  RESOURCES,
  apiVersionOf,
  qualifiedResource,
  type KubeClient,
  type KubeObject,
  type KubeStatus,
  type ResourceRef
} from '../../src/adapters/kube/client.js'
import { createHttpKubeClient, type HttpKubeClientOptions } from '../../src/adapters/kube/http-client.js'
import {
  SelectorError,
  isDns1035Label,
  isDns1123Label,
  isDns1123Subdomain,
  isLabelValue,
  isQualifiedName,
  matches,
  parseSelector,
  type Requirement
} from './fake-kube/labels.js'
import { FAKE_KUBE_CERT, FAKE_KUBE_KEY } from './fake-kube/tls.js'
import {
  defaultService, validateCrd, validateDeployment, validateEndpointSlice, validateEvent, validateRbac,
  validateService, validateServiceExport, validateServiceImport, type Violation
} from './fake-kube/validate.js'
import { cidrContains, parseCidr, parseIp, formatIp } from '../../src/projections/ip.js'
import { validateMutatingWebhookConfiguration, validatePod } from './fake-kube/validate-workloads.js'
import { crdSchema, validateSchema } from './fake-kube/schema.js'
import { applyPatch } from './fake-kube/apply.js'
import { ENTANGLE_RESOURCES } from '../../src/node/entangle/resources.js'

/**
 * An in-process fake Kubernetes API server speaking real HTTP on 127.0.0.1, so that tests run
 * the real HTTP client (src/adapters/kube/http-client.ts) against it. What it models of the real
 * API server, and what it does not, is in docs/kubernetes-fake.md.
 *
 *   const fake = await startFakeKube()
 *   const client = fake.client()            // the real HttpKubeClient, configured for the fake
 *   fake.put(RESOURCES.services, {...})     // act as kubectl
 *   await fake.close()
 */

/** Server-side behaviour that differs between resources. */
export interface FakeResource {
  readonly ref: ResourceRef
  /** PUT …/status exists; PUT on the object keeps the old status; create drops status. */
  readonly statusSubresource: boolean
  /** PUT without metadata.resourceVersion is allowed (built-ins) or 422 (custom resources). */
  readonly unconditionalUpdate: boolean
  /** metadata.generation is kept (1 on create, +1 on each change outside metadata and status). */
  readonly generation: boolean
  /** Built-in: list items come without apiVersion and kind. */
  readonly builtin: boolean
  readonly nameRule: 'dns1035' | 'dns1123-label' | 'dns1123-subdomain'
}

/** Resources the fake serves for `kubectl apply -f deploy/` (not used by Weft itself). */
export const MANIFEST_RESOURCES = {
  customResourceDefinitions: { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', kind: 'CustomResourceDefinition', namespaced: false },
  serviceAccounts: { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
  clusterRoles: { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterroles', kind: 'ClusterRole', namespaced: false },
  clusterRoleBindings: { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterrolebindings', kind: 'ClusterRoleBinding', namespaced: false },
  deployments: { group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment', namespaced: true },
  roles: { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'roles', kind: 'Role', namespaced: true },
  roleBindings: { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'rolebindings', kind: 'RoleBinding', namespaced: true },
  pods: { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true }
} as const satisfies Record<string, ResourceRef>

export const FAKE_RESOURCES: readonly FakeResource[] = [
  { ref: RESOURCES.services, statusSubresource: true, unconditionalUpdate: true, generation: false, builtin: true, nameRule: 'dns1035' },
  { ref: RESOURCES.namespaces, statusSubresource: true, unconditionalUpdate: true, generation: false, builtin: true, nameRule: 'dns1123-label' },
  { ref: RESOURCES.configMaps, statusSubresource: false, unconditionalUpdate: true, generation: false, builtin: true, nameRule: 'dns1123-subdomain' },
  { ref: RESOURCES.endpointSlices, statusSubresource: false, unconditionalUpdate: true, generation: true, builtin: true, nameRule: 'dns1123-subdomain' },
  { ref: RESOURCES.serviceExports, statusSubresource: true, unconditionalUpdate: false, generation: true, builtin: false, nameRule: 'dns1123-subdomain' },
  { ref: RESOURCES.serviceImports, statusSubresource: true, unconditionalUpdate: false, generation: true, builtin: false, nameRule: 'dns1123-subdomain' },
  { ref: RESOURCES.clusterProperties, statusSubresource: false, unconditionalUpdate: false, generation: true, builtin: false, nameRule: 'dns1123-subdomain' },
  { ref: RESOURCES.events, statusSubresource: false, unconditionalUpdate: true, generation: false, builtin: true, nameRule: 'dns1123-subdomain' },
  { ref: MANIFEST_RESOURCES.customResourceDefinitions, statusSubresource: true, unconditionalUpdate: true, generation: true, builtin: true, nameRule: 'dns1123-subdomain' },
  { ref: MANIFEST_RESOURCES.serviceAccounts, statusSubresource: false, unconditionalUpdate: true, generation: false, builtin: true, nameRule: 'dns1123-subdomain' },
  { ref: MANIFEST_RESOURCES.clusterRoles, statusSubresource: false, unconditionalUpdate: true, generation: false, builtin: true, nameRule: 'dns1123-subdomain' },
  { ref: MANIFEST_RESOURCES.clusterRoleBindings, statusSubresource: false, unconditionalUpdate: true, generation: false, builtin: true, nameRule: 'dns1123-subdomain' },
  { ref: MANIFEST_RESOURCES.deployments, statusSubresource: true, unconditionalUpdate: true, generation: true, builtin: true, nameRule: 'dns1123-subdomain' },
  { ref: MANIFEST_RESOURCES.roles, statusSubresource: false, unconditionalUpdate: true, generation: false, builtin: true, nameRule: 'dns1123-subdomain' },
  { ref: MANIFEST_RESOURCES.roleBindings, statusSubresource: false, unconditionalUpdate: true, generation: false, builtin: true, nameRule: 'dns1123-subdomain' },
  { ref: MANIFEST_RESOURCES.pods, statusSubresource: true, unconditionalUpdate: true, generation: false, builtin: true, nameRule: 'dns1123-subdomain' },
  { ref: ENTANGLE_RESOURCES.secrets, statusSubresource: false, unconditionalUpdate: true, generation: false, builtin: true, nameRule: 'dns1123-subdomain' },
  { ref: ENTANGLE_RESOURCES.mutatingWebhookConfigurations, statusSubresource: false, unconditionalUpdate: true, generation: true, builtin: true, nameRule: 'dns1123-subdomain' },
  { ref: ENTANGLE_RESOURCES.entanglements, statusSubresource: true, unconditionalUpdate: false, generation: true, builtin: false, nameRule: 'dns1123-subdomain' },
  { ref: ENTANGLE_RESOURCES.manifests, statusSubresource: true, unconditionalUpdate: false, generation: true, builtin: false, nameRule: 'dns1123-subdomain' }
]

export interface FakeKubeOptions {
  /** Watch events kept for watches that resume from an older resourceVersion. Default 1000. */
  historyLimit?: number
  /** Namespaces that exist at start. Default default, kube-system, kube-public, kube-node-lease. */
  namespaces?: string[]
  /** The kube-system namespace's uid (a random UUID by default). */
  kubeSystemUid?: string
  /** Bearer token the fake requires. Random by default. */
  token?: string
  /** Serve HTTPS with the fixed test certificate (test/support/fake-kube/tls.ts) instead of HTTP. */
  tls?: boolean
  /**
   * How a watch from a compacted resourceVersion is refused: 'event' (default, what the real API
   * server does) answers 200 and one ERROR event holding a Status with code 410; 'status'
   * answers HTTP 410.
   */
  goneAs?: 'event' | 'status'
  /** Send a BOOKMARK to watches that allow them every this many ms. Default 0: only on fake.bookmark(). */
  bookmarkIntervalMs?: number
  /** Resources served. Default FAKE_RESOURCES. */
  resources?: readonly FakeResource[]
  /** The Service CIDR cluster IPs are allocated from (and validated against). Default 10.43.0.0/16 (k3s). */
  serviceCidr?: string
}

export type FakeVerb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'update-status' | 'delete' | 'apply' | 'other'

export interface FakeRequest {
  method: string
  verb: FakeVerb
  /** Plural of the resource, when the path named one the fake serves. */
  resource?: string
  namespace?: string
  name?: string
  query: Record<string, string>
}

export interface FailMatch {
  verb?: FakeVerb
  resource?: string
}

type Obj = KubeObject & Record<string, unknown>
type EventType = 'ADDED' | 'MODIFIED' | 'DELETED'

interface HistoryEvent {
  rv: number
  res: FakeResource
  type: EventType
  namespace: string | undefined
  /** The new state; for DELETED the last state, with the deletion's resourceVersion. */
  obj: Obj
  /** The state before (MODIFIED). */
  prev?: Obj
}

interface Watcher {
  res: FakeResource
  namespace: string | undefined
  selector: Requirement[]
  bookmarks: boolean
  resp: http.ServerResponse
  timers: NodeJS.Timeout[]
}

interface Failure {
  match: FailMatch
  status: number
  reason: string
  message: string
  times: number
}

/** An answer other than 2xx, as the API server's Status object. */
class ApiError extends Error {
  constructor(readonly status: number, readonly reason: string, message: string, readonly details?: KubeStatus['details']) {
    super(message)
  }

  toStatus(): KubeStatus & { metadata: Record<string, never> } {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      ...(this.details === undefined ? {} : { details: this.details }),
      code: this.status
    }
  }
}

const NOT_SERVED = (): ApiError => new ApiError(404, 'NotFound', 'the server could not find the requested resource', {})

export async function startFakeKube(opts: FakeKubeOptions = {}): Promise<FakeKube> {
  const fake = new FakeKube(opts)
  await fake.listen()
  return fake
}

export class FakeKube {
  readonly token: string
  readonly requests: FakeRequest[] = []
  #url = ''
  readonly #opts: FakeKubeOptions
  readonly #resources: readonly FakeResource[]
  readonly #tables = new Map<FakeResource, Map<string, Obj>>()
  #rv = 0
  #history: HistoryEvent[] = []
  /** Watches may resume from any resourceVersion ≥ this. */
  #floor = 0
  readonly #watchers = new Set<Watcher>()
  #failures: Failure[] = []
  /** Server-side apply: the last object each field manager applied, by `uid/manager`. */
  readonly #applied = new Map<string, Obj>()
  readonly #server: http.Server
  readonly #serviceCidr: ReturnType<typeof parseCidr>
  #nextServiceIp = 10n

  constructor(opts: FakeKubeOptions = {}) {
    this.#opts = opts
    this.token = opts.token ?? randomBytes(16).toString('hex')
    this.#resources = opts.resources ?? FAKE_RESOURCES
    this.#serviceCidr = parseCidr(opts.serviceCidr ?? '10.43.0.0/16')
    for (const r of this.#resources) this.#tables.set(r, new Map())
    const handler = (req: http.IncomingMessage, resp: http.ServerResponse): void => {
      this.#handle(req, resp).catch((err: unknown) => {
        if (!resp.headersSent) this.#send(resp, 500, new ApiError(500, 'InternalError', String(err)).toStatus())
        else resp.destroy()
      })
    }
    this.#server = opts.tls === true
      ? https.createServer({ cert: FAKE_KUBE_CERT, key: FAKE_KUBE_KEY }, handler)
      : http.createServer(handler)
    const nsRes = this.#find(RESOURCES.namespaces)
    for (const name of opts.namespaces ?? ['default', 'kube-system', 'kube-public', 'kube-node-lease']) {
      const obj: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name } }
      if (name === 'kube-system' && opts.kubeSystemUid !== undefined) obj.metadata.uid = opts.kubeSystemUid
      this.#create(nsRes, undefined, obj, 'admin')
    }
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(0, '127.0.0.1', () => resolve())
    })
    const port = (this.#server.address() as AddressInfo).port
    this.#url = `${this.#opts.tls === true ? 'https' : 'http'}://127.0.0.1:${port}`
  }

  /** The server URL, e.g. http://127.0.0.1:40123. */
  get url(): string {
    return this.#url
  }

  /** The current (latest) resourceVersion. */
  get resourceVersion(): string {
    return String(this.#rv)
  }

  /** Watch connections open now. */
  get watchCount(): number {
    return this.#watchers.size
  }

  /** A kubeconfig for the fake, as YAML (write it to a file for `--kubeconfig`). */
  kubeconfigYaml(): string {
    const cluster: Record<string, unknown> = { server: this.#url }
    if (this.#opts.tls === true) cluster['certificate-authority-data'] = Buffer.from(FAKE_KUBE_CERT).toString('base64')
    else cluster['insecure-skip-tls-verify'] = true // client-node refuses http:// without it
    return YAML.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster }],
      users: [{ name: 'fake', user: { token: this.token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake' } }],
      'current-context': 'fake'
    })
  }

  async writeKubeconfig(path: string): Promise<void> {
    await writeFile(path, this.kubeconfigYaml(), { mode: 0o600 })
  }

  kubeConfig(): KubeConfig {
    const kc = new KubeConfig()
    kc.loadFromString(this.kubeconfigYaml())
    return kc
  }

  /** The real HTTP client, pointed at this fake. */
  client(opts?: HttpKubeClientOptions): KubeClient {
    return createHttpKubeClient(this.kubeConfig(), opts)
  }

  // ---- the programmatic API ("kubectl") ----

  /** Every stored object of a resource (in one namespace, if given), sorted by namespace and name. */
  objects<T extends KubeObject = KubeObject>(res: ResourceRef, namespace?: string): T[] {
    const t = this.#find(res)
    return [...this.#table(t).values()]
      .filter((o) => namespace === undefined || o.metadata.namespace === namespace)
      .sort((a, b) => keyOf(t, a.metadata.namespace, a.metadata.name ?? '').localeCompare(keyOf(t, b.metadata.namespace, b.metadata.name ?? '')))
      .map((o) => clone(o) as T)
  }

  get<T extends KubeObject = KubeObject>(res: ResourceRef, namespace: string | undefined, name: string): T | undefined {
    const t = this.#find(res)
    const o = this.#table(t).get(keyOf(t, namespace, name))
    return o === undefined ? undefined : (clone(o) as T)
  }

  /**
   * Creates or replaces an object as an administrator would: no resourceVersion check, and the
   * status is written as given. Server-managed metadata (uid, creationTimestamp, generation,
   * resourceVersion) is kept or set as on the API. Throws if the namespace does not exist.
   */
  put<T extends KubeObject = KubeObject>(res: ResourceRef, obj: T): T {
    const t = this.#find(res)
    const ns = t.ref.namespaced ? obj.metadata.namespace : undefined
    const name = obj.metadata.name
    if (name === undefined) throw new Error('put needs metadata.name')
    const body = clone(obj) as Obj
    body.apiVersion ??= apiVersionOf(t.ref)
    body.kind ??= t.ref.kind
    try {
      const out = this.#table(t).has(keyOf(t, ns, name))
        ? this.#update(t, ns, name, body, undefined, 'admin')
        : this.#create(t, ns, body, 'admin')
      return clone(out) as T
    } catch (err) {
      if (err instanceof ApiError) throw new Error(`fake-kube put: ${err.message}`)
      throw err
    }
  }

  /** Deletes an object; false if there was none. */
  remove(res: ResourceRef, namespace: string | undefined, name: string): boolean {
    const t = this.#find(res)
    if (!this.#table(t).has(keyOf(t, t.ref.namespaced ? namespace : undefined, name))) return false
    this.#delete(t, t.ref.namespaced ? namespace : undefined, name, undefined)
    return true
  }

  /** Forgets every retained watch event: a watch from any older resourceVersion now gets 410 Gone. */
  compact(): void {
    this.#floor = this.#rv
    this.#history = []
  }

  /** Cuts every open watch connection (as a dying API server or a proxy would); returns how many. */
  dropWatches(): number {
    const n = this.#watchers.size
    for (const w of [...this.#watchers]) {
      this.#unwatch(w)
      w.resp.socket?.destroy()
    }
    return n
  }

  /** Ends every open watch cleanly (the stream's last chunk), as the server does at a watch's timeout; returns how many. */
  endWatches(): number {
    const n = this.#watchers.size
    for (const w of [...this.#watchers]) {
      this.#unwatch(w)
      w.resp.end()
    }
    return n
  }

  /** Sends a BOOKMARK with the current resourceVersion to every watch that allows bookmarks. */
  bookmark(): void {
    for (const w of this.#watchers) if (w.bookmarks) this.#sendBookmark(w)
  }

  /** The next `times` requests matching `match` fail with this HTTP status (and a Status body). */
  failNext(match: FailMatch, status: number, opts: { reason?: string; message?: string; times?: number } = {}): void {
    this.#failures.push({
      match,
      status,
      reason: opts.reason ?? http.STATUS_CODES[status]?.replace(/\s/g, '') ?? 'Unknown',
      message: opts.message ?? `fake-kube: injected ${status}`,
      times: opts.times ?? 1
    })
  }

  /** Requests made with this verb (and resource plural, if given). */
  count(verb: FakeVerb, resource?: string): number {
    return this.requests.filter((r) => r.verb === verb && (resource === undefined || r.resource === resource)).length
  }

  async close(): Promise<void> {
    for (const w of [...this.#watchers]) {
      this.#unwatch(w)
      w.resp.socket?.destroy()
    }
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve())
      this.#server.closeAllConnections()
    })
  }

  // ---- HTTP ----

  async #handle(req: http.IncomingMessage, resp: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    const url = new URL(req.url ?? '/', 'http://fake')
    const query = Object.fromEntries(url.searchParams)
    const method = req.method ?? 'GET'
    const record: FakeRequest = { method, verb: 'other', query }
    this.requests.push(record)
    try {
      if (req.headers.authorization !== `Bearer ${this.token}`) throw new ApiError(401, 'Unauthorized', 'Unauthorized')
      const route = this.#route(url.pathname)
      const { res, namespace, name, sub } = route
      record.resource = res.ref.plural
      if (namespace !== undefined) record.namespace = namespace
      if (name !== undefined) record.name = name
      record.verb = verbOf(method, name, sub, query, (req.headers['content-type'] ?? '').split(';')[0]?.trim())
      this.#injectFailure(record)
      if (query.dryRun !== undefined) throw new ApiError(400, 'BadRequest', 'fake-kube: dryRun is not modelled')
      let body: unknown
      if (chunks.length > 0) {
        const text = Buffer.concat(chunks).toString('utf8')
        try {
          body = JSON.parse(text)
        } catch {
          throw new ApiError(400, 'BadRequest', 'the request body is not valid JSON')
        }
      }
      switch (record.verb) {
        case 'get': {
          if (res.ref.namespaced && namespace === undefined) throw NOT_SERVED()
          const o = this.#table(res).get(keyOf(res, namespace, name as string))
          if (o === undefined) throw notFound(res, name as string)
          this.#send(resp, 200, o)
          return
        }
        case 'list':
          this.#send(resp, 200, this.#list(res, namespace, query))
          return
        case 'watch':
          this.#watch(res, namespace, query, resp)
          return
        case 'create':
          if (res.ref.namespaced && namespace === undefined) throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
          this.#send(resp, 201, this.#create(res, namespace, requireObject(body), 'api'))
          return
        case 'update':
        case 'update-status':
          if (res.ref.namespaced && namespace === undefined) throw NOT_SERVED()
          this.#send(resp, 200, this.#update(res, namespace, name as string, requireObject(body), sub, 'api'))
          return
        case 'delete': {
          if (res.ref.namespaced && namespace === undefined) throw NOT_SERVED()
          const pre = (body as { preconditions?: { uid?: string; resourceVersion?: string } } | undefined)?.preconditions
          this.#send(resp, 200, this.#delete(res, namespace, name as string, pre))
          return
        }
        case 'apply': {
          if (res.ref.namespaced && namespace === undefined) throw NOT_SERVED()
          if ((query.fieldManager ?? '') === '') throw new ApiError(400, 'BadRequest', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch')
          const applied = requireObject(body)
          const key = keyOf(res, namespace, name as string)
          const cur = this.#table(res).get(key)
          if (cur === undefined) {
            const created = this.#create(res, namespace, { ...applied, metadata: { ...applied.metadata, name: name as string } }, 'api')
            this.#applied.set(`${created.metadata.uid ?? ''}/${query.fieldManager}`, clone(applied))
            this.#send(resp, 201, created)
          } else {
            const akey = `${cur.metadata.uid ?? ''}/${query.fieldManager}`
            const next = applyPatch(cur, this.#applied.get(akey), applied)
            const out = this.#update(res, namespace, name as string, next, undefined, 'api')
            this.#applied.set(akey, clone(applied))
            this.#send(resp, 200, out)
          }
          return
        }
        default:
          throw new ApiError(405, 'MethodNotAllowed', `fake-kube: ${method} on this path is not modelled`)
      }
    } catch (err) {
      if (!(err instanceof ApiError)) throw err
      this.#send(resp, err.status, err.toStatus())
    }
  }

  #route(pathname: string): { res: FakeResource; namespace?: string; name?: string; sub?: 'status' } {
    const segs = pathname.split('/').filter((s) => s !== '').map((s) => decodeURIComponent(s))
    let group: string
    let version: string
    let rest: string[]
    if (segs[0] === 'api' && segs.length >= 2) {
      group = ''
      version = segs[1] as string
      rest = segs.slice(2)
    } else if (segs[0] === 'apis' && segs.length >= 3) {
      group = segs[1] as string
      version = segs[2] as string
      rest = segs.slice(3)
    } else {
      throw NOT_SERVED()
    }
    let namespace: string | undefined
    // namespaces/{ns}/{plural}/… is a namespaced path, except the Namespace's own namespaces/{name}/status.
    if (rest[0] === 'namespaces' && rest.length >= 3 && !(group === '' && rest.length === 3 && rest[2] === 'status')) {
      namespace = rest[1]
      rest = rest.slice(2)
    }
    const [plural, name, sub, ...extra] = rest
    const res = this.#resources.find((r) => r.ref.group === group && r.ref.version === version && r.ref.plural === plural)
    if (res === undefined || extra.length > 0) throw NOT_SERVED()
    if (namespace !== undefined && !res.ref.namespaced) throw NOT_SERVED()
    if (sub !== undefined && (sub !== 'status' || !res.statusSubresource)) throw NOT_SERVED()
    const out: { res: FakeResource; namespace?: string; name?: string; sub?: 'status' } = { res }
    if (namespace !== undefined) out.namespace = namespace
    if (name !== undefined) out.name = name
    if (sub !== undefined) out.sub = 'status'
    return out
  }

  #injectFailure(record: FakeRequest): void {
    const i = this.#failures.findIndex((f) =>
      (f.match.verb === undefined || f.match.verb === record.verb) &&
      (f.match.resource === undefined || f.match.resource === record.resource))
    if (i < 0) return
    const f = this.#failures[i] as Failure
    if (--f.times <= 0) this.#failures.splice(i, 1)
    throw new ApiError(f.status, f.reason, f.message)
  }

  #send(resp: http.ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body)
    resp.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) })
    resp.end(text)
  }

  // ---- storage ----

  #find(ref: ResourceRef): FakeResource {
    const r = this.#resources.find((x) => x.ref.group === ref.group && x.ref.version === ref.version && x.ref.plural === ref.plural)
    if (r === undefined) throw new Error(`fake-kube does not serve ${qualifiedResource(ref)}/${ref.version}`)
    return r
  }

  #table(res: FakeResource): Map<string, Obj> {
    return this.#tables.get(res) as Map<string, Obj>
  }

  #list(res: FakeResource, namespace: string | undefined, query: Record<string, string>): unknown {
    const selector = selectorOf(query)
    const items = [...this.#table(res).values()]
      .filter((o) => (namespace === undefined || o.metadata.namespace === namespace) && matches(selector, o.metadata.labels))
      .sort((a, b) => keyOf(res, a.metadata.namespace, a.metadata.name ?? '').localeCompare(keyOf(res, b.metadata.namespace, b.metadata.name ?? '')))
      .map((o) => {
        if (!res.builtin) return o
        const { apiVersion: _a, kind: _k, ...rest } = o
        return rest
      })
    return { kind: `${res.ref.kind}List`, apiVersion: apiVersionOf(res.ref), metadata: { resourceVersion: String(this.#rv) }, items }
  }

  #create(res: FakeResource, namespace: string | undefined, body: Obj, mode: 'api' | 'admin'): Obj {
    checkTypeMeta(res, body)
    const meta = body.metadata
    if (res.ref.namespaced) {
      if (meta.namespace !== undefined && meta.namespace !== '' && namespace !== undefined && meta.namespace !== namespace) {
        throw new ApiError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request')
      }
      namespace ??= meta.namespace
      if (namespace === undefined || namespace === '') throw new ApiError(400, 'BadRequest', 'no namespace')
    } else {
      namespace = undefined
    }
    if (mode === 'api' && meta.resourceVersion !== undefined && meta.resourceVersion !== '') {
      throw new ApiError(500, 'InternalError', 'resourceVersion should not be set on objects to be created')
    }
    let name = meta.name
    if ((name === undefined || name === '') && meta.generateName !== undefined && meta.generateName !== '') {
      name = meta.generateName + randomSuffix()
    }
    if (name === undefined || name === '') throw invalid(res, '', 'metadata.name', 'Required value: name or generateName is required')
    validateName(res, name)
    const table = this.#table(res)
    if (namespace !== undefined && !this.#table(this.#find(RESOURCES.namespaces)).has(namespace)) {
      throw new ApiError(404, 'NotFound', `namespaces "${namespace}" not found`, { name: namespace, kind: 'namespaces' })
    }
    const key = keyOf(res, namespace, name)
    if (table.has(key)) {
      throw new ApiError(409, 'AlreadyExists', `${qualifiedResource(res.ref)} "${name}" already exists`, detailsOf(res, name))
    }
    const obj = clone(body)
    obj.apiVersion = apiVersionOf(res.ref)
    obj.kind = res.ref.kind
    const m: Record<string, unknown> = { ...obj.metadata }
    for (const k of ['resourceVersion', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'managedFields', 'selfLink']) delete m[k]
    m.name = name
    if (namespace !== undefined) m.namespace = namespace
    else delete m.namespace
    if (mode === 'api' || m.uid === undefined) m.uid = randomUUID()
    m.creationTimestamp = timestamp()
    if (res.generation) m.generation = 1
    else delete m.generation
    obj.metadata = m
    if (res.statusSubresource && mode === 'api') delete obj.status
    if (isNamespaces(res)) defaultNamespace(obj, name)
    validateMeta(res, obj)
    if (res.ref === RESOURCES.services) defaultService(obj, undefined, () => this.#allocateServiceIp())
    if (mode === 'api') this.#validate(res, obj, undefined)
    this.#commit(res, 'ADDED', namespace, key, obj, undefined)
    return obj
  }

  #update(res: FakeResource, namespace: string | undefined, name: string, body: Obj, sub: 'status' | undefined, mode: 'api' | 'admin'): Obj {
    checkTypeMeta(res, body)
    const meta = body.metadata
    if ((meta.name ?? '') !== name) {
      throw new ApiError(400, 'BadRequest', `the name of the object (${meta.name ?? ''}) does not match the name on the URL (${name})`)
    }
    if (res.ref.namespaced && meta.namespace !== undefined && meta.namespace !== '' && meta.namespace !== namespace) {
      throw new ApiError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request')
    }
    const key = keyOf(res, namespace, name)
    const old = this.#table(res).get(key)
    if (old === undefined) throw notFound(res, name)
    if (mode === 'api') {
      const rv = meta.resourceVersion
      if (rv === undefined || rv === '') {
        if (!res.unconditionalUpdate) throw invalid(res, name, 'metadata.resourceVersion', 'Invalid value: 0x0: must be specified for an update')
      } else if (rv !== old.metadata.resourceVersion) {
        throw conflict(res, name)
      }
      if (meta.uid !== undefined && meta.uid !== '' && meta.uid !== old.metadata.uid) {
        throw new ApiError(409, 'Conflict', `Precondition failed: UID in precondition: ${meta.uid}, UID in object meta: ${old.metadata.uid ?? ''}`, detailsOf(res, name))
      }
    }
    let next: Obj
    if (sub === 'status') {
      next = clone(old)
      if ('status' in body) next.status = clone(body.status)
      else delete next.status
      if (mode === 'api') this.#validate(res, next, old)
    } else {
      next = clone(body)
      next.apiVersion = apiVersionOf(res.ref)
      next.kind = res.ref.kind
      const m: Record<string, unknown> = { ...next.metadata }
      for (const k of ['resourceVersion', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'managedFields', 'selfLink', 'generateName']) delete m[k]
      m.name = old.metadata.name
      if (namespace !== undefined) m.namespace = namespace
      else delete m.namespace
      m.uid = old.metadata.uid
      m.creationTimestamp = old.metadata.creationTimestamp
      if (old.metadata.generateName !== undefined) m.generateName = old.metadata.generateName
      if (res.generation) m.generation = old.metadata.generation
      else delete m.generation
      if (old.metadata.deletionTimestamp !== undefined) {
        m.deletionTimestamp = old.metadata.deletionTimestamp
        m.deletionGracePeriodSeconds = 0
        const added = ((m.finalizers as string[] | undefined) ?? []).filter((f) => !(old.metadata.finalizers ?? []).includes(f))
        if (added.length > 0) throw invalid(res, name, 'metadata.finalizers', `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}`)
      }
      next.metadata = m
      if (res.statusSubresource && mode === 'api') {
        if ('status' in old) next.status = clone(old.status)
        else delete next.status
      }
      if (isNamespaces(res)) defaultNamespace(next, name)
      validateMeta(res, next)
      if (res.ref === RESOURCES.services) defaultService(next, old, () => this.#allocateServiceIp())
      if (mode === 'api') this.#validate(res, next, old)
      if (res.generation && canon(withoutMetaAndStatus(next)) !== canon(withoutMetaAndStatus(old))) {
        next.metadata.generation = (old.metadata.generation ?? 0) + 1
      }
    }
    next.metadata.resourceVersion = old.metadata.resourceVersion
    if (next.metadata.deletionTimestamp !== undefined && (next.metadata.finalizers ?? []).length === 0) {
      // The last finalizer went: the object is deleted now.
      this.#delete(res, namespace, name, undefined, true)
      return next
    }
    // A write that changes nothing is a no-op: same resourceVersion, no watch event.
    if (canon(next) === canon(old)) return old
    this.#commit(res, 'MODIFIED', namespace, key, next, old)
    return next
  }

  /** The validation the real API server does on this object (see fake-kube/validate.ts). */
  #validate(res: FakeResource, o: Obj, old: Obj | undefined): void {
    const ref = res.ref
    const found: Violation[] = ref === RESOURCES.endpointSlices ? validateEndpointSlice(o, old)
      : ref === RESOURCES.services ? validateService(o, old, { contains: (ip) => { try { const p = parseIp(ip); return cidrContains(this.#serviceCidr, p.family, p.value) } catch { return false } }, text: this.#serviceCidr.text })
        : ref === RESOURCES.serviceImports ? validateServiceImport(o)
          : ref === RESOURCES.serviceExports ? validateServiceExport(o)
            : ref === RESOURCES.events ? validateEvent(o)
              : ref === MANIFEST_RESOURCES.customResourceDefinitions ? validateCrd(o)
                : ref === MANIFEST_RESOURCES.deployments ? validateDeployment(o)
                  : ref === MANIFEST_RESOURCES.clusterRoles || ref === MANIFEST_RESOURCES.clusterRoleBindings || ref === MANIFEST_RESOURCES.roles || ref === MANIFEST_RESOURCES.roleBindings ? validateRbac(ref.kind, o)
                    : ref === MANIFEST_RESOURCES.pods ? validatePod(o)
                      : ref === ENTANGLE_RESOURCES.mutatingWebhookConfigurations ? validateMutatingWebhookConfiguration(o)
                        : !res.builtin ? this.#validateCustom(res, o)
                          : []
    if (found.length > 0) throw invalidAll(res, o.metadata.name ?? '', found)
  }

  /**
   * A custom resource against the schema of its CRD, when the CRD is stored here (tests apply
   * deploy/crds/ first); unknown fields are pruned as the apiextensions server does.
   */
  #validateCustom(res: FakeResource, o: Obj): Violation[] {
    const crd = this.#table(this.#find(MANIFEST_RESOURCES.customResourceDefinitions)).get(`${res.ref.plural}.${res.ref.group}`)
    const schema = crd === undefined ? undefined : crdSchema(crd, res.ref.version)
    if (schema === undefined) return []
    const out: Violation[] = []
    const rec = o as Record<string, unknown>
    for (const k of Object.keys(rec)) {
      if (k === 'apiVersion' || k === 'kind' || k === 'metadata') continue
      const sub = schema.properties?.[k]
      if (sub === undefined) {
        if (schema['x-kubernetes-preserve-unknown-fields'] !== true) delete rec[k]
        continue
      }
      validateSchema(rec[k], sub, k, out)
    }
    for (const r of schema.required ?? []) if (rec[r] === undefined) out.push({ field: r, message: 'Required value' })
    return out
  }

  /** The next free cluster IP of the Service CIDR (the real allocator picks at random; this one counts up). */
  #allocateServiceIp(): string {
    const used = new Set([...this.#table(this.#find(RESOURCES.services)).values()].map((s) => (s.spec as { clusterIP?: string } | undefined)?.clusterIP))
    const size = 1n << BigInt((this.#serviceCidr.family === 4 ? 32 : 128) - this.#serviceCidr.prefix)
    for (let i = 0n; i < size; i++) {
      const n = this.#nextServiceIp
      this.#nextServiceIp = n + 1n >= size - 1n ? 1n : n + 1n
      const ip = formatIp(this.#serviceCidr.family, this.#serviceCidr.base + n)
      if (!used.has(ip)) return ip
    }
    throw new ApiError(500, 'InternalError', `failed to allocate a serviceIP: range is full`)
  }

  #delete(res: FakeResource, namespace: string | undefined, name: string, pre: { uid?: string; resourceVersion?: string } | undefined, force = false): KubeStatus | Obj {
    const key = keyOf(res, namespace, name)
    const old = this.#table(res).get(key)
    if (old === undefined) throw notFound(res, name)
    if (pre?.uid !== undefined && pre.uid !== old.metadata.uid) {
      throw new ApiError(409, 'Conflict', `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${old.metadata.uid ?? ''}`, detailsOf(res, name))
    }
    if (pre?.resourceVersion !== undefined && pre.resourceVersion !== old.metadata.resourceVersion) {
      throw new ApiError(409, 'Conflict',
        `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${old.metadata.resourceVersion ?? ''}`,
        detailsOf(res, name))
    }
    if (!force && !isNamespaces(res) && (old.metadata.finalizers ?? []).length > 0) {
      // Graceful deletion: the object stays, marked, until its finalizers are removed (an
      // update that empties them deletes it). The answer is the object, as the real server's.
      if (old.metadata.deletionTimestamp !== undefined) return old
      const marked = clone(old)
      marked.metadata.deletionTimestamp = timestamp()
      marked.metadata.deletionGracePeriodSeconds = 0
      if (res.generation) marked.metadata.generation = (old.metadata.generation ?? 0) + 1
      this.#commit(res, 'MODIFIED', namespace, key, marked, old)
      return marked
    }
    for (const k of this.#applied.keys()) if (k.startsWith(`${old.metadata.uid ?? ''}/`)) this.#applied.delete(k)
    if (isNamespaces(res)) {
      // No Terminating phase: the namespace's objects go at once, then the namespace.
      for (const r of this.#resources) {
        if (!r.ref.namespaced) continue
        for (const o of [...this.#table(r).values()]) {
          if (o.metadata.namespace === name) this.#delete(r, name, o.metadata.name as string, undefined, true)
        }
      }
    }
    const last = clone(old)
    this.#commit(res, 'DELETED', namespace, key, last, old)
    return {
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Success',
      details: { name, ...(res.ref.group === '' ? {} : { group: res.ref.group }), kind: res.ref.plural, ...(old.metadata.uid === undefined ? {} : { uid: old.metadata.uid }) }
    }
  }

  #commit(res: FakeResource, type: EventType, namespace: string | undefined, key: string, obj: Obj, prev: Obj | undefined): void {
    const rv = ++this.#rv
    obj.metadata.resourceVersion = String(rv)
    const table = this.#table(res)
    if (type === 'DELETED') table.delete(key)
    else table.set(key, obj)
    const ev: HistoryEvent = { rv, res, type, namespace, obj }
    if (type === 'MODIFIED' && prev !== undefined) ev.prev = prev
    this.#history.push(ev)
    const limit = this.#opts.historyLimit ?? 1000
    while (this.#history.length > limit) {
      const dropped = this.#history.shift() as HistoryEvent
      this.#floor = dropped.rv
    }
    for (const w of this.#watchers) this.#deliver(w, ev)
  }

  // ---- watch ----

  #watch(res: FakeResource, namespace: string | undefined, query: Record<string, string>, resp: http.ServerResponse): void {
    const selector = selectorOf(query)
    const rvParam = query.resourceVersion
    let from: number | undefined
    if (rvParam !== undefined && rvParam !== '' && rvParam !== '0') {
      if (!/^\d+$/.test(rvParam)) throw new ApiError(400, 'BadRequest', `invalid resource version "${rvParam}"`)
      from = Number(rvParam)
      if (from < this.#floor) {
        const gone = new ApiError(410, 'Expired', `too old resource version: ${from} (${this.#floor + 1})`)
        if (this.#opts.goneAs === 'status') {
          this.#send(resp, 410, gone.toStatus())
        } else {
          resp.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' })
          resp.end(JSON.stringify({ type: 'ERROR', object: gone.toStatus() }) + '\n')
        }
        return
      }
    }
    resp.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' })
    resp.flushHeaders()
    const w: Watcher = { res, namespace, selector, bookmarks: query.allowWatchBookmarks === 'true', resp, timers: [] }
    if (from === undefined) {
      // No resourceVersion (or 0): the current state as ADDED events, then the changes.
      for (const o of this.objects(res.ref, namespace)) {
        if (matches(selector, o.metadata.labels)) write(resp, 'ADDED', o)
      }
    } else {
      for (const ev of this.#history) if (ev.rv > from) this.#deliver(w, ev)
    }
    this.#watchers.add(w)
    const timeout = Number(query.timeoutSeconds ?? '0')
    if (timeout > 0) {
      w.timers.push(setTimeout(() => {
        this.#unwatch(w)
        resp.end()
      }, timeout * 1000))
    }
    const every = this.#opts.bookmarkIntervalMs ?? 0
    if (w.bookmarks && every > 0) w.timers.push(setInterval(() => this.#sendBookmark(w), every))
    resp.on('close', () => this.#unwatch(w))
  }

  #unwatch(w: Watcher): void {
    for (const t of w.timers) clearTimeout(t)
    w.timers = []
    this.#watchers.delete(w)
  }

  #deliver(w: Watcher, ev: HistoryEvent): void {
    if (ev.res !== w.res) return
    if (w.namespace !== undefined && ev.namespace !== w.namespace) return
    const now = matches(w.selector, ev.obj.metadata.labels)
    if (ev.type === 'ADDED') {
      if (now) write(w.resp, 'ADDED', ev.obj)
    } else if (ev.type === 'DELETED') {
      if (now) write(w.resp, 'DELETED', ev.obj)
    } else {
      const before = ev.prev !== undefined && matches(w.selector, ev.prev.metadata.labels)
      if (now && before) write(w.resp, 'MODIFIED', ev.obj)
      else if (now) write(w.resp, 'ADDED', ev.obj)
      else if (before) {
        // The object left the selection: DELETED, with its previous state at the new version.
        const gone = clone(ev.prev as Obj)
        gone.metadata.resourceVersion = String(ev.rv)
        write(w.resp, 'DELETED', gone)
      }
    }
  }

  #sendBookmark(w: Watcher): void {
    write(w.resp, 'BOOKMARK', { apiVersion: apiVersionOf(w.res.ref), kind: w.res.ref.kind, metadata: { resourceVersion: String(this.#rv) } })
  }
}

// ---- helpers ----

function write(resp: http.ServerResponse, type: string, object: unknown): void {
  if (!resp.writableEnded && !resp.destroyed) resp.write(JSON.stringify({ type, object }) + '\n')
}

function verbOf(method: string, name: string | undefined, sub: string | undefined, query: Record<string, string>, contentType = ''): FakeVerb {
  switch (method) {
    case 'GET':
      if (name !== undefined) return sub === undefined ? 'get' : 'other'
      return query.watch === 'true' || query.watch === '1' ? 'watch' : 'list'
    case 'POST': return name === undefined ? 'create' : 'other'
    case 'PUT': return name === undefined ? 'other' : sub === 'status' ? 'update-status' : 'update'
    case 'DELETE': return name !== undefined && sub === undefined ? 'delete' : 'other'
    case 'PATCH': return name !== undefined && sub === undefined && contentType === 'application/apply-patch+yaml' ? 'apply' : 'other'
    default: return 'other'
  }
}

function selectorOf(query: Record<string, string>): Requirement[] {
  if (query.fieldSelector !== undefined && query.fieldSelector !== '') {
    throw new ApiError(400, 'BadRequest', 'fake-kube: fieldSelector is not modelled')
  }
  try {
    return parseSelector(query.labelSelector ?? '')
  } catch (err) {
    if (err instanceof SelectorError) throw new ApiError(400, 'BadRequest', err.message)
    throw err
  }
}

function isNamespaces(res: FakeResource): boolean {
  return res.ref.group === '' && res.ref.plural === 'namespaces'
}

function keyOf(res: FakeResource, namespace: string | undefined, name: string): string {
  return res.ref.namespaced ? `${namespace ?? ''}/${name}` : name
}

function detailsOf(res: FakeResource, name: string): KubeStatus['details'] {
  return { name, ...(res.ref.group === '' ? {} : { group: res.ref.group }), kind: res.ref.plural }
}

function notFound(res: FakeResource, name: string): ApiError {
  return new ApiError(404, 'NotFound', `${qualifiedResource(res.ref)} "${name}" not found`, detailsOf(res, name))
}

function conflict(res: FakeResource, name: string): ApiError {
  return new ApiError(409, 'Conflict',
    `Operation cannot be fulfilled on ${qualifiedResource(res.ref)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    detailsOf(res, name))
}

function invalid(res: FakeResource, name: string, field: string, what: string): ApiError {
  const kind = res.ref.group === '' ? res.ref.kind : `${res.ref.kind}.${res.ref.group}`
  return new ApiError(422, 'Invalid', `${kind} "${name}" is invalid: ${field}: ${what}`, {
    name,
    ...(res.ref.group === '' ? {} : { group: res.ref.group }),
    kind: res.ref.kind,
    causes: [{ reason: 'FieldValueInvalid', message: what, field }]
  })
}

function invalidAll(res: FakeResource, name: string, found: readonly Violation[]): ApiError {
  const kind = res.ref.group === '' ? res.ref.kind : `${res.ref.kind}.${res.ref.group}`
  const text = found.map((v) => `${v.field}: ${v.message}`)
  const message = `${kind} "${name}" is invalid: ${text.length === 1 ? text[0] as string : `[${text.join(', ')}]`}`
  return new ApiError(422, 'Invalid', message, {
    name,
    ...(res.ref.group === '' ? {} : { group: res.ref.group }),
    kind: res.ref.kind,
    causes: found.map((v) => ({ reason: 'FieldValueInvalid', message: v.message, field: v.field }))
  })
}

function requireObject(body: unknown): Obj {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'BadRequest', 'the request needs a JSON object body')
  const o = body as Obj
  if (typeof o.metadata !== 'object' || o.metadata === null) o.metadata = {}
  return o
}

function checkTypeMeta(res: FakeResource, body: Obj): void {
  const want = apiVersionOf(res.ref)
  if (!res.builtin && (body.kind === undefined || body.kind === '')) {
    throw new ApiError(400, 'BadRequest', `Object 'Kind' is missing in '${JSON.stringify(body)}'`)
  }
  if ((body.apiVersion !== undefined && body.apiVersion !== want) || (body.kind !== undefined && body.kind !== res.ref.kind)) {
    throw new ApiError(400, 'BadRequest',
      `the API version in the data (${body.apiVersion ?? ''}) / kind (${body.kind ?? ''}) does not match the expected ${want} ${res.ref.kind}`)
  }
}

function validateName(res: FakeResource, name: string): void {
  const ok = res.nameRule === 'dns1035' ? isDns1035Label(name)
    : res.nameRule === 'dns1123-label' ? isDns1123Label(name)
      : isDns1123Subdomain(name)
  if (!ok) {
    const rule = res.nameRule === 'dns1035' ? 'a DNS-1035 label' : res.nameRule === 'dns1123-label' ? 'a lowercase RFC 1123 label' : 'a lowercase RFC 1123 subdomain'
    throw invalid(res, name, 'metadata.name', `Invalid value: "${name}": must be ${rule}`)
  }
}

function validateMeta(res: FakeResource, obj: Obj): void {
  const name = obj.metadata.name ?? ''
  for (const [k, v] of Object.entries(obj.metadata.labels ?? {})) {
    if (!isQualifiedName(k)) throw invalid(res, name, 'metadata.labels', `Invalid value: "${k}": name part must consist of alphanumeric characters, '-', '_' or '.'`)
    if (typeof v !== 'string' || !isLabelValue(v)) throw invalid(res, name, 'metadata.labels', `Invalid value: "${String(v)}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'`)
  }
  for (const k of Object.keys(obj.metadata.annotations ?? {})) {
    if (!isQualifiedName(k)) throw invalid(res, name, 'metadata.annotations', `Invalid value: "${k}": name part must consist of alphanumeric characters, '-', '_' or '.'`)
  }
}

function defaultNamespace(obj: Obj, name: string): void {
  obj.metadata.labels = { ...(obj.metadata.labels ?? {}), 'kubernetes.io/metadata.name': name }
  const spec = (obj.spec ?? {}) as { finalizers?: string[] }
  obj.spec = { ...spec, finalizers: spec.finalizers ?? ['kubernetes'] }
  const status = (obj.status ?? {}) as { phase?: string }
  obj.status = { ...status, phase: status.phase ?? 'Active' }
}

function withoutMetaAndStatus(o: Obj): Record<string, unknown> {
  const { metadata: _m, status: _s, ...rest } = o
  return rest
}

function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T)
}

/** JSON with sorted keys, for equality. */
function canon(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) => {
    if (val === null || typeof val !== 'object' || Array.isArray(val)) return val
    return Object.fromEntries(Object.entries(val as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  })
}

function timestamp(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
}

function randomSuffix(): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789'
  let s = ''
  for (const b of randomBytes(5)) s += alphabet[b % alphabet.length]
  return s
}

/** Polls until check() returns a value other than undefined/false, or throws after timeoutMs (with the last error). */
export async function eventually<T>(check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await check()
      if (v !== undefined && v !== false) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`)
    }
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** The fake's kubeconfig (its CA and bearer token) with the server moved to `listen` (a proxy). */
export function kubeconfigVia (fake: FakeKube, listen: string): KubeConfig {
  const doc = YAML.parse(fake.kubeconfigYaml()) as { clusters: Array<{ cluster: Record<string, unknown> }> }
  for (const c of doc.clusters) c.cluster.server = `https://${listen}`
  const kc = new KubeConfig()
  kc.loadFromString(YAML.stringify(doc))
  return kc
}
