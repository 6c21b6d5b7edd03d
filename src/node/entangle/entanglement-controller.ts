import { RESOURCES, type KubeClient } from '../../adapters/kube/client.js'
import { startInformer, type Informer } from '../../adapters/kube/informer.js'
import type { EndpointSlice, Service } from '../../adapters/kube/types.js'
import { identifiers, parseToken } from '../../log/token.js'
import type { MeshLogger } from '../../net/mesh-logger.js'
import type { NetworkState } from '../../projections/network.js'
import { deleteOwnedExcept, ensureOwned } from '../mcs/apply.js'
import { formatHostPort, importOf, serviceKey, type HostPort } from '../service-registry.js'
import { consumeService, consumeSlice, planEntanglement, type EntanglementWant } from './entanglement-plan.js'
import { ReconcileLoop, syncedOrAborted } from './reconcile-loop.js'
import { ENTANGLE_RESOURCES, LABEL_ENTANGLEMENT, secretValue, type Entanglement, type Secret } from './resources.js'
import { writeStatus, type WantedCondition } from './status.js'

/**
 * The Entanglement controller (docs/entangle.md): `spec.expose` puts a Service of this cluster
 * (its cluster IP and port) or a host-network `host:port` on the network under a name, through
 * the daemon's service tunnels (a plain expose, not saved in the services file: the controller
 * recreates it from the object); `spec.consume` gives a network service a Service in this
 * cluster, backed by a tunnel listener of the agent (a selectorless Service and an EndpointSlice
 * of Weft's). Status: `Ready` with a reason, the network name and the address served.
 */

export interface EntangleTunnels {
  /** Expose `namespace/name` on `port`, connecting to `target` (not persisted). A note when another node holds the export. */
  expose: (namespace: string, name: string, target: HostPort, port: number) => Promise<{ note?: string }>
  unexpose: (namespace: string, name: string) => Promise<void>
  /** A listener for `namespace/name` port on a pod-reachable address; undefined when there is none. */
  listen: (service: string, port: number) => Promise<HostPort | undefined>
  close: (service: string, port: number) => Promise<void>
}

export interface EntanglementControllerOptions {
  kube: KubeClient
  /** The agent's network id (hex): a token Secret for another network is refused. */
  networkId: string
  state: () => NetworkState
  tunnels: EntangleTunnels
  log: MeshLogger
  now: () => number
  resyncMs?: number
  retryMs?: number
}

export interface EntanglementControllerStatus {
  synced: boolean
  passes: number
  lastError?: string
  /** `namespace/name` of each Entanglement → its Ready reason. */
  objects: Record<string, string>
  failures: Array<{ key: string, message: string, attempts: number }>
}

const SELECTOR = `app.kubernetes.io/managed-by=weft,${LABEL_ENTANGLEMENT}`

export class EntanglementController {
  readonly #o: EntanglementControllerOptions
  readonly #abort = new AbortController()
  readonly #loop: ReconcileLoop
  #entanglements: Informer<Entanglement> | undefined
  #services: Informer<Service> | undefined
  /** network `namespace/name` → the Entanglement (`ns/name`) exposing it through this agent. */
  readonly #exposed = new Map<string, string>()
  /** `service/port` listeners this controller opened. */
  readonly #listeners = new Map<string, HostPort>()
  readonly #ready = new Map<string, string>()
  /**
   * Good token checks by `namespace/secret/key`, kept 30 s: passes run on every change of the log,
   * and the Secret is read with `get` (no watch: the agent may not list Secrets). At most 1024.
   */
  readonly #tokenChecks = new Map<string, { at: number, problem: { reason: string, message: string } | undefined }>()

  constructor (opts: EntanglementControllerOptions) {
    this.#o = opts
    this.#loop = new ReconcileLoop({ kube: opts.kube, log: opts.log, now: opts.now, component: 'weft-entangle', ...(opts.resyncMs !== undefined ? { resyncMs: opts.resyncMs } : {}), ...(opts.retryMs !== undefined ? { retryMs: opts.retryMs } : {}) }, async () => { await this.#pass() })
  }

