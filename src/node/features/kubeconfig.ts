import { identifiers } from '../../log/token.js'
import { bridgeKubeconfigError, fetchClusterKubeconfig, KubeconfigError, locateKubeconfigSource, rewriteKubeconfigServer, serveKubeconfig } from '../../net/kubeconfig-protocol.js'
import type { K3sProcess } from '../../adapters/k3s-process.js'
import type { Feature, FeatureContext } from '../feature.js'

/**
 * The kubeconfig protocol: served even without --k3s (a member asking this node gets "not a
 * server here" rather than an unknown protocol), and asked for the API's GET /kubeconfig.
 */
export class KubeconfigFeature implements Feature {
  readonly name = 'kubeconfig'

  private constructor (private readonly service: { stop: () => Promise<void> | void }, private readonly ctx: FeatureContext, private readonly k3s: () => K3sProcess | undefined) {}

  /** `k3s`: this node's k3s supervisor, when it runs one (late-bound: it starts later). */
  static async start (ctx: FeatureContext, k3s: () => K3sProcess | undefined): Promise<KubeconfigFeature> {
    const service = await serveKubeconfig({
      host: ctx.mesh.host,
      protocol: identifiers(ctx.config.token).kubeconfigProtocol,
      isMember: (a) => ctx.state().members.active.has(a),
      read: async () => await k3s()?.readKubeconfig(),
      cluster: ctx.config.cluster,
      log: ctx.log
    })
    return new KubeconfigFeature(service, ctx, k3s)
  }

  /** For the API: ask the cluster's init master, or read our own k3s kubeconfig when that is us. */
  async kubeconfigOf (cluster: string): Promise<string> {
    const state = this.ctx.state()
    try {
      return await this.fetch(state, cluster)
    } catch (err) {
      // A bridge (weft bridge, or --role client) never holds the kubeconfig: say where it is.
      if (err instanceof KubeconfigError && this.ctx.config.role === 'client') throw bridgeKubeconfigError(err, state, cluster)
      throw err
    }
  }

  private async fetch (state: ReturnType<FeatureContext['state']>, cluster: string): Promise<string> {
    const { ctx } = this
    const source = locateKubeconfigSource(state, cluster)
    if (source.author === ctx.identity.authorHex) {
      const text = await this.k3s()?.readKubeconfig()
      if (text === undefined) throw new KubeconfigError('not-ready', 'this node is the init master but its k3s has not written a kubeconfig yet (is it running with --k3s?)')
      return rewriteKubeconfigServer(text, source.serverUrl)
    }
    const { kubeconfig } = await fetchClusterKubeconfig({ host: ctx.mesh.host, state, cluster, protocol: identifiers(ctx.config.token).kubeconfigProtocol, signal: AbortSignal.timeout(15_000) })
    return kubeconfig
  }

  async stop (): Promise<void> { await this.service.stop() }
}
