import { join } from 'node:path'
import { identifiers } from '../../log/token.js'
import { LocalServices, servicesFileStore, type LocalServicesOptions } from '../local-services.js'
import { serviceRoutes } from '../service-api.js'
import { KubeProxies, kubeProxyRoutes, type KubeApiShare } from '../kube-share.js'
import type { ApiRoute, Feature, FeatureContext } from '../feature.js'

/**
 * Local services (expose, connect, service addresses) and the kube proxies that run over the same
 * tunnels, as a feature of the daemon. Every node runs it.
 */
export class ServicesFeature implements Feature {
  readonly name = 'services'
  readonly kubeProxies: KubeProxies

  private constructor (readonly services: LocalServices, kubeShare: KubeApiShare | undefined, ctx: FeatureContext) {
    this.kubeProxies = new KubeProxies({ self: ctx.identity.authorHex, state: ctx.state, client: services.client, share: kubeShare, log: ctx.log })
  }

  /** `resolve`: the shared Kubernetes API's and the MCS agent's targets, asked before the node's own exposes. */
  static start (ctx: FeatureContext, kubeShare: KubeApiShare | undefined, resolve: Pick<LocalServicesOptions, 'resolveFirst' | 'resolveExport'>): ServicesFeature {
    const services = new LocalServices({
      self: ctx.identity.authorHex,
      ...resolve,
      append: async (type, body) => await ctx.append(type, body),
      state: ctx.state,
      host: ctx.mesh.host,
      ids: identifiers(ctx.config.token),
      log: ctx.log,
      store: servicesFileStore(join(ctx.config.dataDir, 'services.json')),
      serviceAddresses: true
    })
    return new ServicesFeature(services, kubeShare, ctx)
  }

  /** After onChange: events it appends (withdrawn exposes) are pushed like any other. */
  async started (): Promise<void> { await this.services.start() }

  onState (): void { void this.services.update() }

  routes (): ApiRoute[] {
    const services = this.services
    const kube = this.kubeProxies
    return [
      ...serviceRoutes.map(([path, methods]): ApiRoute => [path, Object.fromEntries(Object.entries(methods).map(([m, h]) => [m, async (body: unknown) => await h(body, { services })]))]),
      ...kubeProxyRoutes.map(([path, methods]): ApiRoute => [path, Object.fromEntries(Object.entries(methods).map(([m, h]) => [m, async (body: unknown) => await h(body, { kube })]))])
    ]
  }

  async stop (): Promise<void> {
    await this.kubeProxies.stop().catch(() => {})
    await this.services.stop()
  }
}
