import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { z } from 'zod'
import type { NetworkIdentifiers } from '../log/token.js'
import type { NetworkState } from '../projections/network.js'
import { exportKey } from '../projections/services.js'
import type { MeshLogger } from '../net/mesh-logger.js'
import {
  emptyTraffic, ServiceListener, TunnelClient, TunnelServer,
  type ResolveResult, type TunnelHost, type TunnelLimits, type TunnelTarget, type TunnelTraffic
} from '../net/tcp-tunnel.js'
import {
  checkLabel, DEFAULT_NAMESPACE, defaultPort, exportersOf, exposeExportBody, formatHostPort, listServices, parseListen,
  parseTarget, planExposes, sameExport, serviceKey, type ExposeSpec, type ExposeStep
} from './service-registry.js'
import { ServiceAddresses } from './service-addresses.js'
import type {
  ConnectRequest, ConnectResponse, DisconnectRequest, DisconnectResponse, ExposeRequest, ExposeResponse, LocalConnect,
  LocalExpose, ServicesResponse, UnexposeRequest, UnexposeResponse
} from './service-api-types.js'

/**
 * The daemon's side of `weft service`: what this node exposes (name → target, and the
 * `service.export` events that say so) and the local listeners of `weft service connect`. It
 * serves the tunnel protocol for its exposes, reconciles the log with its exposes after every
 * change (`update()`), and optionally keeps both lists in a file so they survive a restart.
 */

/** An error with the HTTP status it should become (400, 404, 409). */
export class ServiceError extends Error {
  constructor (readonly status: 400 | 404 | 409, readonly code: 'bad_request' | 'not_found' | 'conflict' | 'not_member', message: string) {
    super(message)
    this.name = 'ServiceError'
  }
}

const SavedSchema = z.object({
  v: z.literal(1),
  exposes: z.array(z.object({ namespace: z.string(), name: z.string(), target: z.string(), port: z.int().min(1).max(65535) })),
  connects: z.array(z.object({ namespace: z.string(), name: z.string(), listen: z.string(), port: z.int().min(1).max(65535) }))
})
export type SavedServices = z.infer<typeof SavedSchema>

/** Where the lists are kept between runs. */
export interface LocalServicesStore {
  load: () => Promise<SavedServices | undefined>
  save: (s: SavedServices) => Promise<void>
}

/** A JSON file (mode 0600, replaced atomically); a missing file is an empty list. */
export function servicesFileStore (path: string): LocalServicesStore {
  return {
    load: async () => {
      let text: string
      try {
        text = await readFile(path, 'utf8')
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
        throw err
      }
      const r = SavedSchema.safeParse(JSON.parse(text))
      if (!r.success) throw new Error(`${path} is not a weft services file`)
      return r.data
    },
    save: async (s) => {
      await mkdir(dirname(path), { recursive: true })
      const tmp = `${path}.${process.pid}.tmp`
      await writeFile(tmp, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 })
      await rename(tmp, path)
    }
  }
}

export interface LocalServicesOptions {
  /** This node's author (hex). */
  self: string
  /** Append one of this node's events (the daemon: `replica.append(type, body, now())`). */
  append: (type: ExposeStep['type'], body: ExposeStep['body']) => Promise<{ idHex: string }>
  /** The folded log now (`replica.states().network`). */
  state: () => NetworkState
  /** The libp2p host (`mesh.host`). */
  host: TunnelHost
  ids: Pick<NetworkIdentifiers, 'tcpProtocol'>
  log: MeshLogger
  limits?: Partial<TunnelLimits>
  store?: LocalServicesStore
  /** Asked before this node's own exposes (the shared Kubernetes API); undefined = not mine. */
  resolveFirst?: (service: string, port: number, author: string) => ResolveResult | undefined
  /** Tunnels for services exported by other means (the MCS agent: a Service's cluster IP). */
  resolveExport?: (service: string, port: number) => TunnelTarget | undefined
  /** Listen on the service addresses (127.77.x.y) of every import; the daemon does, tests may not. */
  serviceAddresses?: boolean
}

interface ConnectEntry {
  namespace: string
  name: string
  port: number
  /** As asked (port 0 allowed). */
  requested: TunnelTarget
  listener: ServiceListener
  bound: TunnelTarget
}

export class LocalServices {
  readonly server: TunnelServer
  readonly client: TunnelClient
  /** The listeners on the service addresses (docs/services.md, "Service addresses"). */
  readonly addresses: ServiceAddresses | undefined
  private readonly exposes = new Map<string, ExposeSpec>()
  /** Exposes a controller keeps (the Entanglement controller): not saved, it recreates them. */
  private readonly transient = new Set<string>()
  private readonly connects = new Map<string, ConnectEntry>()
  private running: Promise<Map<string, string>> | undefined
  private again = false
  private rotate = 0
  private readonly warned = new Set<string>()
  private stopped = false

