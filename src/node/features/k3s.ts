import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'
import type { K3sProcess, K3sStatus } from '../../adapters/k3s-process.js'
import { k3sClusterToken } from '../../log/token.js'
import { isK3sWait, planK3s } from '../../projections/k3s-plan.js'
import type { NetworkState } from '../../projections/network.js'
import type { Feature, FeatureContext, ProblemReport } from '../feature.js'

/** The k3s supervisor (--k3s): runs k3s as the roles projection decides, once stable. */
export class K3sFeature implements Feature {
  readonly name = 'k3s'
  private lastWait: string | undefined
  private stopped = false

  private constructor (readonly k3s: K3sProcess, private readonly configPath: string, private readonly ctx: FeatureContext) {}

  static async start (ctx: FeatureContext): Promise<K3sFeature> {
    const { config } = ctx
    const { K3sProcess, k3sPaths } = await import('../../adapters/k3s-process.js')
    const k3s = new K3sProcess({ dataDir: config.dataDir, k3sBin: config.k3sBin, kubeconfigPath: config.k3sKubeconfig, clusterToken: (c) => k3sClusterToken(config.token, c), log: ctx.log })
    const f = new K3sFeature(k3s, k3sPaths(config.dataDir).config, ctx)
    f.onState(ctx.state())
    return f
  }

  /** Hand the supervisor the plan for `s` once the VPN device has its address. */
  onState (s: NetworkState): void {
    if (this.stopped) return
    const { ctx, k3s } = this
    // Presence picks which server a joining node is pointed at (never a stopped one while another is up).
    const up = new Set(ctx.mesh.peers().filter((p) => p.online).map((p) => p.author))
    const plan = planK3s(s, ctx.identity.authorHex, { tunName: ctx.config.tunName, extraArgs: ctx.config.k3sArgs, configPath: this.configPath, online: (a) => up.has(a) })
    if (isK3sWait(plan) && plan.wait !== this.lastWait) ctx.log.info({ reason: plan.wait }, 'k3s is waiting')
    this.lastWait = isK3sWait(plan) ? plan.wait : undefined
    void ctx.deviceReady().then(async () => { await k3s.apply(plan) }).catch((err: unknown) => {
      ctx.log.error({ err: (err as Error).message }, 'k3s could not be started')
    })
  }

  status (): { k3s: Record<string, unknown> } { return { k3s: { ...this.k3s.status() } } }

  problems (): ProblemReport[] {
    return k3sProblems(this.k3s.status(), binaryFound(this.ctx.config.k3sBin ?? 'k3s'))
  }

  async stop (): Promise<void> {
    this.stopped = true
    await this.k3s.stop()
  }
}

/** What is wrong with k3s, from its supervisor's status and whether its binary exists. */
export function k3sProblems (s: K3sStatus, binFound: boolean): ProblemReport[] {
  if (!binFound) {
    return [{ code: 'k3s-missing', severity: 'error', message: 'k3s is not installed: --k3s is set but the k3s binary was not found', fix: 'install k3s (curl -sfL https://get.k3s.io | INSTALL_K3S_SKIP_START=true INSTALL_K3S_SKIP_ENABLE=true sh -), or give its path with --k3s-bin' }]
  }
  if (s.state === 'refused') {
    return [{ code: 'k3s-refused', severity: 'error', message: `k3s is not started: ${s.reason ?? 'refused'}`, fix: 'see docs/k3s.md ("bootstrap sentinel"); the data dir\'s k3s/bootstrapped.json records the role k3s first ran as' }]
  }
  if (s.state === 'backoff' && s.lastExit !== undefined) {
    const how = s.lastExit.signal !== null ? `signal ${s.lastExit.signal}` : `code ${String(s.lastExit.code)}`
    return [{ code: 'k3s-failed', severity: 'error', message: `k3s exited (${how}) and is restarted after a delay (${s.restarts} restart${s.restarts === 1 ? '' : 's'} so far)`, fix: 'read the k3s output tail in the daemon\'s log ("k3s exited"), fix what it names, and check the --k3s-arg flags' }]
  }
  return []
}

/** Whether `bin` (a path, or a name looked up on PATH) is an executable file. */
export function binaryFound (bin: string, path = process.env.PATH ?? ''): boolean {
  const candidates = bin.includes('/') ? [bin] : path.split(delimiter).filter((d) => d !== '').map((d) => join(d, bin))
  return candidates.some((c) => {
    try {
      accessSync(c, constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}
