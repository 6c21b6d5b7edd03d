import { KUBE_API_CAP, KubeApiShare, kubeApiTargetFromKubeconfig } from '../kube-share.js'
import type { Feature, FeatureContext } from '../feature.js'

/** This cluster's Kubernetes API shared with the members --allow names (--share-kube-api). */
export class KubeShareFeature implements Feature {
  readonly name = 'kube-share'

  private constructor (readonly share: KubeApiShare) {}

  static async start (ctx: FeatureContext): Promise<KubeShareFeature> {
    const { config } = ctx
    // The API server named by the kubeconfig (or by k3s's own, on a k3s server).
    const kubeconfig = config.kubeconfig === 'in-cluster' ? undefined : config.kubeconfig ?? config.k3sKubeconfig
    return new KubeShareFeature(new KubeApiShare({ target: await kubeApiTargetFromKubeconfig({ kubeconfig }), allow: config.allow, state: ctx.state, log: ctx.log }))
  }

  status (): { kubeShare: Record<string, unknown> } { return { kubeShare: { ...this.share.stats() } } }
  caps (): string[] { return [KUBE_API_CAP] }
  async stop (): Promise<void> { await this.share.stop() }
}
