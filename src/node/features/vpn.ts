import { identifiers } from '../../log/token.js'
import type { NetworkState } from '../../projections/network.js'
import { VPN_CAP } from '../../projections/dns.js'
import type { Vpn } from '../vpn.js'
import type { Feature, FeatureContext } from '../feature.js'

/** The IP hosts of the mesh's TCP listen addresses: where the VPN's direct path listens too. */
function listenHosts (listen: readonly string[]): string[] {
  const hosts = new Set<string>()
  for (const ma of listen) {
    const m = /^\/ip[46]\/([^/]+)\/tcp\//.exec(ma)
    if (m !== null) hosts.add(m[1] as string)
  }
  return [...hosts]
}

/** The VPN data plane (TUN device and packet protocol) as a feature of the daemon. */
export class VpnFeature implements Feature {
  readonly name = 'vpn'
  private applied: Promise<void>

  private constructor (readonly vpn: Vpn, state: NetworkState) {
    this.applied = vpn.apply(state)
  }

  /** Loaded only with a TUN device (issue 16: a node pays for what it runs). */
  static async start (ctx: FeatureContext): Promise<VpnFeature> {
    const { Vpn } = await import('../vpn.js')
    const { config } = ctx
    const direct = config.directPort === 'off' ? undefined : { protocol: identifiers(config.token).directProtocol, hosts: listenHosts(config.listen), port: config.directPort }
    const vpn = await Vpn.start({ host: ctx.mesh.host, protocol: identifiers(config.token).packetProtocol, tunName: config.tunName, self: ctx.identity.authorHex, log: ctx.log, now: ctx.now, ...(direct !== undefined ? { direct } : {}) })
    return new VpnFeature(vpn, ctx.state())
  }

  /** Settles once the device has the addresses and routes of the latest state. */
  ready (): Promise<void> { return this.applied }

  onState (state: NetworkState): void { this.applied = this.vpn.apply(state) }
  status (): { vpn: ReturnType<Vpn['status']> } { return { vpn: this.vpn.status() } }
  caps (): string[] { return [VPN_CAP] }
  async stop (): Promise<void> { await this.vpn.stop() }
}
