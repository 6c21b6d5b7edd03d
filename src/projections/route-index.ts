import { parseCidr } from './ip.js'
import type { Route, RouteTable } from './routes.js'

interface V4Net { base: number, mask: number, peer: string }
interface V6Net { base: bigint, mask: bigint, peer: string }

const V6_ALL = (1n << 128n) - 1n

/**
 * The route table compiled for the data plane, which asks two questions per packet: which peer
 * carries this destination, and does this peer own this source. Leases are exact addresses
 * (a map lookup); advertised CIDRs never overlap each other or the overlay (the routes
 * projection refuses conflicts), so the first match is the only one. IPv4 is kept in plain
 * numbers: a bigint per packet would cost more than the lookup.
 */
export class RouteIndex {
  private readonly leases4 = new Map<number, string>()
  private readonly leases6 = new Map<bigint, string>()
  private readonly nets4: V4Net[] = []
  private readonly nets6: V6Net[] = []
  /** Peers that own at least one route (the data plane keeps links to these only). */
  readonly peers = new Set<string>()
  /** What it was compiled from (the packet thread compiles its own copy from these). */
  readonly routes: readonly Route[]

  constructor (table: Pick<RouteTable, 'routes'>) {
    this.routes = table.routes
    for (const r of table.routes) {
      const c = parseCidr(r.cidr)
      this.peers.add(r.peer)
      if (c.family === 4) {
        if (c.prefix === 32) this.leases4.set(Number(c.base), r.peer)
        else this.nets4.push({ base: Number(c.base), mask: c.prefix === 0 ? 0 : (0xffffffff << (32 - c.prefix)) >>> 0, peer: r.peer })
      } else {
        if (c.prefix === 128) this.leases6.set(c.base, r.peer)
        else this.nets6.push({ base: c.base, mask: c.prefix === 0 ? 0n : (V6_ALL << BigInt(128 - c.prefix)) & V6_ALL, peer: r.peer })
      }
    }
  }

  peerFor4 (addr: number): string | undefined {
    const exact = this.leases4.get(addr)
    if (exact !== undefined) return exact
    for (const n of this.nets4) if (((addr & n.mask) >>> 0) === n.base) return n.peer
    return undefined
  }

  peerFor6 (addr: bigint): string | undefined {
    const exact = this.leases6.get(addr)
    if (exact !== undefined) return exact
    for (const n of this.nets6) if ((addr & n.mask) === n.base) return n.peer
    return undefined
  }

  /** Source check: a peer may only send from its lease or from a CIDR it advertises. */
  owns4 (peer: string, addr: number): boolean { return this.peerFor4(addr) === peer }
  owns6 (peer: string, addr: bigint): boolean { return this.peerFor6(addr) === peer }
}
