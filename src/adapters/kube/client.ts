/**
 * The small Kubernetes API surface the rest of Weft uses. One implementation talks to a real
 * API server (`http-client.ts`); tests run it against the in-process fake API server in
 * `test/support/fake-kube.ts`, so the same code is what gets tested.
 *
 * Objects travel as plain JSON, exactly as the API server sends them (timestamps are RFC 3339
 * strings, not Dates). Every object this module returns carries `apiVersion` and `kind`, even
 * where the API server leaves them out (items of built-in lists).
 */

// ---- resources ----

/** One REST resource: where it lives and how it is scoped. */
export interface ResourceRef {
  /** API group; '' for the core group (`/api/v1`). */
  readonly group: string
  readonly version: string
  /** Lower-case plural used in URLs, e.g. `services`. */
  readonly plural: string
  readonly kind: string
  /** Namespaced resources live under `/namespaces/{ns}/`; cluster-scoped ones do not. */
  readonly namespaced: boolean
}

export const RESOURCES = {
  services: { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true },
  namespaces: { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  configMaps: { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true },
  events: { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true },
  endpointSlices: {
    group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true
  },
  serviceExports: {
    group: 'multicluster.x-k8s.io', version: 'v1beta1', plural: 'serviceexports', kind: 'ServiceExport', namespaced: true
  },
  serviceImports: {
    group: 'multicluster.x-k8s.io', version: 'v1beta1', plural: 'serviceimports', kind: 'ServiceImport', namespaced: true
  },
  clusterProperties: {
    group: 'about.k8s.io', version: 'v1alpha1', plural: 'clusterproperties', kind: 'ClusterProperty', namespaced: false
  }
} as const satisfies Record<string, ResourceRef>

export function apiVersionOf(res: ResourceRef): string {
  return res.group === '' ? res.version : `${res.group}/${res.version}`
}

/** `services` or `serviceexports.multicluster.x-k8s.io`: how the API server names a resource in messages. */
export function qualifiedResource(res: ResourceRef): string {
  return res.group === '' ? res.plural : `${res.plural}.${res.group}`
}

/**
 * The REST path of a collection (no name) or an object. A namespaced resource with no namespace
 * gives the all-namespaces collection, which only list and watch accept.
 */
export function resourcePath(res: ResourceRef, namespace: string | undefined, name?: string, subresource?: 'status'): string {
  if (!res.namespaced && namespace !== undefined) {
    throw new TypeError(`${qualifiedResource(res)} is cluster-scoped: no namespace may be given (got ${JSON.stringify(namespace)})`)
  }
  if (subresource !== undefined && name === undefined) throw new TypeError('a subresource needs an object name')
  let path = res.group === '' ? `/api/${res.version}` : `/apis/${res.group}/${res.version}`
  if (res.namespaced && namespace !== undefined) {
    if (namespace === '') throw new TypeError('namespace must not be empty')
    path += `/namespaces/${encodeURIComponent(namespace)}`
  }
  path += `/${res.plural}`
  if (name !== undefined) {
    if (name === '') throw new TypeError('name must not be empty')
    path += `/${encodeURIComponent(name)}`
  }
  if (subresource !== undefined) path += `/${subresource}`
  return path
}

// ---- objects ----

export interface OwnerReference {
  apiVersion: string
  kind: string
  name: string
  uid: string
  controller?: boolean
  blockOwnerDeletion?: boolean
}

export interface ObjectMeta {
  name?: string
  generateName?: string
  namespace?: string
  uid?: string
  resourceVersion?: string
  generation?: number
  creationTimestamp?: string
  deletionTimestamp?: string
  deletionGracePeriodSeconds?: number
  labels?: Record<string, string>
  annotations?: Record<string, string>
  ownerReferences?: OwnerReference[]
  finalizers?: string[]
}

export interface KubeObject {
  apiVersion?: string
  kind?: string
  metadata: ObjectMeta
}

export interface KubeList<T> {
  items: T[]
  /** The list's resourceVersion: start a watch here to see every later change. */
  resourceVersion: string
}

/** The API server's `Status` object (errors, and watch ERROR events). */
export interface KubeStatus {
  kind?: 'Status'
  apiVersion?: string
  status?: 'Success' | 'Failure'
  message?: string
  reason?: string
  code?: number
  details?: {
    name?: string
    group?: string
    kind?: string
    uid?: string
    causes?: { reason?: string; message?: string; field?: string }[]
    retryAfterSeconds?: number
  }
}

/** `namespace/name`, or `name` for cluster-scoped objects: the key informers and the fake use. */
export function objectKey(obj: KubeObject): string {
  const ns = obj.metadata.namespace
  return ns === undefined || ns === '' ? (obj.metadata.name ?? '') : `${ns}/${obj.metadata.name ?? ''}`
}

// ---- errors ----

export type KubeErrorCode =
  | 'NotFound' // 404
  | 'AlreadyExists' // 409, reason AlreadyExists
  | 'Conflict' // 409 otherwise: a stale resourceVersion or a failed precondition
  | 'Gone' // 410: the resourceVersion is older than the server keeps (relist)
  | 'Forbidden' // 403: RBAC
  | 'Unauthorized' // 401: no or bad credentials
  | 'Invalid' // 422: the object failed validation
  | 'BadRequest' // 400, 405, 415: a malformed request
  | 'Unavailable' // 429, 5xx, timeouts and network errors: try again later
  | 'Unknown' // anything else

export class KubeError extends Error {
  override readonly name = 'KubeError'
  readonly code: KubeErrorCode
  /** HTTP status; 0 when no HTTP answer came (network error, timeout). */
  readonly status: number
  /** The `reason` of the server's Status object, when it sent one. */
  readonly reason: string | undefined
  readonly details: KubeStatus['details'] | undefined

  constructor(code: KubeErrorCode, status: number, message: string, opts: { reason?: string; details?: KubeStatus['details']; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.code = code
    this.status = status
    this.reason = opts.reason
    this.details = opts.details
  }

  /** True for errors a later retry of the same request may not get. */
  get retryable(): boolean {
    return this.code === 'Unavailable'
  }

  /** The error for an HTTP status and, if the server sent one, its Status body. */
  static fromStatus(status: number, body?: unknown, context?: string): KubeError {
    const st = isStatusObject(body) ? body : undefined
    const reason = st?.reason
    const message = st?.message ?? `HTTP ${status}`
    const opts: { reason?: string; details?: KubeStatus['details'] } = {}
    if (reason !== undefined) opts.reason = reason
    if (st?.details !== undefined) opts.details = st.details
    return new KubeError(codeForStatus(status, reason), status, context === undefined ? message : `${context}: ${message}`, opts)
  }
}

export function codeForStatus(status: number, reason?: string): KubeErrorCode {
  switch (status) {
    case 404: return 'NotFound'
    case 409: return reason === 'AlreadyExists' ? 'AlreadyExists' : 'Conflict'
    case 410: return 'Gone'
    case 403: return 'Forbidden'
    case 401: return 'Unauthorized'
    case 422: return 'Invalid'
    case 400: case 405: case 406: case 415: return 'BadRequest'
    case 429: return 'Unavailable'
    default: return status >= 500 && status <= 599 ? 'Unavailable' : 'Unknown'
  }
}

export function isKubeError(err: unknown, code?: KubeErrorCode): err is KubeError {
  return err instanceof KubeError && (code === undefined || err.code === code)
}

function isStatusObject(body: unknown): body is KubeStatus {
  return typeof body === 'object' && body !== null && (body as { kind?: unknown }).kind === 'Status'
}

// ---- the client ----

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK'

export interface ListOptions {
  /** The real label selector syntax: `a=b,c!=d,e in (f,g),h notin (i),j,!k`. */
  labelSelector?: string
}

export interface WatchOptions extends ListOptions {
  /** Deliver the changes after this version (a list's resourceVersion, or the last one seen). */
  resourceVersion: string
  /** Ends the watch: the promise then resolves. */
  signal: AbortSignal
  /** Ask for BOOKMARK events (objects with only metadata.resourceVersion). Default true. */
  allowWatchBookmarks?: boolean
  /** Ask the server to end the watch after this many seconds. */
  timeoutSeconds?: number
}

export interface DeleteOptions {
  /** Delete only if the object still has this uid / resourceVersion (else KubeError 'Conflict'). */
  preconditions?: { uid?: string; resourceVersion?: string }
}

export interface KubeClient {
  /** The object, or undefined on 404 (which is also what a resource the server does not serve gives). */
  get<T extends KubeObject = KubeObject>(res: ResourceRef, namespace: string | undefined, name: string): Promise<T | undefined>
  /** Every object (in one namespace, or all when namespace is undefined), and the list's resourceVersion. */
  list<T extends KubeObject = KubeObject>(res: ResourceRef, namespace?: string, opts?: ListOptions): Promise<KubeList<T>>
  /**
   * Streams changes after opts.resourceVersion, in order. Resolves when the server ends the
   * stream or opts.signal aborts; rejects with a KubeError ('Gone' when the resourceVersion is
   * older than the server keeps: list again; 'Unavailable' when the connection failed), or
   * with what onEvent threw (which also ends the watch).
   */
  watch<T extends KubeObject = KubeObject>(
    res: ResourceRef,
    namespace: string | undefined,
    opts: WatchOptions,
    onEvent: (type: WatchEventType, obj: T) => void
  ): Promise<void>
  /** KubeError 'AlreadyExists' when the name is taken; 'NotFound' when the namespace does not exist. */
  create<T extends KubeObject = KubeObject>(res: ResourceRef, namespace: string | undefined, obj: T): Promise<T>
  /**
   * PUT the whole object (status is ignored where the resource has a status subresource).
   * KubeError 'Conflict' when metadata.resourceVersion is stale; 'NotFound' when it is gone.
   */
  replace<T extends KubeObject = KubeObject>(res: ResourceRef, namespace: string | undefined, obj: T): Promise<T>
  /** PUT the status subresource: only .status changes. Same resourceVersion rule as replace. */
  replaceStatus<T extends KubeObject = KubeObject>(res: ResourceRef, namespace: string | undefined, obj: T): Promise<T>
  /** True if it deleted the object, false if there was none (404). */
  delete(res: ResourceRef, namespace: string | undefined, name: string, opts?: DeleteOptions): Promise<boolean>
}

// ---- cluster identity (KEP-2149) ----

/** The well-known ClusterProperty that names this cluster (KEP-2149). */
export const CLUSTER_ID_PROPERTY = 'cluster.clusterset.k8s.io'
/** The well-known ClusterProperty that names the ClusterSet this cluster belongs to. */
export const CLUSTERSET_PROPERTY = 'clusterset.k8s.io'

export interface ClusterProperty extends KubeObject {
  spec: { value: string }
}

/**
 * This cluster's id: the value of the `cluster.clusterset.k8s.io` ClusterProperty when there is
 * one (a missing ClusterProperty CRD counts as none), else the uid of the kube-system namespace,
 * which KEP-2149 suggests as a stable default. A Forbidden answer is an error, not "none": with
 * missing RBAC the agent would otherwise pick a different id than the one the cluster declares.
 */
export async function clusterId(client: KubeClient): Promise<string> {
  const prop = await client.get<ClusterProperty>(RESOURCES.clusterProperties, undefined, CLUSTER_ID_PROPERTY)
  const value = prop?.spec?.value
  if (typeof value === 'string' && value !== '') return value
  const ns = await client.get(RESOURCES.namespaces, undefined, 'kube-system')
  const uid = ns?.metadata.uid
  if (uid === undefined || uid === '') {
    throw new KubeError('NotFound', 404, 'no cluster.clusterset.k8s.io ClusterProperty and no kube-system namespace uid: cannot tell the cluster id')
  }
  return uid
}
