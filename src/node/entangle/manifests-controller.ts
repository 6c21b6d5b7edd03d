import { KubeConfig } from '@kubernetes/client-node'
import type { KubeClient } from '../../adapters/kube/client.js'
import { HttpKubeClient } from '../../adapters/kube/http-client.js'
import { startInformer, type Informer } from '../../adapters/kube/informer.js'
import type { MeshLogger } from '../../net/mesh-logger.js'
import { formatHostPort, type HostPort } from '../service-registry.js'
import { manifestResource } from './manifest-kinds.js'
import { ReconcileLoop, syncedOrAborted } from './reconcile-loop.js'
import { ENTANGLE_RESOURCES, MANIFESTS_FINALIZER, secretValue, type ManifestObject, type ManifestResult, type Manifests, type Secret } from './resources.js'
import { writeStatus } from './status.js'

/**
 * The Manifests controller (entangle-proxy's feature, docs/entangle.md): in a control cluster,
 * each Manifests object names a target Weft cluster and holds objects; the agent applies them to
 * the target's API server over the mesh (a local tunnel listener to the target's
 * `--share-kube-api`, which lets only its `--allow` peers through) with server-side apply, field
 * manager `weft`, and the credentials of a kubeconfig in a Secret (the target's ServiceAccount,
 * whose Role limits what may be applied). Per-object results go into status; objects that leave
 * the spec are deleted in the target; the finalizer `weft.io/manifests` makes a deletion wait
 * until what was applied is deleted.
 */

export const FIELD_MANAGER = 'weft'

/** A local listener carrying connections to a cluster's shared API (KubeProxies). */
export interface TargetTunnel {
  listen: HostPort
  /** The last tunnel error (a refusal says why). */
  lastError: () => string | undefined
}

export interface ManifestsControllerOptions {
  kube: KubeClient
  /** Open (or return) the tunnel listener to `cluster`'s shared Kubernetes API. */
  connect: (cluster: string) => Promise<TargetTunnel>
  log: MeshLogger
  now: () => number
  resyncMs?: number
  retryMs?: number
  /** Per-request limit against a target. Default 15 s. */
  requestTimeoutMs?: number
}

type Report = (status: 'True' | 'False', reason: string, message: string, objects?: ManifestResult[]) => Promise<void>

export class ManifestsController {
  readonly #o: ManifestsControllerOptions
  readonly #abort = new AbortController()
  readonly #loop: ReconcileLoop
  #informer: Informer<Manifests> | undefined
  readonly #ready = new Map<string, string>()
  /** `ns/name` → the generation last applied in full and when: not re-applied before the resync. */
  readonly #applied = new Map<string, { generation: number, at: number }>()

  constructor (opts: ManifestsControllerOptions) {
    this.#o = opts
    this.#loop = new ReconcileLoop({ kube: opts.kube, log: opts.log, now: opts.now, component: 'weft-manifests', ...(opts.resyncMs !== undefined ? { resyncMs: opts.resyncMs } : {}), ...(opts.retryMs !== undefined ? { retryMs: opts.retryMs } : {}) }, async () => { await this.#pass() })
  }

