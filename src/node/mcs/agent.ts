import { isKubeError, RESOURCES, type KubeClient } from '../../adapters/kube/client.js'
import { startInformer, type Informer } from '../../adapters/kube/informer.js'
import { warningEvent } from '../../adapters/kube/events.js'
import type { KubeObject } from '../../adapters/kube/client.js'
import type { Namespace, Service, ServiceExport, ServiceImport, EndpointSlice, KubeEvent } from '../../adapters/kube/types.js'
import type { MeshLogger } from '../../net/mesh-logger.js'
import type { NetworkState } from '../../projections/network.js'
import { serviceKey, type ExposeStep, type HostPort } from '../service-registry.js'
import { deleteOwnedExcept, ensureOwned } from './apply.js'
import { mergeConditions, type WantedCondition } from './conditions.js'
import { ObjectFailures } from './failures.js'
import { planExports } from './export-plan.js'
import { desiredObjects, importsFor, listenerKey, tunnelledPorts } from './import-plan.js'
import { canonical, derivedServiceName, isWeftOwned, SELECTOR_DERIVED_SERVICES, SELECTOR_ENDPOINT_SLICES, SELECTOR_SERVICE_IMPORTS } from './names.js'

/**
 * The MCS controllers of one Kubernetes cluster (KEP-1645, multicluster.x-k8s.io v1beta1):
 * ServiceExports become `service.export` events, and the services projection's imports become
 * ServiceImports, derived Services and EndpointSlices pointing at local tunnel listeners.
 * Every pass (`reconcile`) recomputes everything from the informers' caches and the folded
 * log; passes never overlap, and requests made during one cause one more. See docs/mcs.md.
 */

/** The data path: a local listener per imported TCP port that tunnels to an exporting cluster. */
export interface McsTunnels {
  /**
   * Start (or return) the listener of `namespace/name` port `port`; its address goes into the
   * EndpointSlices. Undefined while this node has no pod-reachable address yet (no endpoint).
   */
  listen: (service: string, port: number) => Promise<HostPort | undefined> | HostPort | undefined
  /** Stop it: the import or the port went away. */
  close?: (service: string, port: number) => Promise<void> | void
}

export interface McsAgentOptions {
  kube: KubeClient
  /** This agent's cluster: the Weft cluster name of this node. */
  cluster: string
  /** This node's author (hex). */
  self: string
  /** Append one of this node's events (the daemon: `replica.append(type, body, now())`). */
  append: (type: ExposeStep['type'], body: ExposeStep['body']) => Promise<unknown>
  /** The folded log now (`replica.states().network`). */
  state: () => NetworkState
  tunnels: McsTunnels
  log: MeshLogger
  now: () => number
  /** A full pass at least this often (repairs drift the watches did not report). Default 60 s. */
  resyncMs?: number
  /** First retry delay after a failed pass or object; doubles up to 30 s. Default 1 s. */
  retryMs?: number
}

/** The condition the agent adds to a ServiceExport while an object of its service fails. */
export const CONDITION_SYNCED = 'weft.io/Synced'

/** An object the agent would write but that exists without Weft's label: left alone. */
export interface ForeignObject {
  kind: string
  namespace: string
  name: string
  message: string
}

export interface McsAgentStatus {
  synced: boolean
  passes: number
  /** Set while this node cannot append (not a member of the cluster yet). */
  waiting?: string
  lastError?: string
  foreign: ForeignObject[]
  /** `namespace/name` of the services imported here. */
  imports: string[]
  /** Objects failing now, each retried on its own backoff. */
  failures: Array<{ key: string, message: string, attempts: number }>
}

export class McsAgent {
  readonly #o: McsAgentOptions
  #abort = new AbortController()
  #exports: Informer<ServiceExport> | undefined
  #services: Informer<Service> | undefined
  #namespaces: Informer<Namespace> | undefined
  #running: Promise<void> | undefined
  #dirty = false
  #stopped = false
  #timer: NodeJS.Timeout | undefined
  #retryMs = 0
  /** listenerKey → address, for the listeners this agent opened. */
  readonly #listeners = new Map<string, HostPort>()
  /** Export bodies appended recently, so an event the log ignores is not appended in a loop. */
  readonly #appended = new Map<string, { canon: string, at: number }>()
  readonly #status: McsAgentStatus = { synced: false, passes: 0, foreign: [], imports: [], failures: [] }
  readonly #failures: ObjectFailures

