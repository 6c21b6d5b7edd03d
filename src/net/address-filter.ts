/**
 * Which addresses the mesh may listen on, announce and dial (docs/vpn.md, "Which path").
 *
 * The trap it avoids: a host that also runs other tunnels (WireGuard, tinc, nebula, Tailscale,
 * ZeroTier, Yggdrasil) or Kubernetes networking (cni0, flannel.1, cilium_host, docker0, veth*,
 * vxlan, kube-ipvs0) has addresses that libp2p would announce and peers would dial: the peer link
 * then runs over another tunnel (slow, or dead when that tunnel is), or over Weft's own TUN (the
 * tunnel inside itself). Pod CIDRs also overlap between clusters, so such an address may even
 * reach the wrong machine. By default none of them is used:
 * - addresses of interfaces whose name matches DEFAULT_EXCLUDED_INTERFACES (and Weft's own TUN),
 *   and any address in the subnet of such an interface;
 * - addresses inside the overlay (its IPv4 and IPv6 CIDRs) and inside networks other members
 *   advertise (routed into the TUN);
 * - the CIDRs given with `--path-exclude`.
 * `--path-include` takes an interface name (glob with `*`) or a CIDR back in; an include beats
 * the default list, an explicit exclude beats an include. Loopback and names (/dns4/...) are
 * always allowed; a relayed address is judged by its relay's address.
 */
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os'
import { WeftError } from '../log/errors.js'
import { cidrContains, parseCidr, parseIp, type Cidr } from '../projections/ip.js'
import type { NetworkState } from '../projections/network.js'
import { deriveRoutes } from '../projections/routes.js'

/** Interface names (globs) of tunnels and virtual networks, never used for the mesh by default. */
export const DEFAULT_EXCLUDED_INTERFACES: readonly string[] = [
  'weft*', 'wg*', 'tun*', 'tap*', 'tailscale*', 'nebula*', 'zt*', 'ygg*', 'cni*', 'flannel*', 'cilium*',
  'docker*', 'veth*', 'vxlan*', 'kube-ipvs*'
]

/** How long the interface list is reused before it is read again (interfaces come and go). */
const INTERFACES_TTL_MS = 2_000

export interface AddressFilterOptions {
  /** Weft's own TUN device name. */
  tunName?: string
  /** Interface globs or CIDRs taken back in (`--path-include`). */
  include?: readonly string[]
  /** Interface globs or CIDRs left out besides the defaults (`--path-exclude`). */
  exclude?: readonly string[]
  /** The overlay CIDRs and other members' advertised networks, now (from the log). */
  overlay?: () => readonly string[]
  /** os.networkInterfaces (tests pass a fixed table). */
  interfaces?: () => NodeJS.Dict<NetworkInterfaceInfo[]>
  now?: () => number
}

interface Rules { globs: RegExp[], cidrs: Cidr[] }

/** Splits `--path-include/--path-exclude` values into interface globs and CIDRs; throws on a bad one. */
export function parsePathRules (values: readonly string[], flag: string): Rules {
  const rules: Rules = { globs: [], cidrs: [] }
  for (const v of values) {
    if (v.includes('/')) {
      try {
        rules.cidrs.push(parseCidr(v))
      } catch (err) {
        throw new WeftError('ERR_BAD_CONFIG', `${flag} ${JSON.stringify(v)}: ${(err as Error).message}; give an interface name (wg0, tun*) or a CIDR (10.8.0.0/16)`)
      }
    } else if (/^[\w.*:@-]{1,32}$/.test(v)) {
      rules.globs.push(glob(v))
    } else {
      throw new WeftError('ERR_BAD_CONFIG', `${flag} ${JSON.stringify(v)} is neither an interface name (letters, digits, . - _ and * as a wildcard) nor a CIDR such as 10.8.0.0/16`)
    }
  }
  return rules
}

