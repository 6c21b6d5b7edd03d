import { readFileSync } from 'node:fs'
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os'
import multicastDNS from 'multicast-dns'
import { Netmask } from 'netmask'
import { mdns, type MulticastDNSInit } from '@libp2p/mdns'
import type { ComponentLogger, PeerDiscovery } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * mDNS that works without a default route, or says why it cannot.
 *
 * @libp2p/mdns sends its queries through the socket's default multicast interface, which the
 * kernel picks by routing 224.0.0.251: on a host with no default route and no multicast route
 * (a lab namespace, an isolated LAN) every query fails with ENETUNREACH, silently. Here the
 * interface is chosen explicitly (setMulticastInterface), so no route is needed; when there is
 * no interface that can carry multicast at all, `lanDiscoveryProblem` says so, with the fix.
 */

const IFF_UP = 0x1
const IFF_LOOPBACK = 0x8
const IFF_MULTICAST = 0x1000

export interface MulticastChoice { name: string, address: string }

export interface LanInterfaces {
  /** os.networkInterfaces (tests pass a table). */
  interfaces?: () => NodeJS.Dict<NetworkInterfaceInfo[]>
  /** Kernel interface flags (Linux /sys/class/net/<name>/flags); undefined when unknown. */
  flags?: (name: string) => number | undefined
  /** Whether the mesh may use this interface (the address filter: no tunnels, no TUN). */
  allowsInterface?: (name: string) => boolean
}

function sysFlags (name: string): number | undefined {
  try {
    return Number.parseInt(readFileSync(`/sys/class/net/${name}/flags`, 'utf8').trim(), 16)
  } catch {
    return undefined
  }
}

/**
 * Whether the kernel has a route for 224.0.0.251 (a default route or a multicast one), read from
 * /proc/net/route; true when that cannot be read (then the library's default is kept).
 */
export function hasMulticastRoute (routes: () => string = () => readFileSync('/proc/net/route', 'utf8')): boolean {
  let text: string
  try { text = routes() } catch { return true }
  for (const line of text.split('\n').slice(1)) {
    const [, dest, , , , , , mask] = line.trim().split(/\s+/)
    if (dest === undefined || mask === undefined) continue
    // Little-endian hex: 0.0.0.0/0 is 00000000/00000000; 224.0.0.0/4 is 000000E0/000000F0.
    const d = Number.parseInt(dest, 16)
    const m = Number.parseInt(mask, 16)
    if ((0xFB0000E0 & m) === (d & m)) return true
  }
  return false
}

/** The IPv4 interface mDNS should use: up, multicast-capable, not loopback, allowed for the mesh. */
export function multicastInterface (opts: LanInterfaces = {}): MulticastChoice | undefined {
  const flagsOf = opts.flags ?? sysFlags
  for (const [name, infos] of Object.entries((opts.interfaces ?? networkInterfaces)())) {
    if (opts.allowsInterface !== undefined && !opts.allowsInterface(name)) continue
    const f = flagsOf(name)
    if (f !== undefined && ((f & IFF_UP) === 0 || (f & IFF_MULTICAST) === 0 || (f & IFF_LOOPBACK) !== 0)) continue
    const v4 = (infos ?? []).find((i) => i.family === 'IPv4' && !i.internal)
    if (v4 !== undefined) return { name, address: v4.address }
  }
  return undefined
}

/** Why LAN discovery cannot work here, with the fix; undefined when it can (or mDNS is off). */
export function lanDiscoveryProblem (mdnsOn: boolean, opts: LanInterfaces = {}): string | undefined {
  if (!mdnsOn || multicastInterface(opts) !== undefined) return undefined
  return 'mDNS cannot find peers on the LAN: no network interface is up with an IPv4 address and multicast ' +
    '(only loopback, tunnels or interfaces without MULTICAST). Connect this machine to a LAN, give members ' +
    'with --peer, or rely on the peer book and public discovery; --no-mdns silences this'
}

type MdnsService = PeerDiscovery & {
  mdns?: ReturnType<typeof multicastDNS>
  components: { addressManager: { getAddresses: () => Multiaddr[] } }
  peerName: string
  broadcast: boolean
  port: number
  ip: string
  serviceTag: string
  interval: number
  _queryInterval: unknown
  _onMdnsQuery: (...a: unknown[]) => void
  _onMdnsResponse: (...a: unknown[]) => void
  _onMdnsWarning: (...a: unknown[]) => void
  _onMdnsError: (...a: unknown[]) => void
  start: () => Promise<void>
}

export interface QuietQueries {
  /** While `when()` holds, a query goes out at most this often (instead of every `interval`). */
  intervalMs: number
  when: () => boolean
}

/**
 * How often a connected node asks: every member answers every query by multicast, so at 10
 * nodes and 5 s each node sent ~2 answers a second, most of an idle LAN node's traffic. A
 * newcomer's own query at start is answered at once, and a node left alone asks every
 * `interval` again, so joining and healing do not wait for this.
 */
export const MDNS_QUIET_INTERVAL_MS = 60_000
/** The longest wait between queries while connected (a partition heals by mDNS within it). */
export const MDNS_QUIET_MAX_MS = 5 * 60_000

/**
 * The quiet interval for a node connected to `members` members: one minute per 10 of them, up to
 * MDNS_QUIET_MAX_MS. Every member answers every query, so a node's answers per minute are the
 * number of queriers over the interval: with the interval growing with the network, what each
 * node sends for mDNS stays about the same (at 30 nodes and one query a minute each node sent
 * 173 B/s of answers; docs/operations.md).
 */
