import { openTun, type TunDevice, type TunStats } from '../adapters/tun-device.js'
import { addressDelete, addressReplace, linkUp, routeDelete, routeReplace, setMtu } from '../adapters/ip-command.js'
import { DataPlane, type DataPlaneHost, type DataPlaneStats } from '../net/data-plane.js'
import { PacketThread, packetThreadUnavailable } from '../net/packet-thread.js'
import type { MeshLogger } from '../net/mesh-logger.js'
import type { NetworkState } from '../projections/network.js'
import { leaseOf } from '../projections/ipam.js'
import { deriveRoutes } from '../projections/routes.js'
import { RouteIndex } from '../projections/route-index.js'
import { parseCidr } from '../projections/ip.js'

export interface VpnOptions {
  host: DataPlaneHost
  protocol: string
  tunName: string
  /** This node's author hex. */
  self: string
  log: MeshLogger
  now: () => number
  /** The direct path (data-plane.ts); absent = packets over the mesh streams only. */
  direct?: { protocol: string, hosts: string[], port: number }
}

export interface VpnStatus extends DataPlaneStats {
  device: string
  addresses: string[]
  mtu: number
  /** Networks routed into the device besides the overlay (other members' advertisements). */
  routes: string[]
  /** The direct path's TCP port, when it listens. */
  directPort?: number
  tun: TunStats
  /** Where device packets are read: the packet thread, or the main thread (with the reason). */
  packetThread: { running: boolean, restarts: number, reason?: string, loop?: 'native' | 'javascript', loopReason?: string }
}

/** What the kernel side should look like, derived from the log. */
interface Wanted { addresses: string[], mtu: number, routes: string[] }

/**
 * The VPN of one node: the TUN device, the data plane over the mesh, and the kernel state
 * (address, MTU, routes) kept in step with the log. `apply` is called after every change; it
 * computes what the device should have and changes only the difference, one run at a time.
 */
export class Vpn {
  private applied: Wanted = { addresses: [], mtu: 0, routes: [] }
  private running: Promise<void> = Promise.resolve()
  private latest: NetworkState | undefined
  private pending = false

  private constructor (private readonly tun: TunDevice, private readonly plane: DataPlane, private readonly thread: PacketThread | undefined, private readonly opts: VpnOptions) {}

  static async start (opts: VpnOptions): Promise<Vpn> {
    let vpn: Vpn | undefined
    const tun = await openTun({
      name: opts.tunName,
      offload: true,
      // One line per fault, with its cause; the device restarts or reopens by itself.
      onError: (err) => { opts.log.error({ code: err.code, err: err.message }, 'TUN device fault') },
      onReopen: () => { vpn?.reconfigure() }
    })
    let plane: DataPlane | undefined
    let deviceFault: ((cause: string) => void) | undefined
    let thread: PacketThread | undefined
    try {
      thread = PacketThread.start({
        vnetHeader: tun.vnetHeader,
        self: opts.self,
        log: opts.log,
        onPacket: (raw) => { plane?.fromThread(raw) },
        onDeviceFault: (cause) => { deviceFault?.(cause) },
        onGiveUp: () => { plane?.readDeviceHere(); tun.handBack() }
      })
    } catch (err) {
      opts.log.warn({ err: (err as Error).message }, 'the VPN packet thread could not start; packets are read on the main thread')
    }
    plane = new DataPlane({ host: opts.host, protocol: opts.protocol, device: tun, self: opts.self, log: opts.log, now: opts.now, ...(opts.direct !== undefined ? { direct: opts.direct } : {}), ...(thread !== undefined ? { thread } : {}) })
    try {
      await linkUp(tun.name)
      await plane.start()
      if (thread !== undefined) deviceFault = tun.handOver((fd) => { thread?.attachDevice(fd) })
    } catch (err) {
      await plane.stop().catch(() => {})
      await thread?.stop()
      await tun.close()
      throw err
    }
    opts.log.info({ device: tun.name, packetThread: thread !== undefined }, 'VPN device up')
    vpn = new Vpn(tun, plane, thread, opts)
    return vpn
  }