  async start (signal?: AbortSignal): Promise<void> {
    signal?.addEventListener('abort', () => { void this.stop() }, { once: true })
    const common = {
      client: this.#o.kube,
      signal: this.#abort.signal,
      onChange: () => { this.update() },
      onError: (err: unknown, phase: string) => { this.#o.log.warn({ phase, err: (err as Error).message }, 'entangle informer error') }
    }
    this.#entanglements = startInformer<Entanglement>({ ...common, resource: ENTANGLE_RESOURCES.entanglements })
    this.#services = startInformer<Service>({ ...common, resource: RESOURCES.services })
    await syncedOrAborted([this.#entanglements.synced, this.#services.synced], this.#abort.signal)
    if (!this.#abort.signal.aborted) this.#loop.ready()
  }

  /** Something changed (the log, a watched object): run a pass soon. */
  update (): void {
    this.#loop.update()
  }

  async idle (): Promise<void> { await this.#loop.idle() }

  status (): EntanglementControllerStatus {
    return {
      synced: this.#loop.synced,
      passes: this.#loop.passes,
      ...(this.#loop.lastError !== undefined ? { lastError: this.#loop.lastError } : {}),
      objects: Object.fromEntries(this.#ready),
      failures: this.#loop.failures.list().map((f) => ({ key: f.key, message: f.message, attempts: f.attempts }))
    }
  }

  /**
   * Stop watching. Objects, exposes and listeners are left as they are (the daemon stops its
   * services next; a restart without --entangle withdraws the exposes, which are not saved).
   */
  async stop (): Promise<void> {
    if (this.#loop.stopped) return
    this.#abort.abort()
    await this.#loop.stop()
  }

  async #pass (): Promise<void> {
    const wantedExposes = new Map<string, string>()
    const wantedListeners = new Set<string>()
    const keepObjects = new Set<string>()
    const seen = new Set<string>()
    for (const e of this.#entanglements?.list() ?? []) {
      const key = `${e.metadata.namespace ?? ''}/${e.metadata.name ?? ''}`
      seen.add(key)
      const plan = planEntanglement(e)
      if ('want' in plan) {
        // Kept while it fails or backs off: a transient error does not withdraw what works.
        const w = plan.want
        const svc = serviceKey(w.namespace, w.name)
        // One Entanglement per network name: the one exposing it already, else the first listed.
        if (w.kind === 'expose' && !wantedExposes.has(svc) && (this.#exposed.get(svc) ?? key) === key) wantedExposes.set(svc, key)
        if (w.kind === 'consume') {
          wantedListeners.add(`${serviceKey(w.namespace, w.name)}/${w.port}`)
          keepObjects.add(`${e.metadata.namespace ?? ''}/${w.serviceName}`)
          keepObjects.add(`${e.metadata.namespace ?? ''}/${w.serviceName}-weft`)
        }
      }
      await this.#loop.each(`entanglement:${key}`, e, async () => { await this.#reconcile(e, key, plan, wantedExposes) })
    }
    for (const k of this.#ready.keys()) if (!seen.has(k)) this.#ready.delete(k)
    for (const svc of [...this.#exposed.keys()]) if (!wantedExposes.has(svc)) await this.#unexpose(svc)
    for (const l of [...this.#listeners.keys()]) if (!wantedListeners.has(l)) await this.#close(l)
    // The garbage collector deletes them through the owner references; this covers an API
    // server without one (and a consume that changed its Service name).
    await deleteOwnedExcept(this.#o.kube, RESOURCES.endpointSlices, SELECTOR, keepObjects)
    await deleteOwnedExcept(this.#o.kube, RESOURCES.services, SELECTOR, keepObjects)
  }

  async #reconcile (e: Entanglement, key: string, plan: ReturnType<typeof planEntanglement>, wantedExposes: Map<string, string>): Promise<void> {
    const report = async (status: 'True' | 'False', reason: string, message: string, fields: Record<string, unknown> = {}): Promise<void> => {
      this.#ready.set(key, reason)
      const ready: WantedCondition = { type: 'Ready', status, reason, message }
      await writeStatus(this.#o.kube, ENTANGLE_RESOURCES.entanglements, e, [ready], fields, new Date(this.#o.now()))
    }
    if ('invalid' in plan) return await report('False', 'InvalidSpec', plan.invalid)
    const { want, tokenRef } = plan
    const network = serviceKey(want.namespace, want.name)
    const tokenProblem = await this.#checkToken(e.metadata.namespace as string, tokenRef)
    if (tokenProblem !== undefined) {
      if (want.kind === 'expose' && wantedExposes.get(network) === key) wantedExposes.delete(network)
      return await report('False', tokenProblem.reason, tokenProblem.message, { service: network })
    }
    if (want.kind === 'expose') {
      const owner = wantedExposes.get(network)
      if (owner !== key) return await report('False', 'Conflict', `${network} is exposed through this agent by Entanglement ${owner ?? '?'} already`, { service: network })
      const target = this.#exposeTarget(e, want)
      if ('reason' in target) {
        wantedExposes.delete(network)
        return await report('False', target.reason, target.message, { service: network })
      }
      const r = await this.#o.tunnels.expose(want.namespace, want.name, target, want.port)
      this.#exposed.set(network, key)
      if (r.note !== undefined) return await report('False', /not a member/.test(r.note) ? 'NotMember' : 'Contested', r.note, { service: network, address: formatHostPort(target) })
      return await report('True', 'Exposed', `${network} port ${want.port} is served on the network, connecting to ${formatHostPort(target)}`, { service: network, address: formatHostPort(target) })
    }
    return await this.#consume(e, want, network, report)
  }

  async #consume (e: Entanglement, want: Extract<EntanglementWant, { kind: 'consume' }>, network: string, report: (s: 'True' | 'False', reason: string, message: string, fields?: Record<string, unknown>) => Promise<void>): Promise<void> {
    const lkey = `${network}/${want.port}`
    let at = this.#listeners.get(lkey)
    if (at === undefined) {
      at = await this.#o.tunnels.listen(network, want.port)
      if (at === undefined) return await report('False', 'NoServiceAddress', 'the agent has no address pods reach it at (give --service-address, or set POD_IP as deploy/agent.yaml does)', { service: network })
      this.#listeners.set(lkey, at)
    }
    const svc = await ensureOwned<Service>(this.#o.kube, RESOURCES.services, consumeService(e, want, at.port), { fields: ['spec'], mode: 'merge' })
    if (svc.result === 'foreign') return await report('False', 'ServiceExists', `Service ${e.metadata.namespace ?? ''}/${want.serviceName} exists and is not Weft's: left alone`, { service: network })
    const slice = await ensureOwned<EndpointSlice>(this.#o.kube, RESOURCES.endpointSlices, consumeSlice(e, want, at), { fields: ['addressType', 'endpoints', 'ports'], mode: 'exact' })
    if (slice.result === 'foreign') return await report('False', 'ServiceExists', `EndpointSlice ${e.metadata.namespace ?? ''}/${want.serviceName}-weft exists and is not Weft's: left alone`, { service: network })
    const ip = svc.object.spec?.clusterIP
    const address = ip !== undefined && ip !== '' && ip !== 'None' ? formatHostPort({ host: ip, port: want.servicePort }) : undefined
    const imp = importOf(this.#o.state(), want.namespace, want.name)
    if (imp === undefined || !imp.ports.some((p) => p.protocol === 'TCP' && p.port === want.port)) {
      return await report('False', 'NotExported', `no cluster exports ${network} port ${want.port} now: connections to the Service are closed until one does`, { service: network, ...(address !== undefined ? { address } : {}) })
    }
    return await report('True', 'Consuming', `Service ${want.serviceName} port ${want.servicePort} carries connections to ${network} port ${want.port}`, { service: network, ...(address !== undefined ? { address } : {}) })
  }

  #exposeTarget (e: Entanglement, want: Extract<EntanglementWant, { kind: 'expose' }>): HostPort | { reason: string, message: string } {
    if (want.host !== undefined) return want.host
    const ref = want.serviceRef as { name: string, port: number }
    const svc = this.#services?.get(e.metadata.namespace as string, ref.name)
    if (svc === undefined) return { reason: 'ServiceNotFound', message: `Service ${e.metadata.namespace ?? ''}/${ref.name} does not exist` }
    const ip = svc.spec?.clusterIP
    if (ip === undefined || ip === '' || ip === 'None') return { reason: 'NoClusterIP', message: `Service ${ref.name} has no cluster IP (headless or ExternalName): expose a host:port instead` }
    if (!(svc.spec?.ports ?? []).some((p) => p.port === ref.port && (p.protocol ?? 'TCP') === 'TCP')) return { reason: 'PortNotFound', message: `Service ${ref.name} has no TCP port ${ref.port}` }
    return { host: ip, port: ref.port }
  }

  async #checkToken (namespace: string, ref: { name: string, key: string }): Promise<{ reason: string, message: string } | undefined> {
    const k = `${namespace}/${ref.name}/${ref.key}`
    const now = this.#o.now()
    const hit = this.#tokenChecks.get(k)
    if (hit !== undefined && now - hit.at < 30_000) return hit.problem
    const problem = await this.#readToken(namespace, ref)
    this.#tokenChecks.delete(k)
    // Only a good token is remembered: a missing or wrong Secret is read again at once when fixed.
    if (problem === undefined) this.#tokenChecks.set(k, { at: now, problem })
    while (this.#tokenChecks.size > 1024) this.#tokenChecks.delete(this.#tokenChecks.keys().next().value as string)
    return problem
  }

  async #readToken (namespace: string, ref: { name: string, key: string }): Promise<{ reason: string, message: string } | undefined> {
    const secret = await this.#o.kube.get<Secret>(ENTANGLE_RESOURCES.secrets, namespace, ref.name)
    if (secret === undefined) return { reason: 'SecretNotFound', message: `Secret ${namespace}/${ref.name} does not exist` }
    const text = secretValue(secret, ref.key)
    if (text === undefined) return { reason: 'SecretKeyMissing', message: `Secret ${namespace}/${ref.name} has no key ${ref.key}` }
    let id: string
    try {
      id = identifiers(parseToken(text.trim())).networkId
    } catch (err) {
      return { reason: 'InvalidToken', message: `Secret ${namespace}/${ref.name} key ${ref.key}: ${(err as Error).message}` }
    }
    if (id !== this.#o.networkId) return { reason: 'NetworkMismatch', message: `the token in Secret ${namespace}/${ref.name} is for network ${id.slice(0, 12)}…; this agent serves network ${this.#o.networkId.slice(0, 12)}…` }
    return undefined
  }

  async #unexpose (svc: string): Promise<void> {
    this.#exposed.delete(svc)
    const [ns, name] = svc.split('/') as [string, string]
    await this.#o.tunnels.unexpose(ns, name).catch((err: unknown) => { this.#o.log.warn({ service: svc, err: (err as Error).message }, 'entangle: cannot unexpose') })
  }

  async #close (key: string): Promise<void> {
    this.#listeners.delete(key)
    const i = key.lastIndexOf('/')
    await this.#o.tunnels.close(key.slice(0, i), Number(key.slice(i + 1))).catch((err: unknown) => { this.#o.log.warn({ listener: key, err: (err as Error).message }, 'entangle: cannot close a listener') })
  }
}
