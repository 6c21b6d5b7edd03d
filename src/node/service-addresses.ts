import { peerIdFromString } from '@libp2p/peer-id'
import type { MeshLogger } from '../net/mesh-logger.js'
import { ServiceListener, type TunnelClient, type TunnelTarget, type ListenerStats } from '../net/tcp-tunnel.js'
import type { NetworkState } from '../projections/network.js'
import { deriveServices, exportKey } from '../projections/services.js'
import { exportersOf, formatHostPort, serviceKey } from './service-registry.js'

/**
 * The service addresses on this member: for every import, a listener on its network-wide
 * address (127.77.x.y, from the services projection) at each of its TCP ports, and one on each
 * exporting cluster's address, so that `<svc>.<ns>.svc.clusterset.local:<port>` (which Weft's
 * DNS answers with that address) reaches a backend from this member, over the same tunnels as
 * `weft service connect`. Every member holds every address on its own loopback device: the
 * answer is the same everywhere and works wherever it is used. See docs/services.md.
 */

/** One address and port this member listens on for a service. */
export interface ServiceFront {
  address: string
  port: number
  namespace: string
  name: string
  /** Set for a per-cluster address: only that cluster's export is used. */
  cluster?: string
}

/** What the log asks every member to listen on now (TCP ports only: tunnels carry TCP). */
export function serviceFronts (state: NetworkState): ServiceFront[] {
  const active = new Set([...state.members.active.values()].map((m) => m.cluster))
  const out: ServiceFront[] = []
  for (const imp of deriveServices(state.services, active).imports) {
    const tcp = imp.ports.filter((p) => p.protocol === 'TCP')
    if (imp.type === 'ClusterSetIP' && imp.address !== undefined) {
      for (const p of tcp) out.push({ address: imp.address, port: p.port, namespace: imp.namespace, name: imp.name })
    }
    for (const e of imp.exporters) {
      if (e.address === undefined) continue
      for (const p of tcp) if (p.clusters.includes(e.cluster)) out.push({ address: e.address, port: p.port, namespace: imp.namespace, name: imp.name, cluster: e.cluster })
    }
  }
  return out
}

function frontKey (f: ServiceFront): string {
  return `${formatHostPort({ host: f.address, port: f.port })} ${serviceKey(f.namespace, f.name)} ${f.cluster ?? ''}`
}

export interface ServiceAddressesOptions {
  self: string
  state: () => NetworkState
  client: TunnelClient
  /** This node's own target for a service it serves (its expose, or its cluster's Service). */
  local: (service: string, port: number) => TunnelTarget | undefined
  log: MeshLogger
  /** A listener that could not bind is tried again after this long (default 30 s). */
  retryMs?: number
  now?: () => number
}

export interface FrontStatus {
  service: string
  cluster?: string
  listen: string
  /** Set when the address could not be bound (e.g. a port below 1024 without root). */
  error?: string
  traffic?: ListenerStats
}

export class ServiceAddresses {
  readonly #o: ServiceAddressesOptions
  readonly #listeners = new Map<string, { front: ServiceFront, listener: ServiceListener }>()
  readonly #failed = new Map<string, { at: number, error: string, front: ServiceFront }>()
  #running: Promise<void> | undefined
  #again = false
  #stopped = false
  #rotate = 0

  constructor (opts: ServiceAddressesOptions) {
    this.#o = opts
  }

  /** After every change to the log: open and close listeners to match it. */
  async update (): Promise<void> {
    if (this.#stopped) return
    if (this.#running !== undefined) {
      this.#again = true
      await this.#running
      return
    }
    this.#running = (async () => {
      do {
        this.#again = false
        await this.#reconcile()
      } while (this.#again && !this.#stopped)
    })()
    try {
      await this.#running
    } finally {
      this.#running = undefined
    }
  }

  async #reconcile (): Promise<void> {
    const { log } = this.#o
    const now = (this.#o.now ?? Date.now)()
    const wanted = new Map(serviceFronts(this.#o.state()).map((f) => [frontKey(f), f]))
    for (const [k, l] of [...this.#listeners]) {
      if (wanted.has(k)) continue
      this.#listeners.delete(k)
      await l.listener.stop()
    }
    for (const k of [...this.#failed.keys()]) if (!wanted.has(k)) this.#failed.delete(k)
    for (const [k, front] of wanted) {
      if (this.#stopped) return
      if (this.#listeners.has(k)) continue
      const failed = this.#failed.get(k)
      if (failed !== undefined && now - failed.at < (this.#o.retryMs ?? 30_000)) continue
      const listener = this.#listener(front)
      try {
        await listener.start()
        this.#listeners.set(k, { front, listener })
        this.#failed.delete(k)
        log.debug({ service: serviceKey(front.namespace, front.name), listen: formatHostPort({ host: front.address, port: front.port }) }, 'service address listening')
      } catch (err) {
        const error = (err as Error).message
        if (failed === undefined) {
          log.warn({ service: serviceKey(front.namespace, front.name), listen: formatHostPort({ host: front.address, port: front.port }), err: error },
            'cannot listen on the service address: its name does not connect from this member (ports below 1024 need root or CAP_NET_BIND_SERVICE; 127.0.0.0/8 must be on lo)')
        }
        this.#failed.set(k, { at: now, error, front })
      }
    }
  }

  #listener (front: ServiceFront): ServiceListener {
    const { namespace, name, cluster, port } = front
    const service = serviceKey(namespace, name)
    return new ServiceListener({
      client: this.#o.client,
      listen: { host: front.address, port },
      service,
      port,
      pick: () => exportersOf(this.#o.state(), this.#o.self, namespace, name, port, this.#rotate++)
        .filter((e) => cluster === undefined || e.cluster === cluster)
        .map((e) => peerIdFromString(e.peerId)),
      local: (svc, p) => {
        // A per-cluster address goes to this node's own target only if it is that cluster's exporter.
        if (cluster !== undefined && this.#o.state().services.exports.get(exportKey(namespace, name, cluster))?.author !== this.#o.self) return undefined
        return this.#o.local(svc, p)
      },
      log: this.#o.log
    })
  }

  status (): FrontStatus[] {
    const out: FrontStatus[] = []
    for (const { front, listener } of this.#listeners.values()) {
      out.push({ service: serviceKey(front.namespace, front.name), ...(front.cluster !== undefined ? { cluster: front.cluster } : {}), listen: formatHostPort({ host: front.address, port: front.port }), traffic: listener.stats() })
    }
    for (const { front, error } of this.#failed.values()) {
      out.push({ service: serviceKey(front.namespace, front.name), ...(front.cluster !== undefined ? { cluster: front.cluster } : {}), listen: formatHostPort({ host: front.address, port: front.port }), error })
    }
    return out.sort((a, b) => (a.listen < b.listen ? -1 : a.listen > b.listen ? 1 : 0))
  }

  async stop (): Promise<void> {
    this.#stopped = true
    await this.#running?.catch(() => undefined)
    await Promise.all([...this.#listeners.values()].map(async (l) => { await l.listener.stop() }))
    this.#listeners.clear()
  }
}