  /** The device was reopened (a new interface): put the link, addresses, MTU and routes back. */
  private reconfigure (): void {
    this.running = this.running.then(async () => {
      this.applied = { addresses: [], mtu: 0, routes: [] }
      await linkUp(this.tun.name).catch((err: Error) => { this.opts.log.error({ err: err.message }, 'could not bring the reopened VPN device up') })
    })
    if (this.latest !== undefined) void this.apply(this.latest)
  }

  /** Bring the device in line with the state; calls made while one runs collapse into one more run. */
  apply (state: NetworkState): Promise<void> {
    this.latest = state
    if (this.pending) return this.running
    this.pending = true
    this.running = this.running.then(async () => {
      this.pending = false
      const s = this.latest as NetworkState
      try {
        await this.reconcile(s)
      } catch (err) {
        this.opts.log.error({ err: (err as Error).message }, 'could not configure the VPN device')
      }
    })
    return this.running
  }

  private async reconcile (s: NetworkState): Promise<void> {
    const settings = s.settings.values
    const table = deriveRoutes(s.routes, s.ipam, settings)
    this.plane.setRoutes(new RouteIndex(table))
    const addresses: string[] = []
    for (const [family, overlay] of [[4, settings.overlayCidr], [6, settings.overlayCidr6]] as const) {
      const lease = leaseOf(s.ipam, this.opts.self, family)
      if (lease !== undefined && overlay !== null) addresses.push(`${lease.addr}/${parseCidr(overlay).prefix}`)
    }
    const wanted: Wanted = {
      addresses,
      mtu: settings.mtu,
      routes: table.routes.filter((r) => r.kind === 'advertised' && r.peer !== this.opts.self).map((r) => r.cidr).sort()
    }
    const dev = this.tun.name
    const { log } = this.opts
    for (const a of this.applied.addresses) {
      if (!wanted.addresses.includes(a)) await addressDelete(dev, a).catch(() => {})
    }
    for (const a of wanted.addresses) {
      if (!this.applied.addresses.includes(a)) {
        await addressReplace(dev, a)
        log.info({ device: dev, address: a }, 'VPN address set')
      }
    }
    if (wanted.mtu !== this.applied.mtu) await setMtu(dev, wanted.mtu)
    // The overlay route comes with the address; advertised networks are routed explicitly.
    for (const r of this.applied.routes) {
      if (!wanted.routes.includes(r)) await routeDelete(r, dev).catch(() => {})
    }
    for (const r of wanted.routes) {
      if (!this.applied.routes.includes(r)) {
        await routeReplace(r, dev)
        log.info({ device: dev, route: r }, 'VPN route added')
      }
    }
    this.applied = wanted
  }

  status (): VpnStatus {
    const thread = this.thread
    const tun = { ...this.tun.stats }
    if (thread !== undefined) {
      const t = thread.tunCounters()
      tun.rxPackets += t.rxPackets; tun.rxBytes += t.rxBytes; tun.txPackets += t.txPackets; tun.txBytes += t.txBytes; tun.txDropped += t.txDropped
      tun.faults += thread.restarts
    }
    const reason = thread === undefined ? packetThreadUnavailable() ?? 'it could not start (see the log)' : thread.gaveUp
    const loop = thread?.running === true ? thread.loop : undefined
    const packetThread = {
      running: thread?.running ?? false,
      restarts: thread?.restarts ?? 0,
      ...(reason !== undefined ? { reason } : {}),
      ...(loop !== undefined ? { loop: loop.native ? 'native' as const : 'javascript' as const } : {}),
      ...(loop?.reason !== undefined ? { loopReason: loop.reason } : {})
    }
    return { device: this.tun.name, addresses: [...this.applied.addresses], mtu: this.applied.mtu, routes: [...this.applied.routes], ...(this.plane.directPort !== undefined ? { directPort: this.plane.directPort } : {}), tun, packetThread, ...this.plane.stats() }
  }

  async stop (): Promise<void> {
    await this.running.catch(() => {})
    await this.plane.stop()
    await this.thread?.stop()
    // Closing a non-persistent TUN device deletes it, and its addresses and routes with it.
    await this.tun.close()
  }
}