  constructor (opts: McsAgentOptions) {
    this.#o = opts
    this.#failures = new ObjectFailures({ firstMs: opts.retryMs ?? 1000, maxMs: 30_000 })
  }

  /** Start the informers; the first pass runs once they have listed. `signal` stops the agent too. */
  async start (signal?: AbortSignal): Promise<void> {
    if (signal !== undefined) {
      if (signal.aborted) return
      signal.addEventListener('abort', () => { void this.stop() }, { once: true })
    }
    const common = {
      client: this.#o.kube,
      signal: this.#abort.signal,
      onChange: () => { this.update() },
      onError: (err: unknown, phase: string) => { this.#o.log.warn({ phase, err: (err as Error).message }, 'mcs informer error') }
    }
    this.#exports = startInformer<ServiceExport>({ ...common, resource: RESOURCES.serviceExports })
    this.#services = startInformer<Service>({ ...common, resource: RESOURCES.services })
    this.#namespaces = startInformer<Namespace>({ ...common, resource: RESOURCES.namespaces })
    await Promise.race([
      Promise.all([this.#exports.synced, this.#services.synced, this.#namespaces.synced]),
      new Promise<void>((resolve) => { this.#abort.signal.addEventListener('abort', () => { resolve() }, { once: true }) })
    ])
    if (this.#stopped) return
    this.#status.synced = true
    this.update()
  }

  /** Something changed (the log, or a watched object): run a pass soon. */
  update (): void {
    if (this.#stopped || !this.#status.synced) return
    this.#dirty = true
    this.#running ??= this.#loop()
  }

  /** Resolves when no pass is running or asked for (tests). */
  async idle (): Promise<void> {
    while (this.#running !== undefined) await this.#running
  }

  status (): McsAgentStatus {
    return {
      ...this.#status,
      foreign: [...this.#status.foreign],
      imports: [...this.#status.imports],
      failures: this.#failures.list().map((f) => ({ key: f.key, message: f.message, attempts: f.attempts }))
    }
  }

  /**
   * The ClusterSetIPs of an import in this cluster (the derived Service's cluster IPs, which are
   * the ServiceImport's `ips`): what this cluster's DNS answers for the service's name.
   */
  clusterSetIps (namespace: string, name: string): string[] | undefined {
    if (!this.#status.imports.includes(serviceKey(namespace, name))) return undefined
    const svc = this.#services?.get(namespace, derivedServiceName(namespace, name))
    if (!isWeftOwned(svc)) return undefined
    const ips = svc?.spec?.clusterIPs ?? (svc?.spec?.clusterIP !== undefined ? [svc.spec.clusterIP] : [])
    const out = ips.filter((ip) => ip !== '' && ip !== 'None')
    return out.length > 0 ? out : undefined
  }

  /**
   * The data path's far end: where this cluster's agent connects a tunnel for an exported
   * service (`namespace/name`, port): the Service's cluster IP, while a ServiceExport for it
   * exists here. Undefined otherwise (the tunnel is refused).
   */
  resolveExport (service: string, port: number): { host: string, port: number } | undefined {
    const [namespace, name] = service.split('/')
    if (namespace === undefined || name === undefined) return undefined
    if (this.#exports?.get(namespace, name) === undefined) return undefined
    const svc = this.#services?.get(namespace, name)
    const ip = svc?.spec?.clusterIP
    if (ip === undefined || ip === '' || ip === 'None') return undefined
    if (!(svc?.spec?.ports ?? []).some((p) => p.port === port && (p.protocol ?? 'TCP') === 'TCP')) return undefined
    return { host: ip, port }
  }

  /** Stop the informers and the listeners. Objects and log events are left as they are. */
  async stop (): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    this.#abort.abort()
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    await this.#running?.catch(() => undefined)
    for (const key of [...this.#listeners.keys()]) await this.#closeListener(key)
  }

  async #loop (): Promise<void> {
    try {
      while (this.#dirty && !this.#stopped) {
        this.#dirty = false
        if (this.#timer !== undefined) clearTimeout(this.#timer)
        this.#timer = undefined
        let next = this.#o.resyncMs ?? 60_000
        try {
          await this.reconcile()
          this.#retryMs = 0
          delete this.#status.lastError
        } catch (err) {
          if (this.#stopped) break
          const first = this.#o.retryMs ?? 1000
          this.#retryMs = this.#retryMs === 0 ? first : Math.min(30_000, this.#retryMs * 2)
          next = this.#retryMs
          this.#status.lastError = (err as Error).message
          if (isKubeError(err, 'Conflict')) this.#o.log.debug({ err: (err as Error).message }, 'mcs pass: conflict, retrying')
          else this.#o.log.warn({ err: (err as Error).message }, 'mcs pass failed, retrying')
        }
        this.#status.passes++
        const retry = this.#failures.nextRetry()
        if (retry !== undefined) next = Math.min(next, Math.max(10, retry - this.#o.now()))
        if (!this.#stopped) {
          this.#timer = setTimeout(() => { this.update() }, next)
          this.#timer.unref()
        }
      }
    } finally {
      this.#running = undefined
    }
  }

  /** One full pass: export, then import. Throws on the first failed request (the loop retries). */
  async reconcile (): Promise<void> {
    let firstError: unknown
    try {
      await this.#reconcileExports()
    } catch (err) {
      firstError = err
    }
    await this.#reconcileImports()
    if (firstError !== undefined) throw firstError
  }

  // ---- export ----

  async #reconcileExports (): Promise<void> {
    const o = this.#o
    const services = new Map<string, Service>()
    for (const s of this.#services?.list() ?? []) services.set(serviceKey(s.metadata.namespace ?? '', s.metadata.name ?? ''), s)
    const serviceExports = this.#exports?.list() ?? []
    const plan = planExports({ cluster: o.cluster, self: o.self, state: o.state(), serviceExports, services })
    if (plan.waiting !== undefined) this.#status.waiting = plan.waiting
    else delete this.#status.waiting
    const now = o.now()
    for (const [k, v] of this.#appended) if (now - v.at > 30_000) this.#appended.delete(k)
    for (const step of plan.steps) {
      // Keyed by service: the last step appended for it. A step repeated while the log has not
      // taken the previous one is skipped (for 30 s); any other step goes through.
      const key = serviceKey(step.body.namespace, step.body.name)
      const canon = `${step.type}:${canonical(step.body)}`
      if (this.#appended.get(key)?.canon === canon) continue // appended already: the log has not taken it (yet)
      if (this.#failures.waiting(`export:${key}`, now)) continue
      o.log.info({ type: step.type, service: serviceKey(step.body.namespace, step.body.name), why: step.why }, 'mcs: appending')
      try {
        await o.append(step.type, step.body)
        this.#failures.ok(`export:${key}`)
      } catch (err) {
        await this.#failed('export', step.body.namespace, step.body.name, `cannot append ${step.type}: ${(err as Error).message}`)
        continue
      }
      this.#appended.set(key, { canon, at: now })
      this.#dirty = true // the statuses follow from the new state: one more pass
    }
    for (const se of serviceExports) {
      const namespace = se.metadata.namespace ?? ''
      const name = se.metadata.name ?? ''
      const key = serviceKey(namespace, name)
      const wanted = plan.conditions.get(key)
      if (wanted === undefined) continue
      const failing = this.#failures.get(`export:${key}`) ?? this.#failures.get(`import:${key}`)
      const synced: WantedCondition | undefined = failing !== undefined
        ? { type: CONDITION_SYNCED, status: 'False', reason: failing.key.startsWith('export:') ? 'ExportFailed' : 'ImportFailed', message: failing.message }
        : se.status?.conditions?.some((c) => c.type === CONDITION_SYNCED) === true ? { type: CONDITION_SYNCED, status: 'True', reason: 'Synced', message: '' } : undefined
      try {
        await this.#writeConditions(se, synced !== undefined ? [...wanted, synced] : wanted)
      } catch (err) {
        // Reported as an Event (the status itself cannot be written); the others go on.
        await this.#event(se, 'ConditionsFailed', `cannot write the conditions: ${(err as Error).message}`)
      }
    }
  }

  /** Record a failed object, report it once per new message (log and Event), and go on. */
  async #failed (side: 'export' | 'import', namespace: string, name: string, message: string): Promise<void> {
    const key = `${side}:${serviceKey(namespace, name)}`
    const news = this.#failures.fail(key, namespace, name, message, this.#o.now())
    if (!news) return
    this.#o.log.warn({ service: serviceKey(namespace, name), side, err: message }, 'mcs: an object failed; the others go on, it is retried with backoff')
    const se = this.#exports?.get(namespace, name)
    const target = se ?? (side === 'import' ? await this.#o.kube.get<ServiceImport>(RESOURCES.serviceImports, namespace, name).catch(() => undefined) : undefined)
    if (target !== undefined) await this.#event(target, side === 'export' ? 'ExportFailed' : 'ImportFailed', message)
  }

  /** A Warning Event on `obj` (best effort: an Event that cannot be written is only logged). */
  async #event (obj: KubeObject, reason: string, message: string): Promise<void> {
    const ev = warningEvent(obj, reason, message, { component: 'weft-mcs', reportingComponent: 'weft.io/mcs' }, new Date(this.#o.now()))
    try {
      await this.#o.kube.create<KubeEvent>(RESOURCES.events, obj.metadata.namespace, ev)
    } catch (err) {
      this.#o.log.debug({ reason, err: (err as Error).message }, 'mcs: cannot write an Event')
    }
  }

  /** Write the conditions through the status subresource; on 409 read the object again and retry. */
  async #writeConditions (cached: ServiceExport, wanted: Parameters<typeof mergeConditions>[1]): Promise<void> {
    const kube = this.#o.kube
    const ns = cached.metadata.namespace as string
    const name = cached.metadata.name as string
    let se: ServiceExport | undefined = cached
    for (let attempt = 0; ; attempt++) {
      if (se === undefined) return
      const merged = mergeConditions(se.status?.conditions, wanted, se.metadata.generation, new Date(this.#o.now()))
      if (merged === undefined) return
      try {
        await kube.replaceStatus<ServiceExport>(RESOURCES.serviceExports, ns, { ...se, status: { ...se.status, conditions: merged } })
        return
      } catch (err) {
        if (isKubeError(err, 'NotFound')) return
        if (!isKubeError(err, 'Conflict') || attempt >= 4) throw err
        se = await kube.get<ServiceExport>(RESOURCES.serviceExports, ns, name)
      }
    }
  }

  // ---- import ----

  async #reconcileImports (): Promise<void> {
    const o = this.#o
    const namespaces = new Set((this.#namespaces?.list() ?? []).filter((n) => n.status?.phase !== 'Terminating').map((n) => n.metadata.name as string))
    const imports = importsFor(o.state(), namespaces)
    this.#status.imports = imports.map((i) => serviceKey(i.namespace, i.name))

    // Listeners: one per imported TCP port; close the others.
    const neededListeners = new Set<string>()
    for (const imp of imports) {
      for (const p of tunnelledPorts(imp)) {
        const key = listenerKey(imp.namespace, imp.name, p.port)
        neededListeners.add(key)
        if (!this.#listeners.has(key)) {
          const at = await o.tunnels.listen(serviceKey(imp.namespace, imp.name), p.port)
          if (at !== undefined) this.#listeners.set(key, at)
        }
      }
    }
    for (const key of [...this.#listeners.keys()]) if (!neededListeners.has(key)) await this.#closeListener(key)

    const foreign: ForeignObject[] = []
    const keep = { imports: new Set<string>(), services: new Set<string>(), slices: new Set<string>() }
    const now = o.now()
    const keepPrefixes: string[] = [] // the slices of a failing import stay as they are
    for (const imp of imports) {
      const derived = derivedServiceName(imp.namespace, imp.name)
      keep.imports.add(`${imp.namespace}/${imp.name}`)
      keep.services.add(`${imp.namespace}/${derived}`)
      const clusterIP = this.#services?.get(imp.namespace, derived)?.spec?.clusterIP
      const want = desiredObjects(imp, this.#listeners, clusterIP)
      for (const s of want.slices) keep.slices.add(`${imp.namespace}/${s.metadata.name as string}`)
      const failKey = `import:${serviceKey(imp.namespace, imp.name)}`
      if (this.#failures.waiting(failKey, now)) {
        // Backing off: keep what exists of it, try again when its time comes.
        keepPrefixes.push(`${imp.namespace}/${derived}-`)
        continue
      }
      let step = `ServiceImport ${imp.namespace}/${imp.name}`
      try {
        const si = await ensureOwned<ServiceImport>(o.kube, RESOURCES.serviceImports, want.serviceImport, { fields: ['spec'], mode: 'exact', status: true })
        if (si.result === 'foreign') {
          foreign.push({ kind: 'ServiceImport', namespace: imp.namespace, name: imp.name, message: `ServiceImport ${imp.namespace}/${imp.name} exists without the label app.kubernetes.io/managed-by=weft: not imported here` })
          continue // someone else imports this name: add nothing beside it
        }
        step = `Service ${imp.namespace}/${derived}`
        const svc = await ensureOwned<Service>(o.kube, RESOURCES.services, want.service, { fields: ['spec'], mode: 'merge' })
        if (svc.result === 'foreign') {
          foreign.push({ kind: 'Service', namespace: imp.namespace, name: derived, message: `Service ${imp.namespace}/${derived} exists without Weft's label: left alone` })
        }
        for (const slice of want.slices) {
          step = `EndpointSlice ${imp.namespace}/${slice.metadata.name as string}`
          const r = await ensureOwned<EndpointSlice>(o.kube, RESOURCES.endpointSlices, slice, { fields: ['addressType', 'endpoints', 'ports'], mode: 'exact' })
          if (r.result === 'foreign') foreign.push({ kind: 'EndpointSlice', namespace: imp.namespace, name: slice.metadata.name as string, message: `EndpointSlice ${imp.namespace}/${slice.metadata.name as string} exists without Weft's label: left alone` })
        }
        if (this.#failures.ok(failKey)) o.log.info({ service: serviceKey(imp.namespace, imp.name) }, 'mcs: import written again')
      } catch (err) {
        if (isKubeError(err, 'Conflict')) {
          this.#dirty = true // someone wrote meanwhile: the next pass reads again
          continue
        }
        keepPrefixes.push(`${imp.namespace}/${derived}-`)
        await this.#failed('import', imp.namespace, imp.name, `${step}: ${(err as Error).message}`)
      }
    }
    for (const f of foreign) {
      if (!this.#status.foreign.some((x) => x.kind === f.kind && x.namespace === f.namespace && x.name === f.name)) o.log.warn({ kind: f.kind, namespace: f.namespace, name: f.name }, f.message)
    }
    this.#status.foreign = foreign

    // What Weft owns and no import calls for goes (slices first, the ServiceImport last). A
    // failed listing throws: the pass is retried as a whole (nothing else is left to do).
    await deleteOwnedExcept(o.kube, RESOURCES.endpointSlices, SELECTOR_ENDPOINT_SLICES, (k) => keep.slices.has(k) || keepPrefixes.some((p) => k.startsWith(p)))
    await deleteOwnedExcept(o.kube, RESOURCES.services, SELECTOR_DERIVED_SERVICES, keep.services)
    await deleteOwnedExcept(o.kube, RESOURCES.serviceImports, SELECTOR_SERVICE_IMPORTS, keep.imports)
  }

  async #closeListener (key: string): Promise<void> {
    this.#listeners.delete(key)
    const i = key.lastIndexOf('/')
    try {
      await this.#o.tunnels.close?.(key.slice(0, i), Number(key.slice(i + 1)))
    } catch (err) {
      this.#o.log.warn({ listener: key, err: (err as Error).message }, 'mcs: cannot close a listener')
    }
  }
}
