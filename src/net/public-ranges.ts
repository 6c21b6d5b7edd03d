import { Netmask } from 'netmask'
import { isPrivateIp } from '@libp2p/utils'
import { cidrContains, parseCidr, parseIp, type Cidr } from '../projections/ip.js'

/**
 * `--public-ranges`: address ranges libp2p should treat as public although its list of special
 * ranges (@libp2p/utils private-ip.js: RFC 1918, 100.64.0.0/10 CGNAT, 198.18.0.0/15 benchmarking,
 * the documentation ranges, …) calls them private. What "public" changes: such addresses are
 * announced to the public DHT, kept by its peer-info mappers, offered to hole punching (DCUtR only
 * tries public addresses) and confirmed by AutoNAT. Operators of a private WAN on CGNAT space and
 * the simulated internet of the system tests (198.18.0.0/15) need it.
 *
 * libp2p has no option for this; its check is `Netmask#contains` over a fixed list (module
 * private), so the one place to change the answer is there: for an address inside a configured
 * range, a *private-list* range answers "not contained". Netmask objects of anyone else (whose
 * range is not on libp2p's list) are left alone. Process-wide, like libp2p's list itself: a daemon
 * runs one network.
 */

/** libp2p's special IPv4 ranges (private-ip.js, @libp2p/utils 7.x) that a public range may override. */
const LIBP2P_PRIVATE_V4 = new Set([
  '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12',
  '192.0.0.0/24', '192.0.0.0/29', '192.0.0.8/32', '192.0.0.9/32', '192.0.0.10/32', '192.0.0.170/32',
  '192.0.0.171/32', '192.0.2.0/24', '192.31.196.0/24', '192.52.193.0/24', '192.88.99.0/24',
  '192.168.0.0/16', '192.175.48.0/24', '198.18.0.0/15', '198.51.100.0/24', '203.0.113.0/24', '240.0.0.0/4'
])

let publicRanges: Cidr[] = []
let installed = false

function inPublicRange (ip: string): boolean {
  if (publicRanges.length === 0) return false
  try {
    const p = parseIp(ip)
    return publicRanges.some((c) => cidrContains(c, p.family, p.value))
  } catch {
    return false
  }
}

/** Make libp2p treat addresses inside `cidrs` as public (replaces an earlier call's ranges). */
export function treatAsPublic (cidrs: readonly string[]): void {
  publicRanges = cidrs.map((c) => parseCidr(c))
  if (installed || publicRanges.length === 0) return
  installed = true
  const proto = Netmask.prototype as unknown as { contains: (ip: unknown) => boolean, base: string, bitmask: number }
  const original = proto.contains
  proto.contains = function (this: typeof proto, ip: unknown): boolean {
    if (typeof ip === 'string' && LIBP2P_PRIVATE_V4.has(`${this.base}/${this.bitmask}`) && inPublicRange(ip)) return false
    return original.call(this, ip)
  }
}

/** libp2p's verdict, after `treatAsPublic` (for status, tests and the lab). */
export function libp2pCallsPrivate (ip: string): boolean {
  return isPrivateIp(ip) === true
}