export function mdnsQuietInterval (members: number): number {
  return Math.min(MDNS_QUIET_MAX_MS, MDNS_QUIET_INTERVAL_MS * Math.max(1, Math.ceil(members / 10)))
}

/** At each tick (every `interval`): ask, unless the node is connected and asked within the quiet interval. */
export function mdnsQueryDue (now: number, lastAsk: number, quiet: QuietQueries | undefined): boolean {
  return quiet === undefined || !quiet.when() || now - lastAsk >= quiet.intervalMs
}

const P2P = 421
const CIRCUIT = 290

/**
 * The TXT data of an mDNS answer: the node's addresses on the interface the query came in on
 * (`dnsaddr=<multiaddr with /p2p/>`), nothing else. The library answers with every private
 * address (loopback, other interfaces, relay addresses): 7–8 records, 1.4 KB and more per answer
 * (past 1,500 bytes it goes out as IP fragments), and every member answers every query, where a
 * peer on this LAN can use only the one address.
 */
export function mdnsAnswerAddrs (addrs: readonly Multiaddr[], interfaceAddress: string): string[] {
  const out: string[] = []
  for (const a of addrs) {
    const parts = a.getComponents()
    if (parts[0]?.value !== interfaceAddress || parts.some((c) => c.code === CIRCUIT) || parts.at(-1)?.code !== P2P) continue
    const data = 'dnsaddr=' + a.toString()
    if (data.length <= 255) out.push(data) // a TXT string's limit (RFC 6763 6.1)
  }
  return out
}

/** Our IPv4 address on the subnet of `peer` (where an mDNS query came from), if any. */
export function addressFacing (peer: string, interfaces: () => NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces): string | undefined {
  for (const infos of Object.values(interfaces())) {
    for (const i of infos ?? []) {
      if (i.family !== 'IPv4' || i.internal || i.cidr === null) continue
      try {
        if (new Netmask(i.cidr).contains(peer)) return i.address
      } catch {
        return undefined // not an IPv4 address: no interface of ours faces it
      }
    }
  }
  return undefined
}

/**
 * @libp2p/mdns bound to one interface (`pick()` at start; none: the library's default). The
 * start below is the library's own (v3.x), with `interface` passed to multicast-dns, which
 * joins the group on that interface and sends through it. Its periodic query is replaced by a
 * tick that follows `quiet`, and its answer by one that gives only the interface's addresses
 * (`mdnsAnswerAddrs`).
 */
export function interfaceMdns (init: MulticastDNSInit, pick: () => MulticastChoice | undefined, onPeer?: (peerId: string) => void, quiet?: QuietQueries): (components: { logger: ComponentLogger } & Record<string, unknown>) => PeerDiscovery {
  const factory = mdns(init) as unknown as (c: unknown) => MdnsService
  return (components) => {
    const service = factory(components)
    if (onPeer !== undefined) service.addEventListener('peer', (evt) => { onPeer(evt.detail.id.toString()) })
    const libraryStart = service.start.bind(service)
    // queryLAN is not exported: the query is sent here the way the library's query.js does it.
    let lastAsk = 0
    const ask = (): void => {
      lastAsk = Date.now()
      service.mdns?.query({ questions: [{ name: service.serviceTag, type: 'PTR' }] })
    }
    const tick = (): void => { if (mdnsQueryDue(Date.now(), lastAsk, quiet)) ask() }
    // The library's answer replaced: only the address the querier's subnet can reach (above).
    const answer = (qry: { questions?: Array<{ name?: string }> }, rinfo?: { address?: string }): void => {
      if (!service.broadcast || qry.questions?.[0]?.name !== service.serviceTag) return
      const facing = chosen?.address ?? (rinfo?.address !== undefined ? addressFacing(rinfo.address) : undefined)
      if (facing === undefined) return
      const txt = mdnsAnswerAddrs(service.components.addressManager.getAddresses(), facing)
      if (txt.length === 0) return
      const name = `${service.peerName}.${service.serviceTag}`
      service.mdns?.respond([
        { name: service.serviceTag, type: 'PTR', class: 'IN', ttl: 120, data: name },
        ...txt.map((data) => ({ name, type: 'TXT' as const, class: 'IN' as const, ttl: 120, data }))
      ])
    }
    let chosen: MulticastChoice | undefined
    service.start = async () => {
      if (service.mdns != null) return // started already
      const choice = pick()
      chosen = choice
      if (choice === undefined) {
        // The library's own start (default interface) asks at once and sets its own interval:
        // replaced by the tick. Its answer too.
        await libraryStart()
        lastAsk = Date.now()
        const started = (service as MdnsService).mdns // narrowed to undefined above, set by the start
        started?.removeListener('query', service._onMdnsQuery)
        started?.on('query', answer)
      } else {
        // bind to the wildcard: a socket bound to the interface's unicast address gets no multicast.
        service.mdns = multicastDNS({ port: service.port, ip: service.ip, interface: choice.address, bind: '0.0.0.0' })
        service.mdns.on('query', answer)
        service.mdns.on('response', service._onMdnsResponse)
        service.mdns.on('warning', service._onMdnsWarning)
        service.mdns.on('error', service._onMdnsError)
        ask()
      }
      clearInterval(service._queryInterval as NodeJS.Timeout)
      service._queryInterval = setInterval(tick, service.interval)
    }
    return service
  }
}
