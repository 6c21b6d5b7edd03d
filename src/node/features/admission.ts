import type { Admission } from '../admission.js'
import type { ApiRoute, Feature, FeatureContext } from '../feature.js'

/** Who may connect (revoked and forked members are hung up on) and the admin API, as a feature. */
export class AdmissionFeature implements Feature {
  readonly name = 'admission'

  constructor (readonly admission: Admission, private readonly ctx: FeatureContext) {}

  onState (): void {
    void this.admission.update().catch((err: unknown) => { this.ctx.log.error({ err: (err as Error).message }, 'admission update failed') })
  }

  routes (): ApiRoute[] { return this.admission.routes() }
  async stop (): Promise<void> {}
}