  async start (signal?: AbortSignal): Promise<void> {
    signal?.addEventListener('abort', () => { void this.stop() }, { once: true })
    this.#informer = startInformer<Manifests>({
      client: this.#o.kube,
      resource: ENTANGLE_RESOURCES.manifests,
      signal: this.#abort.signal,
      onChange: () => { this.update() },
      onError: (err, phase) => { this.#o.log.warn({ phase, err: (err as Error).message }, 'manifests informer error') }
    })
    await syncedOrAborted([this.#informer.synced], this.#abort.signal)
    if (!this.#abort.signal.aborted) this.#loop.ready()
  }

  update (): void {
    this.#loop.update()
  }

  async idle (): Promise<void> { await this.#loop.idle() }

  status (): { synced: boolean, passes: number, objects: Record<string, string>, failures: Array<{ key: string, message: string }> } {
    return { synced: this.#loop.synced, passes: this.#loop.passes, objects: Object.fromEntries(this.#ready), failures: this.#loop.failures.list().map((f) => ({ key: f.key, message: f.message })) }
  }

  async stop (): Promise<void> {
    this.#abort.abort()
    await this.#loop.stop()
  }

  async #pass (): Promise<void> {
    const seen = new Set<string>()
    for (const m of this.#informer?.list() ?? []) {
      const key = `${m.metadata.namespace ?? ''}/${m.metadata.name ?? ''}`
      seen.add(key)
      await this.#loop.each(`manifests:${key}`, m, async () => { await this.#reconcile(m, key) })
    }
    for (const k of this.#ready.keys()) if (!seen.has(k)) this.#ready.delete(k)
    for (const k of this.#applied.keys()) if (!seen.has(k)) this.#applied.delete(k)
  }

  async #reconcile (m: Manifests, key: string): Promise<void> {
    const report: Report = async (status, reason, message, objects) => {
      this.#ready.set(key, reason)
      await writeStatus(this.#o.kube, ENTANGLE_RESOURCES.manifests, m, [{ type: 'Ready', status, reason, message }], objects !== undefined ? { objects } : {}, new Date(this.#o.now()))
    }
    const deleting = m.metadata.deletionTimestamp !== undefined
    const finalizers = m.metadata.finalizers ?? []
    if (deleting && !finalizers.includes(MANIFESTS_FINALIZER)) return
    if (!deleting && !finalizers.includes(MANIFESTS_FINALIZER)) {
      // Conflict (someone wrote meanwhile) throws: retried with the next version.
      await this.#o.kube.replace(ENTANGLE_RESOURCES.manifests, m.metadata.namespace, { ...m, metadata: { ...m.metadata, finalizers: [...finalizers, MANIFESTS_FINALIZER] } })
      return // the watch brings the new version
    }
    // Applied in full at this generation recently (its own status write, another object's
    // change): nothing to do until the resync, which re-applies to repair drift.
    const last = this.#applied.get(key)
    if (!deleting && last !== undefined && last.generation === m.metadata.generation && this.#o.now() - last.at < (this.#o.resyncMs ?? 60_000) - 1000) return
    const target = await this.#target(m, report)
    if (target === undefined) return
    const previous = (m.status?.objects ?? []).filter((o) => o.result === 'Applied')
    if (deleting) {
      const left = await this.#deleteAll(target, previous)
      if (left.length > 0) return await report('False', 'DeleteFailed', left.join('; '))
      const cur = await this.#o.kube.get<Manifests>(ENTANGLE_RESOURCES.manifests, m.metadata.namespace, m.metadata.name as string)
      if (cur === undefined) return
      await this.#o.kube.replace(ENTANGLE_RESOURCES.manifests, m.metadata.namespace, { ...cur, metadata: { ...cur.metadata, finalizers: (cur.metadata.finalizers ?? []).filter((f) => f !== MANIFESTS_FINALIZER) } })
      this.#o.log.info({ manifests: key, deleted: previous.length }, 'manifests: deleted what it applied')
      return
    }
    const results: ManifestResult[] = []
    for (const obj of m.spec.manifests ?? []) results.push(await this.#apply(target, obj, m.spec.cluster))
    if (results.some((r) => r.result === 'Failed' && isUnreachable(r.message))) {
      return await this.#unreachable(m, report)
    }
    // Pruning: what was applied before and is no longer in the spec is deleted in the target.
    const gone = previous.filter((p) => !results.some((r) => sameObject(r, p)))
    const left = await this.#deleteAll(target, gone)
    const kept = [...results, ...gone.filter((g) => left.some((l) => l.includes(`${g.kind} ${g.namespace ?? ''}/${g.name}`)))]
    const failed = results.filter((r) => r.result === 'Failed')
    if (failed.length > 0) return await report('False', 'ApplyFailed', `${failed.length} of ${results.length} objects failed: ${failed.map((f) => `${f.kind} ${f.name}: ${f.message ?? ''}`).join('; ')}`.slice(0, 4096), kept)
    await report('True', 'Applied', `${results.length} objects applied to cluster ${m.spec.cluster}`, kept)
    if (m.metadata.generation !== undefined) this.#applied.set(key, { generation: m.metadata.generation, at: this.#o.now() })
  }

  /** A client for the target through the tunnel, with the Secret's credentials. */
  async #target (m: Manifests, report: Report): Promise<HttpKubeClient | undefined> {
    const ns = m.metadata.namespace as string
    const ref = m.spec.credentialsSecretRef
    const key = ref?.key ?? 'kubeconfig'
    const secret = await this.#o.kube.get<Secret>(ENTANGLE_RESOURCES.secrets, ns, ref?.name ?? '')
    const text = secretValue(secret, key)
    if (text === undefined) {
      await report('False', secret === undefined ? 'SecretNotFound' : 'SecretKeyMissing', secret === undefined ? `Secret ${ns}/${ref?.name ?? ''} does not exist` : `Secret ${ns}/${ref.name} has no key ${key}`)
      return undefined
    }
    let kc: KubeConfig
    try {
      kc = new KubeConfig()
      kc.loadFromString(text)
      if (kc.getCurrentCluster() === null) throw new Error('no current cluster')
    } catch (err) {
      await report('False', 'InvalidCredentials', `Secret ${ns}/${ref.name} key ${key} is not a kubeconfig: ${(err as Error).message}`)
      return undefined
    }
    const tunnel = await this.#o.connect(m.spec.cluster)
    return new HttpKubeClient(throughTunnel(kc, tunnel.listen), { requestTimeoutMs: this.#o.requestTimeoutMs ?? 15_000, userAgent: 'weft-manifests' })
  }

  async #unreachable (m: Manifests, report: Report): Promise<void> {
    const tunnel = await this.#o.connect(m.spec.cluster)
    const why = tunnel.lastError() ?? 'no answer'
    const refused = /not-member|not allowed|--allow/.test(why)
    await report('False', refused ? 'Refused' : 'Unreachable', `cluster ${m.spec.cluster}'s API cannot be reached over the mesh: ${why}`)
    if (refused) this.#o.log.warn({ cluster: m.spec.cluster, why }, 'manifests: the target cluster refuses this agent (add it to the target agent\'s --allow)')
  }

  async #apply (target: HttpKubeClient, obj: ManifestObject, cluster: string): Promise<ManifestResult> {
    const apiVersion = typeof obj.apiVersion === 'string' ? obj.apiVersion : ''
    const kind = typeof obj.kind === 'string' ? obj.kind : ''
    const name = obj.metadata?.name ?? ''
    const res = manifestResource(apiVersion, kind)
    const namespace = res?.namespaced === true ? obj.metadata?.namespace ?? 'default' : undefined
    const base = { apiVersion, kind, ...(namespace !== undefined ? { namespace } : {}), name }
    if (res === undefined) return { ...base, result: 'Failed', message: `${apiVersion} ${kind} is not a kind Manifests applies (docs/entangle.md lists them)` }
    if (name === '') return { ...base, result: 'Failed', message: 'metadata.name is required' }
    try {
      const out = await target.apply(res, namespace, { ...obj, metadata: { ...obj.metadata, ...(namespace !== undefined ? { namespace } : {}) } }, { fieldManager: FIELD_MANAGER, force: true })
      return { ...base, result: 'Applied', ...(out.metadata.uid !== undefined ? { uid: out.metadata.uid } : {}) }
    } catch (err) {
      this.#o.log.debug({ cluster, kind, name, err: (err as Error).message }, 'manifests: apply failed')
      return { ...base, result: 'Failed', message: (err as Error).message }
    }
  }

  /** Delete these objects in the target (uid preconditions); the messages of those that failed. */
  async #deleteAll (target: HttpKubeClient, objects: readonly ManifestResult[]): Promise<string[]> {
    const left: string[] = []
    for (const o of [...objects].reverse()) {
      const res = manifestResource(o.apiVersion, o.kind)
      if (res === undefined) continue
      try {
        await target.delete(res, res.namespaced ? o.namespace : undefined, o.name, o.uid !== undefined ? { preconditions: { uid: o.uid } } : {})
      } catch (err) {
        // Conflict: the object was recreated by someone else since; it is not ours to delete.
        if ((err as { code?: string }).code === 'Conflict') continue
        left.push(`${o.kind} ${o.namespace ?? ''}/${o.name}: ${(err as Error).message}`)
      }
    }
    return left
  }
}

function sameObject (a: ManifestResult, b: ManifestResult): boolean {
  return a.apiVersion === b.apiVersion && a.kind === b.kind && (a.namespace ?? '') === (b.namespace ?? '') && a.name === b.name
}

/** A request that never got an HTTP answer: the tunnel (or the target) is not there. */
function isUnreachable (message: string | undefined): boolean {
  return message !== undefined && /socket hang up|ECONNRESET|ECONNREFUSED|no answer within|EPIPE/.test(message)
}

/** The kubeconfig with its server replaced by the tunnel listener; TLS still checks the original host name. */
function throughTunnel (kc: KubeConfig, at: HostPort): KubeConfig {
  const cluster = kc.getCurrentCluster()
  const user = kc.getCurrentUser()
  if (cluster === null) throw new Error('the kubeconfig has no current cluster')
  const url = new URL(cluster.server)
  const out = new KubeConfig()
  out.loadFromOptions({
    clusters: [{ ...cluster, server: `${url.protocol}//${formatHostPort(at)}`, ...(url.protocol === 'https:' && cluster.tlsServerName === undefined ? { tlsServerName: url.hostname } : {}) }],
    users: user !== null ? [user] : [],
    contexts: [{ name: 'target', cluster: cluster.name, ...(user !== null ? { user: user.name } : { user: '' }) }],
    currentContext: 'target'
  })
  return out
}