function glob (pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\-]/g, '\\$&').replace(/\*/g, '.*')}$`)
}

function subnet (addr: string, prefix: number): Cidr | undefined {
  try {
    const ip = parseIp(addr.split('%')[0] as string)
    const bits = ip.family === 4 ? 32 : 128
    const host = BigInt(bits - prefix)
    return { family: ip.family, base: (ip.value >> host) << host, prefix, text: `${addr}/${prefix}` }
  } catch {
    return undefined
  }
}

function prefixOf (info: NetworkInterfaceInfo): number {
  const m = /\/(\d+)$/.exec(info.cidr ?? '')
  return m !== null ? Number(m[1]) : info.family === 'IPv4' ? 32 : 128
}

export class AddressFilter {
  private readonly defaults: RegExp[]
  private readonly include: Rules
  private readonly exclude: Rules
  private cache: { at: number, denied: Cidr[], allowed: string[] } | undefined
  /** The overlay list last parsed, and its CIDRs: the caller hands the same array until the log changes. */
  private overlayParsed: { from: readonly string[], cidrs: Cidr[] } | undefined

  constructor (private readonly opts: AddressFilterOptions = {}) {
    this.defaults = [...DEFAULT_EXCLUDED_INTERFACES, ...(opts.tunName !== undefined ? [opts.tunName] : [])].map(glob)
    this.include = parsePathRules(opts.include ?? [], '--path-include')
    this.exclude = parsePathRules(opts.exclude ?? [], '--path-exclude')
  }

  /** Whether an interface's addresses may carry the mesh. */
  allowsInterface (name: string): boolean {
    if (this.exclude.globs.some((g) => g.test(name))) return false
    if (this.include.globs.some((g) => g.test(name))) return true
    return !this.defaults.some((g) => g.test(name))
  }

  /** The subnets of excluded interfaces and the local addresses of allowed ones (cached briefly). */
  private local (): { denied: Cidr[], allowed: string[] } {
    const now = (this.opts.now ?? Date.now)()
    if (this.cache !== undefined && now - this.cache.at < INTERFACES_TTL_MS) return this.cache
    const denied: Cidr[] = []
    const allowed: string[] = []
    for (const [name, infos] of Object.entries((this.opts.interfaces ?? networkInterfaces)())) {
      const ok = this.allowsInterface(name)
      for (const info of infos ?? []) {
        if (ok) { allowed.push(info.address); continue }
        const s = subnet(info.address, prefixOf(info))
        if (s !== undefined) denied.push(s)
      }
    }
    this.cache = { at: now, denied, allowed }
    return this.cache
  }

  /** Whether the mesh may use this IP address (as a local or a remote address). */
  allowsIp (text: string): boolean {
    let ip
    try {
      ip = parseIp(text.split('%')[0] as string)
    } catch {
      return true // not an address we can judge (a name): libp2p resolves it later
    }
    const inside = (cidrs: readonly Cidr[]): boolean => cidrs.some((c) => cidrContains(c, ip.family, ip.value))
    if (inside(this.exclude.cidrs)) return false
    if (inside(this.include.cidrs)) return true
    if (ip.family === 4 ? ip.value >> 24n === 127n : ip.value === 1n) return true // loopback
    if (inside(this.overlayCidrs())) return false
    return !inside(this.local().denied)
  }

  private overlayCidrs (): Cidr[] {
    const list = this.opts.overlay?.() ?? []
    if (this.overlayParsed?.from === list) return this.overlayParsed.cidrs
    const cidrs: Cidr[] = []
    for (const c of list) {
      try { cidrs.push(parseCidr(c)) } catch {}
    }
    this.overlayParsed = { from: list, cidrs }
    return cidrs
  }

  /** Whether the mesh may announce or dial this multiaddr (judged by its first IP component). */
  allowsMultiaddr (ma: { toString: () => string }): boolean {
    const m = /^\/ip[46]\/([^/]+)/.exec(ma.toString())
    return m === null || this.allowsIp(m[1] as string)
  }

  /**
   * Listen addresses with each wildcard (0.0.0.0, ::) replaced by the allowed local addresses of
   * that family, when some interface is excluded (otherwise the wildcard stays, and addresses that
   * appear later are listened on too).
   */
  listenAddrs (listen: readonly string[]): string[] {
    const { denied, allowed } = this.local()
    if (denied.length === 0) return [...listen]
    const out: string[] = []
    for (const l of listen) {
      const m = /^\/ip([46])\/(0\.0\.0\.0|::)(\/.*)$/.exec(l)
      if (m === null) { out.push(l); continue }
      const v4 = m[1] === '4'
      for (const a of allowed) {
        if (a.includes(':') !== !v4 || !this.allowsIp(a) || a.startsWith('fe80:')) continue
        out.push(`/ip${v4 ? 4 : 6}/${a}${m[3] as string}`)
      }
    }
    return [...new Set(out)]
  }
}

/** The networks routed into the TUN, as seen from `self`: the overlay CIDRs and other members' advertisements. */
export function overlayNetworks (s: NetworkState, self: string): string[] {
  const v = s.settings.values
  const out: string[] = [v.overlayCidr, ...(v.overlayCidr6 !== null ? [v.overlayCidr6] : [])]
  for (const r of deriveRoutes(s.routes, s.ipam, v).routes) {
    if (r.kind === 'advertised' && r.peer !== self) out.push(r.cidr)
  }
  return out
}

/** What `bestConnection` needs of a libp2p connection. */
export interface PathCandidate { status: string, direct?: boolean, limits?: unknown, rtt?: number, remoteAddr: { toString: () => string } }

/** Whether a connection goes straight to the peer (not through a circuit relay). */
export function isDirect (c: PathCandidate): boolean {
  return c.direct !== false && c.limits === undefined && !c.remoteAddr.toString().includes('/p2p-circuit')
}

/**
 * The connection a peer's traffic should take among `conns` (open ones that `usable` accepts):
 * a direct one before a relayed one, an unlimited relayed one (a member relay) before a limited
 * one (a public relay's, which refuses the network's streams), then the lowest round-trip time
 * measured by libp2p's connection monitor (`rtt`, every 10 s; an unmeasured connection counts
 * as slowest).
 */
export function bestConnection<C extends PathCandidate> (conns: readonly C[], usable: (c: C) => boolean = () => true): C | undefined {
  let best: C | undefined
  const key = (c: C): [number, number] => [isDirect(c) ? 0 : c.limits === undefined ? 1 : 2, c.rtt !== undefined && c.rtt >= 0 ? c.rtt : Number.POSITIVE_INFINITY]
  for (const c of conns) {
    if (c.status !== 'open' || !usable(c)) continue
    if (best === undefined) { best = c; continue }
    const [d, r] = key(c)
    const [bd, br] = key(best)
    if (d < bd || (d === bd && r < br)) best = c
  }
  return best
}