  constructor (private readonly opts: LocalServicesOptions) {
    this.server = new TunnelServer({
      host: opts.host,
      protocol: opts.ids.tcpProtocol,
      resolve: (service, port, author) => opts.resolveFirst?.(service, port, author) ?? this.resolve(service, port, author),
      limits: opts.limits,
      log: opts.log
    })
    this.client = new TunnelClient({ host: opts.host, protocol: opts.ids.tcpProtocol, limits: opts.limits, log: opts.log })
    this.addresses = opts.serviceAddresses === true
      ? new ServiceAddresses({ self: opts.self, state: opts.state, client: this.client, local: (service, port) => this.ownTarget(service, port), log: opts.log })
      : undefined
  }

  /** Where this node itself sends a connection to a service it serves (its expose, or its cluster's Service). */
  private ownTarget (service: string, port: number): TunnelTarget | undefined {
    const e = this.exposes.get(service)
    return e !== undefined && e.port === port ? e.target : this.opts.resolveExport?.(service, port)
  }

  /** Serve the tunnel protocol; restore saved exposes and listeners; reconcile the log. */
  async start (): Promise<void> {
    await this.server.start()
    const saved = await this.opts.store?.load().catch((err: unknown) => {
      this.opts.log.error({ err: (err as Error).message }, 'cannot read the saved services; starting with none')
      return undefined
    })
    for (const e of saved?.exposes ?? []) {
      try {
        this.exposes.set(serviceKey(e.namespace, e.name), { namespace: checkLabel('namespace', e.namespace), name: checkLabel('name', e.name), target: parseTarget(e.target), port: e.port })
      } catch (err) {
        this.opts.log.warn({ service: serviceKey(e.namespace, e.name), err: (err as Error).message }, 'saved expose dropped')
      }
    }
    for (const c of saved?.connects ?? []) {
      try {
        await this.listen(c.namespace, c.name, c.port, parseListen(c.listen))
      } catch (err) {
        this.opts.log.error({ service: serviceKey(c.namespace, c.name), listen: c.listen, err: (err as Error).message }, 'cannot restore a service listener')
      }
    }
    await this.update()
  }

  /** Stop listeners and tunnels. The log is left as it is (a restart with the same file serves again). */
  async stop (): Promise<void> {
    this.stopped = true
    await this.addresses?.stop()
    await Promise.all([...this.connects.values()].map(async (c) => { await c.listener.stop() }))
    this.connects.clear()
    await this.server.stop()
  }

  /**
   * Bring the log in line with the exposes: call after every change to the log. One run at a
   * time; calls during a run make one more run. Resolves with the events appended (service key →
   * event id) by the run that saw this call.
   */
  async update (): Promise<Map<string, string>> {
    if (this.stopped) return new Map()
    if (this.running !== undefined) {
      // The run in progress goes round once more, after this call.
      this.again = true
      return await this.running
    }
    const run = (async () => {
      const appended = new Map<string, string>()
      do {
        this.again = false
        for (const [k, v] of await this.reconcile()) appended.set(k, v)
        await this.addresses?.update()
      } while (this.again && !this.stopped)
      return appended
    })()
    this.running = run
    try {
      return await run
    } finally {
      if (this.running === run) this.running = undefined
    }
  }

  private async reconcile (): Promise<Map<string, string>> {
    const appended = new Map<string, string>()
    const { log } = this.opts
    const plan = planExposes(this.opts.state(), this.opts.self, this.exposes.values())
    for (const c of plan.contested) {
      const k = `${serviceKey(c.namespace, c.name)}@${c.author}`
      if (!this.warned.has(k)) {
        this.warned.add(k)
        log.warn({ service: serviceKey(c.namespace, c.name), author: c.author }, 'another node of this cluster exports this service with other ports; this node serves its connections but leaves that export alone')
      }
    }
    for (const step of plan.steps) {
      if (this.stopped) break
      try {
        const ev = await this.opts.append(step.type, step.body)
        appended.set(serviceKey(step.body.namespace, step.body.name), ev.idHex)
        log.info({ type: step.type, event: ev.idHex.slice(0, 16), why: step.why }, 'services appended an event')
      } catch (err) {
        log.error({ type: step.type, err: (err as Error).message }, 'services could not append')
      }
    }
    return appended
  }

  // ---- expose ------------------------------------------------------------------------------

