import type { ProblemReport } from './feature.js'

/**
 * Checks of this host that explain silent failures (issue 17), as pure functions of what the
 * kernel says (adapters/host-network.ts reads it): mDNS with no multicast route, --advertise with
 * forwarding off.
 */

const IFF_UP = 0x1
const IFF_LOOPBACK = 0x8
const IFF_MULTICAST = 0x1000
/** The mDNS group, 224.0.0.251. */
const MDNS_GROUP = (224 << 24 | 251) >>> 0

interface Ipv4Route { iface: string, dest: number, mask: number, flags: number }

/** /proc/net/route: addresses are 32-bit hex in host (little-endian) byte order. */
export function parseIpv4Routes (text: string): Ipv4Route[] {
  const le = (hex: string): number => {
    const n = Number.parseInt(hex, 16)
    return (((n & 0xff) << 24) | ((n >>> 8 & 0xff) << 16) | ((n >>> 16 & 0xff) << 8) | (n >>> 24 & 0xff)) >>> 0
  }
  return text.split('\n').slice(1).map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 8)
    .map((f) => ({ iface: f[0] as string, dest: le(f[1] as string), flags: Number.parseInt(f[3] as string, 16), mask: le(f[7] as string) }))
    .filter((r) => Number.isFinite(r.dest) && Number.isFinite(r.mask) && Number.isFinite(r.flags))
}

/**
 * The interface multicast to 224.0.0.251 leaves by (the longest matching route that is up), or
 * undefined when there is no such route.
 */
export function multicastInterface (routes: readonly Ipv4Route[]): string | undefined {
  let best: Ipv4Route | undefined
  for (const r of routes) {
    if ((r.flags & 0x1) === 0 || ((MDNS_GROUP & r.mask) >>> 0) !== r.dest) continue
    if (best === undefined || (r.mask >>> 0) > (best.mask >>> 0)) best = r
  }
  return best?.iface
}

/**
 * mDNS finds nobody when its queries cannot leave the host: no route for the multicast group, or
 * one through loopback or an interface that is down or has multicast off. Undefined (no problem)
 * when mDNS is off or the routing table is unknown (not Linux).
 */
export function mdnsProblem (opts: { mdns: boolean, routes: string | undefined, flags: ReadonlyMap<string, number> }): ProblemReport | undefined {
  if (!opts.mdns || opts.routes === undefined) return undefined
  const iface = multicastInterface(parseIpv4Routes(opts.routes))
  const fix = 'add a route for multicast (e.g. `ip route add 224.0.0.0/4 dev eth0`, or a default route), enable multicast on the LAN interface (`ip link set eth0 multicast on`), or give --peer <multiaddr> of a running node (or --no-mdns to silence this)'
  if (iface === undefined) return { code: 'mdns-unusable', severity: 'warning', message: 'mDNS cannot find peers: this host has no route for multicast (224.0.0.251), so its queries never leave it', fix }
  const f = opts.flags.get(iface)
  if (f === undefined) return undefined
  const why = (f & IFF_LOOPBACK) !== 0 ? 'is the loopback interface' : (f & IFF_UP) === 0 ? 'is down' : (f & IFF_MULTICAST) === 0 ? 'has multicast off' : undefined
  return why === undefined ? undefined : { code: 'mdns-unusable', severity: 'warning', message: `mDNS cannot find peers: multicast (224.0.0.251) leaves by ${iface}, which ${why}`, fix }
}

/**
 * A node that advertises a network (--advertise) routes packets from the overlay into it; with
 * the kernel's forwarding off every such packet is dropped (100% loss, silently).
 */
export function forwardingProblem (advertise: readonly string[], forwarding: { v4?: boolean, v6?: boolean }): ProblemReport | undefined {
  const v4 = advertise.filter((c) => !c.includes(':'))
  const v6 = advertise.filter((c) => c.includes(':'))
  const v4off = v4.length > 0 && forwarding.v4 === false
  const v6off = v6.length > 0 && forwarding.v6 === false
  const off = [...(v4off ? ['net.ipv4.ip_forward'] : []), ...(v6off ? ['net.ipv6.conf.all.forwarding'] : [])]
  if (off.length === 0) return undefined
  return {
    code: 'ip-forward-off',
    severity: 'error',
    message: `--advertise ${[...(v4off ? v4 : []), ...(v6off ? v6 : [])].join(', ')}: the kernel does not forward packets (${off.map((k) => `${k}=0`).join(', ')}), so traffic to the advertised networks is dropped`,
    fix: `${off.map((k) => `sysctl -w ${k}=1`).join('; ')} (and keep it: echo ${off.map((k) => `${k}=1`).join(' ')} in /etc/sysctl.d/99-weft.conf)`
  }
}
