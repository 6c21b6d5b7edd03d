import { WeftError } from '../../log/errors.js'
import type { DnsService } from '../dns-service.js'
import type { Feature, FeatureContext } from '../feature.js'

/** The network's DNS server (--dns) as a feature of the daemon. */
export class DnsFeature implements Feature {
  readonly name = 'dns'

  private constructor (readonly dns: DnsService, private readonly ctx: FeatureContext) {}

  /** `clusterSetIps`: the MCS agent's ClusterSetIPs, when it runs (late-bound: it starts after DNS). */
  static async start (ctx: FeatureContext, clusterSetIps: (namespace: string, name: string) => readonly string[] | undefined): Promise<DnsFeature> {
    const { config } = ctx
    const { DnsService } = await import('../dns-service.js')
    const dns = new DnsService({
      listen: config.dns,
      upstreams: config.dnsUpstreams,
      allow: config.dnsAllow,
      clusterSetIps,
      state: ctx.state,
      self: ctx.identity.authorHex,
      log: ctx.log
    })
    await dns.update()
    if (dns.addresses().length === 0 && config.dns.every((l) => l.host !== 'overlay')) {
      await dns.stop()
      throw new WeftError('ERR_BAD_CONFIG', `the DNS server could not listen on ${config.dns.map((l) => `${l.host}:${l.port}`).join(', ')} (see the log above)`)
    }
    return new DnsFeature(dns, ctx)
  }

  /** Answers change now; an "overlay" listener binds once the device has the address. */
  onState (): void {
    void this.ctx.deviceReady().then(async () => { await this.dns.update() })
  }

  /** `ip:port` URLs of the sockets (IPv6 in brackets). */
  listen (): string[] {
    return this.dns.addresses().map((a) => `${a.proto}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`)
  }

  status (): { dns: { listen: string[], upstreams: string[] } } {
    return { dns: { listen: this.listen(), upstreams: this.ctx.config.dnsUpstreams } }
  }

  async stop (): Promise<void> { await this.dns.stop() }
}