  async expose (req: ExposeRequest, opts: { persist?: boolean } = {}): Promise<ExposeResponse> {
    const namespace = checkLabel('namespace', req.namespace ?? DEFAULT_NAMESPACE)
    const name = checkLabel('name', req.name)
    const target = parseTarget(req.target)
    const spec: ExposeSpec = { namespace, name, target, port: req.port ?? target.port }
    const key = serviceKey(namespace, name)
    const before = this.exposes.get(key)
    this.exposes.set(key, spec)
    if (opts.persist === false) this.transient.add(key)
    else this.transient.delete(key)
    if (before === undefined || formatHostPort(before.target) !== formatHostPort(target) || before.port !== spec.port) await this.save()
    const appended = await this.update()
    const state = this.opts.state()
    const me = state.members.active.get(this.opts.self)
    let note: string | undefined
    if (me === undefined) {
      note = 'this node is not a member yet: the export is appended once it is'
    } else {
      const rec = state.services.exports.get(exportKey(namespace, name, me.cluster))
      if (rec !== undefined && rec.author !== this.opts.self && !sameExport(rec.spec, exposeExportBody(me.cluster, spec))) {
        note = `another node of cluster ${me.cluster} exports ${key} with other ports; this node serves connections that reach it, and exports it when that export goes`
      }
    }
    return { service: key, target: formatHostPort(target), port: spec.port, event: appended.get(key) ?? null, ...(note !== undefined ? { note } : {}) }
  }

  async unexpose (req: UnexposeRequest): Promise<UnexposeResponse> {
    const namespace = checkLabel('namespace', req.namespace ?? DEFAULT_NAMESPACE)
    const name = checkLabel('name', req.name)
    const key = serviceKey(namespace, name)
    const had = this.exposes.delete(key)
    this.transient.delete(key)
    const state = this.opts.state()
    const cluster = state.members.active.get(this.opts.self)?.cluster
    const rec = cluster === undefined ? undefined : state.services.exports.get(exportKey(namespace, name, cluster))
    if (!had && rec?.author !== this.opts.self) throw new ServiceError(404, 'not_found', `this node does not expose ${key}`)
    if (had) await this.save()
    const appended = await this.update()
    return { service: key, event: appended.get(key) ?? null }
  }

  /** The tunnel server's check: a member asks for a service this node exposes, on its port. */
  resolve (service: string, port: number, author: string): ResolveResult {
    if (!this.opts.state().members.active.has(author)) return { refuse: 'not-member', message: 'only active members of the network may open tunnels' }
    const e = this.exposes.get(service)
    if (e === undefined) {
      const other = this.opts.resolveExport?.(service, port)
      return other ?? { refuse: 'unknown-service', message: `this node does not expose ${service}` }
    }
    if (e.port !== port) return { refuse: 'unknown-service', message: `this node exposes ${service} on port ${e.port}, not ${port}` }
    return e.target
  }

  // ---- connect -----------------------------------------------------------------------------

  async connect (req: ConnectRequest): Promise<ConnectResponse> {
    const namespace = checkLabel('namespace', req.namespace ?? DEFAULT_NAMESPACE)
    const name = checkLabel('name', req.name)
    const listen = parseListen(req.listen)
    const key = serviceKey(namespace, name)
    if (listen.port !== 0) {
      const same = [...this.connects.values()].find((c) => [c.requested, c.bound].some((x) => x.port === listen.port && x.host === listen.host))
      if (same !== undefined) {
        if (same.namespace === namespace && same.name === name && (req.port === undefined || req.port === same.port)) {
          return { service: key, port: same.port, listen: formatHostPort(same.bound), created: false }
        }
        throw new ServiceError(409, 'conflict', `${formatHostPort(listen)} already carries ${serviceKey(same.namespace, same.name)} port ${same.port}; disconnect it first`)
      }
    }
    let port = req.port
    if (port === undefined) {
      try {
        port = defaultPort(this.opts.state(), namespace, name)
      } catch (err) {
        throw new ServiceError((err as { code?: string }).code === 'ERR_NOT_FOUND' ? 404 : 400, (err as { code?: string }).code === 'ERR_NOT_FOUND' ? 'not_found' : 'bad_request', (err as Error).message)
      }
    }
    const c = await this.listen(namespace, name, port, listen)
    await this.save()
    return { service: key, port, listen: formatHostPort(c.bound), created: true }
  }

  private async listen (namespace: string, name: string, port: number, requested: TunnelTarget): Promise<ConnectEntry> {
    const key = serviceKey(namespace, name)
    const listener = new ServiceListener({
      client: this.client,
      listen: requested,
      service: key,
      port,
      pick: () => exportersOf(this.opts.state(), this.opts.self, namespace, name, port, this.rotate++).map((e) => peerIdFromString(e.peerId)),
      // A service this node serves itself (its own expose, or a Service its cluster exports)
      // is connected to directly, not through the mesh.
      local: (service, p) => this.ownTarget(service, p),
      log: this.opts.log
    })
    let bound: TunnelTarget
    try {
      bound = await listener.start()
    } catch (err) {
      throw new ServiceError(409, 'conflict', `cannot listen on ${formatHostPort(requested)}: ${(err as Error).message}`)
    }
    const entry: ConnectEntry = { namespace, name, port, requested, listener, bound }
    this.connects.set(formatHostPort(bound), entry)
    this.opts.log.info({ service: key, port, listen: formatHostPort(bound) }, 'service listener started')
    return entry
  }

