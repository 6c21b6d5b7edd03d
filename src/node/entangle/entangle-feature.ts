import type { KubeClient } from '../../adapters/kube/client.js'
import type { MeshLogger } from '../../net/mesh-logger.js'
import type { NetworkState } from '../../projections/network.js'
import type { KubeProxies } from '../kube-share.js'
import type { LocalServices } from '../local-services.js'
import { parseListen, type HostPort } from '../service-registry.js'
import { EntanglementController } from './entanglement-controller.js'
import { InjectionWebhook } from './injection-webhook.js'
import { ManifestsController } from './manifests-controller.js'

/**
 * The entangle features of one agent, as one lifecycle unit for the daemon (docs/entangle.md):
 * the Entanglement controller, the Manifests controller, and (when configured) the sidecar
 * injection webhook. `start(ctx)` once the daemon's services and kube proxies exist;
 * `onState(state)` after every change of the log (the controllers read the state through
 * ctx.state when they run); `status()` for GET /api/v1/status; `stop()`. No routes of its own.
 */

export interface EntangleSettings {
  /** Where the injection webhook listens; undefined: no webhook. */
  webhook?: HostPort
  /** The image of injected sidecars (needed with the webhook). */
  sidecarImage?: string
  /** DNS names of the webhook's certificate. Default the Service of deploy/webhook.yaml. */
  webhookDnsNames?: readonly string[]
}

export interface EntangleContext {
  kube: KubeClient
  /** This node's Weft cluster. */
  cluster: string
  /** The network id (hex) of the agent's token. */
  networkId: string
  state: () => NetworkState
  services: Pick<LocalServices, 'expose' | 'unexpose' | 'importListener' | 'closeImportListener'>
  /** The address pods reach this node at (--service-address, the overlay address, POD_IP). */
  serviceHost: () => string | undefined
  kubeProxies: Pick<KubeProxies, 'open' | 'listenerAt'>
  /** This node's libp2p addresses with /p2p/<id>: the sidecars' bootstrap peers. */
  peers: () => string[]
  log: MeshLogger
  now: () => number
}

export class EntangleFeature {
  #entanglements: EntanglementController | undefined
  #manifests: ManifestsController | undefined
  #webhook: InjectionWebhook | undefined
  readonly #tunnels = new Map<string, Promise<{ listen: HostPort, key: string }>>()

  constructor (private readonly settings: EntangleSettings) {}

  async start (ctx: EntangleContext): Promise<void> {
    this.#entanglements = new EntanglementController({
      kube: ctx.kube,
      networkId: ctx.networkId,
      state: ctx.state,
      tunnels: {
        expose: async (namespace, name, target, port) => {
          const r = await ctx.services.expose({ namespace, name, target: `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`, port }, { persist: false })
          return r.note !== undefined ? { note: r.note } : {}
        },
        unexpose: async (namespace, name) => { await ctx.services.unexpose({ namespace, name }).catch(() => undefined) },
        listen: async (service, port) => {
          const host = ctx.serviceHost()
          return host === undefined ? undefined : await ctx.services.importListener(service, port, host)
        },
        close: async (service, port) => { await ctx.services.closeImportListener(service, port) }
      },
      log: ctx.log,
      now: ctx.now
    })
    this.#manifests = new ManifestsController({
      kube: ctx.kube,
      connect: async (cluster) => {
        let t = this.#tunnels.get(cluster)
        if (t === undefined) {
          // One local listener per target cluster, on loopback: only this agent uses it.
          t = ctx.kubeProxies.open({ cluster, listen: '127.0.0.1:0' }).then((r) => ({ listen: parseListen(r.listen), key: r.listen }))
          this.#tunnels.set(cluster, t)
          t.catch(() => { this.#tunnels.delete(cluster) })
        }
        const { listen, key } = await t
        return { listen, lastError: () => ctx.kubeProxies.listenerAt(key)?.stats().lastError }
      },
      log: ctx.log,
      now: ctx.now
    })
    if (this.settings.webhook !== undefined) {
      const image = this.settings.sidecarImage
      if (image === undefined) throw new Error('the injection webhook needs the sidecar image (--sidecar-image or WEFT_IMAGE)')
      this.#webhook = new InjectionWebhook({
        listen: this.settings.webhook,
        dnsNames: this.settings.webhookDnsNames ?? ['weft-webhook.weft-system.svc', 'weft-webhook.weft-system.svc.cluster.local'],
        sidecar: () => ({ image, cluster: ctx.cluster, peers: ctx.peers() }),
        kube: ctx.kube,
        log: ctx.log,
        now: ctx.now
      })
      await this.#webhook.start()
    }
    await this.#entanglements.start()
    await this.#manifests.start()
  }

  /** The log changed: Entanglements depend on it (exports, members); Manifests do not (their resync covers a target that comes back). */
  onState (_state?: NetworkState): void {
    this.#entanglements?.update()
  }

  status (): Record<string, unknown> {
    return {
      entanglements: this.#entanglements?.status(),
      manifests: this.#manifests?.status(),
      ...(this.#webhook !== undefined ? { webhook: this.#webhook.status() } : {})
    }
  }

  async stop (): Promise<void> {
    await this.#webhook?.stop()
    await this.#manifests?.stop()
    await this.#entanglements?.stop()
  }
}
