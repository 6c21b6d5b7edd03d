import { networkDnsSource, startDnsServer, type DnsServer, type NetworkDnsSource } from '../adapters/dns-server.js'
import type { MeshLogger } from '../net/mesh-logger.js'
import type { NetworkState } from '../projections/network.js'
import { leaseOf } from '../projections/ipam.js'
import type { DnsListen } from './config.js'

export interface DnsServiceOptions {
  listen: DnsListen[]
  upstreams: string[]
  state: () => NetworkState
  /** This node's author hex: whose lease "overlay" means. */
  self: string
  log: MeshLogger
}

/**
 * The node's DNS server, serving the dns projection. Listen addresses may name `overlay`, the
 * node's overlay address, which exists only once the lease is in the log and on the device: the
 * server is (re)started on the concrete addresses whenever they change.
 */
export class DnsService {
  private server: DnsServer | undefined
  private bound = ''
  private readonly answers: NetworkDnsSource
  private running: Promise<void> = Promise.resolve()
  private stopped = false

  constructor (private readonly opts: DnsServiceOptions) {
    this.answers = networkDnsSource(opts.state)
  }

  /** After a change to the log: new answers, and new listen addresses if the lease moved. */
  update (): Promise<void> {
    this.answers.invalidate()
    this.running = this.running.then(async () => { await this.rebind() }).catch((err: unknown) => {
      this.opts.log.error({ err: (err as Error).message }, 'DNS server could not listen')
    })
    return this.running
  }

  private concrete (): Array<{ host: string, port: number }> {
    const mine = leaseOf(this.opts.state().ipam, this.opts.self, 4)?.addr
    const out: Array<{ host: string, port: number }> = []
    for (const l of this.opts.listen) {
      if (l.host !== 'overlay') out.push({ host: l.host, port: l.port })
      else if (mine !== undefined) out.push({ host: mine, port: l.port })
    }
    return out
  }

  private async rebind (): Promise<void> {
    if (this.stopped) return
    const want = this.concrete()
    const key = JSON.stringify(want)
    if (key === this.bound) return
    if (this.server !== undefined) await this.server.close()
    this.server = undefined
    this.bound = key
    if (want.length === 0) return
    try {
      this.server = await startDnsServer({ listen: want, answer: this.answers, upstreams: this.opts.upstreams, log: this.opts.log })
    } catch (err) {
      // Try again on the next change (the overlay address may not be on the device yet).
      this.bound = ''
      throw err
    }
  }

  addresses (): Array<{ host: string, port: number, proto: string }> {
    return this.server?.addresses() ?? []
  }

  stats (): unknown {
    return this.server?.stats
  }

  async stop (): Promise<void> {
    this.stopped = true
    await this.running.catch(() => {})
    await this.server?.close()
  }
}