  /**
   * A listener for an imported service (the MCS agent's data path), not persisted: the agent
   * recreates it from the log. Its address goes into the EndpointSlices.
   */
  async importListener (service: string, port: number, host: string): Promise<TunnelTarget> {
    const [namespace, name] = service.split('/') as [string, string]
    const existing = [...this.connects.values()].find((c) => c.namespace === namespace && c.name === name && c.port === port && c.requested.host === host)
    if (existing !== undefined) return existing.bound
    return (await this.listen(namespace, name, port, { host, port: 0 })).bound
  }

  async closeImportListener (service: string, port: number): Promise<void> {
    const [namespace, name] = service.split('/')
    for (const [k, c] of this.connects) {
      if (c.namespace === namespace && c.name === name && c.port === port) {
        this.connects.delete(k)
        await c.listener.stop()
      }
    }
  }

  async disconnect (req: DisconnectRequest): Promise<DisconnectResponse> {
    let victims: Array<[string, ConnectEntry]>
    if ('listen' in req) {
      const l = parseListen(req.listen)
      victims = [...this.connects].filter(([, c]) => (c.bound.host === l.host && c.bound.port === l.port) || (c.requested.host === l.host && c.requested.port === l.port && l.port !== 0))
      if (victims.length === 0) throw new ServiceError(404, 'not_found', `no service listener on ${formatHostPort(l)}`)
    } else {
      const namespace = checkLabel('namespace', req.namespace ?? DEFAULT_NAMESPACE)
      const name = checkLabel('name', req.name)
      victims = [...this.connects].filter(([, c]) => c.namespace === namespace && c.name === name)
      if (victims.length === 0) throw new ServiceError(404, 'not_found', `no service listener carries ${serviceKey(namespace, name)}`)
    }
    for (const [k, c] of victims) {
      this.connects.delete(k)
      await c.listener.stop()
    }
    await this.save()
    return { stopped: victims.map(([k]) => k) }
  }

  // ---- listing -----------------------------------------------------------------------------

  list (): ServicesResponse {
    const state = this.opts.state()
    const served = this.server.stats()
    const cluster = state.members.active.get(this.opts.self)?.cluster
    const exposes: LocalExpose[] = [...this.exposes.values()].map((e) => {
      const k = serviceKey(e.namespace, e.name)
      const rec = cluster === undefined ? undefined : state.services.exports.get(exportKey(e.namespace, e.name, cluster))
      return {
        service: k,
        target: formatHostPort(e.target),
        port: e.port,
        exported: cluster !== undefined && rec !== undefined && rec.author === this.opts.self && sameExport(rec.spec, exposeExportBody(cluster, e)),
        traffic: served[k] ?? emptyTraffic()
      }
    }).sort((a, b) => (a.service < b.service ? -1 : 1))
    const connects: LocalConnect[] = [...this.connects.values()].map((c) => ({
      service: serviceKey(c.namespace, c.name),
      port: c.port,
      listen: formatHostPort(c.bound),
      traffic: c.listener.stats() as TunnelTraffic & { lastError?: string }
    })).sort((a, b) => (a.listen < b.listen ? -1 : 1))
    return { services: listServices(state), exposes, connects, addresses: this.addresses?.status() ?? [], tunnels: { served: this.server.active, opened: this.client.active } }
  }

  /** The listener carrying connections on `listen` (tests, debugging). */
  listenerAt (listen: string): ServiceListener | undefined {
    return this.connects.get(listen)?.listener
  }

  private async save (): Promise<void> {
    const store = this.opts.store
    if (store === undefined) return
    const saved: SavedServices = {
      v: 1,
      exposes: [...this.exposes.values()].filter((e) => !this.transient.has(serviceKey(e.namespace, e.name))).map((e) => ({ namespace: e.namespace, name: e.name, target: formatHostPort(e.target), port: e.port })),
      connects: [...this.connects.values()].map((c) => ({ namespace: c.namespace, name: c.name, listen: formatHostPort(c.requested.port === 0 ? c.bound : c.requested), port: c.port }))
    }
    await store.save(saved).catch((err: unknown) => { this.opts.log.error({ err: (err as Error).message }, 'cannot save the services file') })
  }
}
