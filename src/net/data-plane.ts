import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Multiaddr } from '@multiformats/multiaddr'
import { parseIp } from '../projections/ip.js'
import { authorName } from '../log/author.js'
import { fromHex, toHex } from '../log/bytes.js'
import type { RouteIndex } from '../projections/route-index.js'
import { FrameDecoder, VNET_HDR_BYTES } from './packet-frames.js'
import { PeerLink, streamChannel, type DropReason, type LinkCounters, type PacketChannel, type PathKind } from './peer-link.js'
import { DirectListener, OFFER_BYTES, connectDirect, decodeOffer, directChannel, encodeOffer, type DirectListenerOptions } from './direct-path.js'
import type { PacketThread } from './packet-thread.js'
import type { MeshLogger } from './mesh-logger.js'
import { bestConnection } from './address-filter.js'
import { DROP_REASONS } from './packet-thread-wire.js'
import { destinationPeer, isIp, isLinkChatter, sourceOwnedBy, withZeroHeader } from './packet-routing.js'

/** Where packets come from and go to: the TUN device, or an in-memory stand-in in tests. */
export interface PacketDevice {
  onPacket: (fn: (pkt: Uint8Array) => void) => void
  /** False when the device dropped the packet (its write queue is full). */
  write: (pkt: Uint8Array) => boolean
  /** After a burst of writes: read what the kernel answered to them at once (TunDevice.readNow). */
  readNow?: () => void
  /**
   * 10 when the device's packets start with a virtio_net_hdr (TUN offload), 0 or absent for
   * plain IP packets. Frames on the wire always carry the header.
   */
  readonly vnetHeader?: number
}

export interface DataPlaneHost {
  handle: (protocol: string, handler: (stream: Stream, connection: Connection) => void, opts?: { maxInboundStreams?: number, maxOutboundStreams?: number }) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  getConnections: (peer?: PeerId) => Connection[]
  dial: (peer: PeerId | Multiaddr[], opts?: { signal?: AbortSignal }) => Promise<Connection>
  peerStore: { get: (peer: PeerId) => Promise<{ addresses: Array<{ multiaddr: Multiaddr }> }> }
}

export interface DataPlaneOptions {
  host: DataPlaneHost
  protocol: string
  device: PacketDevice
  /** This node's author hex: packets routed to it never leave. */
  self: string
  log: MeshLogger
  now: () => number
  /**
   * The direct path (direct-path.ts): the libp2p protocol its offers go over, and where its
   * listener listens (the mesh's listen hosts; port 0 = any). Absent: packets use the mesh only.
   */
  direct?: { protocol: string, hosts: string[], port: number }
  /**
   * The packet thread (packet-thread.ts), when the device is read there: this data plane then
   * gets only the device packets the thread does not carry (through `fromThread`), and hands the
   * thread every direct connection once it is keyed.
   */
  thread?: PacketThread
}

export interface PeerTraffic extends LinkCounters {
  author: string
  peerId: string
  connected: boolean
  /** What carries packets to this peer now: the direct path, the libp2p stream, or nothing yet. */
  path: PathKind
}

export interface DataPlaneStats {
  peers: PeerTraffic[]
  drops: Record<DropReason, number>
}

/**
 * The VPN's packet path. Outbound: a packet read from the device goes to the peer that owns its
 * destination (a lease or an advertised CIDR) over that peer's link. Inbound: a packet from a
 * peer is written to the device only if that peer owns its source address; anything else is
 * dropped and counted, so one member cannot inject traffic in another's name.
 */
export class DataPlane {
  private routes: RouteIndex | undefined
  private readonly links = new Map<string, PeerLink>()
  private readonly counters = new Map<string, LinkCounters>()
  private readonly peerIds = new Map<string, PeerId>()
  private readonly drops = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>
  private listener: DirectListener | undefined
  private stopped = false

  constructor (private readonly opts: DataPlaneOptions) {}

  async start (): Promise<void> {
    const { direct } = this.opts
    if (direct !== undefined && direct.hosts.length > 0) {
      try {
        this.listener = await DirectListener.listen({
          hosts: direct.hosts,
          port: direct.port,
          log: this.opts.log,
          now: this.opts.now,
          deliver: (author, frames) => { this.deliver(author, frames) },
          malformed: () => { this.drop('malformed') },
          ...(this.opts.thread !== undefined ? { handOff: handOffTo(this.opts.thread) } : {})
        })
        await this.opts.host.handle(direct.protocol, (stream, conn) => { this.offer(stream, conn) }, { maxInboundStreams: 8, maxOutboundStreams: 8 })
      } catch (err) {
        // The mesh still carries every packet; say why the faster path is missing.
        this.opts.log.warn({ err: (err as Error).message, hosts: direct.hosts, port: direct.port }, 'the VPN direct path cannot listen; packets go over the mesh streams only')
        await this.listener?.close()
        this.listener = undefined
      }
    }
    await this.opts.host.handle(this.opts.protocol, (stream, conn) => { this.inbound(stream, conn) }, { maxInboundStreams: 4, maxOutboundStreams: 4 })
    if (this.opts.thread === undefined) this.opts.device.onPacket((pkt) => { this.outbound(pkt) })
  }

  /** A device packet the packet thread passed on (no direct connection to its peer there). */
  fromThread (raw: Uint8Array): void { this.outbound(raw) }

  /** The packet thread gave up: the device's packets come here from now on (then call TunDevice.handBack). */
  readDeviceHere (): void { this.opts.device.onPacket((pkt) => { this.outbound(pkt) }) }

  /** The direct path's port (undefined when it is off or could not listen). */
  get directPort (): number | undefined { return this.listener?.port }

  /** New routes from the log; links to peers that no longer own a route are closed. */
  setRoutes (index: RouteIndex): void {
    this.routes = index
    this.opts.thread?.setRoutes(index.routes)
    for (const [author, link] of this.links) {
      if (!index.peers.has(author)) { link.close(); this.links.delete(author) }
    }
  }

  private drop (reason: DropReason, n = 1): void { this.drops[reason] += n }

  private countersOf (author: string): LinkCounters {
    let c = this.counters.get(author)
    if (c === undefined) {
      c = { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0 }
      this.counters.set(author, c)
    }
    return c
  }

  private peerIdOf (author: string): PeerId {
    let id = this.peerIds.get(author)
    if (id === undefined) {
      id = peerIdFromString(authorName(fromHex(author)))
      this.peerIds.set(author, id)
    }
    return id
  }

  private outbound (raw: Uint8Array): void {
    // Frames carry the virtio header; a device without one gets an all-zero header (no offload).
    const frame = this.opts.device.vnetHeader === VNET_HDR_BYTES ? raw : withZeroHeader(raw)
    const ip = frame.subarray(VNET_HDR_BYTES)
    // Not a drop worth counting.
    if (isLinkChatter(ip)) return
    const routes = this.routes
    const peer = routes === undefined ? undefined : destinationPeer(routes, ip)
    if (peer === undefined || peer === this.opts.self) { this.drop(peer === undefined && ip.byteLength > 0 && !isIp(ip) ? 'malformed' : 'no_route'); return }
    let link = this.links.get(peer)
    if (link === undefined) {
      link = new PeerLink({
        dial: async (id, signal) => streamChannel(await this.openStream(id, signal)),
        ...(this.opts.direct !== undefined ? { direct: async (id: PeerId, signal: AbortSignal) => await this.openDirect(id, signal) } : {}),
        peer: this.peerIdOf(peer),
        counters: this.countersOf(peer),
        drop: (r, n) => { this.drop(r, n) },
        now: this.opts.now,
        log: this.opts.log
      })
      this.links.set(peer, link)
    }
    link.send(frame)
  }

  /**
   * Opens the packet stream to a peer over a connection that does not itself run through the
   * VPN. A peer announces every address it listens on, its overlay address included (and
   * addresses in networks members advertise); a dial to one of those is routed into weft0, i.e.
   * into this very link, which is not open yet: the dial hangs until its timeout (so packets
   * queue instead of failing fast, and a peer that comes back is reached only after the timeout),
   * or, if it got through, the tunnel would run inside itself. So an existing connection is used
   * only if its remote address is outside the VPN, and a new dial names only such addresses
   * (libp2p's own choice, by peer id, only when the peer store knows none).
   */
  private async openStream (peer: PeerId, signal: AbortSignal): Promise<Stream> {
    const { host, protocol } = this.opts
    const outside = (ma: Multiaddr): boolean => !this.throughVpn(ma)
    // Of several connections, the direct one with the lowest measured RTT (address-filter.ts).
    let conn = bestConnection(host.getConnections(peer), (c) => outside(c.remoteAddr))
    if (conn === undefined) {
      const known = await host.peerStore.get(peer).then((p) => p.addresses.map((a) => a.multiaddr), () => [])
      const id = peer.toString()
      const addrs = known.filter(outside).map((ma) => (ma.toString().includes(`/p2p/${id}`) ? ma : ma.encapsulate(`/p2p/${id}`)))
      conn = await host.dial(addrs.length > 0 ? addrs : peer, { signal })
    }
    return await conn.newStream(protocol, { signal })
  }

  /**
   * The direct path to a peer: an offer asked over the best direct (not relayed) connection
   * outside the VPN, then a TCP connection to that connection's remote address.
   */
  private async openDirect (peer: PeerId, signal: AbortSignal): Promise<PacketChannel> {
    const direct = this.opts.direct
    if (direct === undefined) throw new Error('the direct path is off')
    const conn = bestConnection(this.opts.host.getConnections(peer), (c) => !this.throughVpn(c.remoteAddr) && tcpHost(c.remoteAddr) !== undefined)
    if (conn === undefined) throw new Error('no direct TCP connection to the peer (relayed or not connected)')
    const host = tcpHost(conn.remoteAddr) as string
    const stream = await conn.newStream(direct.protocol, { signal })
    let offer
    try {
      offer = decodeOffer(await readExactly(stream, OFFER_BYTES, signal))
    } finally {
      void stream.close().catch(() => { stream.abort(new Error('done')) })
    }
    const socket = await connectDirect(host, offer, signal)
    const author = toHex(peer.publicKey?.raw ?? new Uint8Array(0))
    return this.opts.thread?.adoptOutbound(author, socket, offer.key, offer.session) ?? directChannel(socket, offer)
  }

  /** Answers a peer's request for a direct-path offer (made for that peer alone). */
  private offer (stream: Stream, conn: Connection): void {
    const key = conn.remotePeer.publicKey?.raw
    const listener = this.listener
    if (listener === undefined || key === undefined || key.byteLength !== 32) { stream.abort(new Error('no direct path here')); return }
    stream.send(encodeOffer(listener.offer(toHex(key))))
    void stream.close().catch(() => { stream.abort(new Error('offer not delivered')) })
  }

  /** Whether the kernel routes this address (its first IP component) into the VPN device. */
  private throughVpn (ma: Multiaddr): boolean {
    const routes = this.routes
    if (routes === undefined) return false
    const m = /^\/ip([46])\/([^/]+)/.exec(ma.toString())
    if (m === null) return false
    let ip
    try {
      ip = parseIp(m[2] as string)
    } catch {
      return false
    }
    const owner = ip.family === 4 ? routes.peerFor4(Number(ip.value)) : routes.peerFor6(ip.value)
    return owner !== undefined && owner !== this.opts.self
  }

  private inbound (stream: Stream, conn: Connection): void {
    const key = conn.remotePeer.publicKey?.raw
    if (key === undefined || key.byteLength !== 32) { stream.abort(new Error('packet streams need an Ed25519 peer')); return }
    const author = toHex(key)
    const decoder = new FrameDecoder()
    stream.addEventListener('message', (evt) => {
      const chunk = evt.data instanceof Uint8Array ? evt.data : evt.data.subarray()
      let packets: Uint8Array[]
      try {
        packets = decoder.push(chunk)
      } catch (err) {
        this.drop('malformed')
        stream.abort(err as Error)
        return
      }
      this.deliver(author, packets)
    })
  }

  /** Frames from a peer (over either path) into the device: only packets from addresses it owns. */
  private deliver (author: string, packets: Uint8Array[]): void {
    const counters = this.countersOf(author)
    const routes = this.routes
    const withHeader = this.opts.device.vnetHeader === VNET_HDR_BYTES
    for (const frame of packets) {
      const ip = frame.subarray(VNET_HDR_BYTES)
      if (routes === undefined || !sourceOwnedBy(routes, ip, author)) { this.drop(isIp(ip) ? 'spoofed' : 'malformed'); continue }
      counters.rxPackets++
      counters.rxBytes += ip.byteLength
      // A device without offload takes plain packets only: a segment (gso_type != 0) cannot go in.
      if (!withHeader && frame[1] !== 0) { this.drop('malformed'); continue }
      if (!this.opts.device.write(withHeader ? frame : ip)) this.drop('device_full')
    }
    // The replies the kernel made to these (a ping's echo reply, ACKs) leave in this same
    // callback, without another turn of the event loop.
    this.opts.device.readNow?.()
  }

  stats (): DataPlaneStats {
    const peers: PeerTraffic[] = []
    const thread = this.opts.thread
    const authors = new Set([...this.counters.keys(), ...(thread?.authors ?? [])])
    for (const author of authors) {
      const link = this.links.get(author)
      const c = { ...this.countersOf(author) }
      const t = thread?.peerCounters(author)
      if (t !== undefined) { c.txPackets += t.txPackets; c.txBytes += t.txBytes; c.rxPackets += t.rxPackets; c.rxBytes += t.rxBytes }
      peers.push({ author, peerId: this.peerIdOf(author).toString(), connected: link?.connected ?? false, path: link?.path ?? 'none', ...c })
    }
    peers.sort((a, b) => (a.peerId < b.peerId ? -1 : 1))
    const drops = { ...this.drops }
    if (thread !== undefined) for (const [r, n] of Object.entries(thread.drops())) drops[r as DropReason] += n
    return { peers, drops }
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    for (const l of this.links.values()) l.close()
    this.links.clear()
    await this.opts.host.unhandle(this.opts.protocol).catch(() => {})
    if (this.opts.direct !== undefined) await this.opts.host.unhandle(this.opts.direct.protocol).catch(() => {})
    await this.listener?.close()
  }
}

function handOffTo (thread: PacketThread): NonNullable<DirectListenerOptions['handOff']> {
  return ({ author, socket, key, leftover, closed }) => thread.adoptInbound(author, socket, key, leftover, closed)
}

/** The IP of a direct TCP multiaddr (/ip4|ip6/…/tcp/…, not relayed), else undefined. */
function tcpHost (ma: Multiaddr): string | undefined {
  const text = ma.toString()
  if (text.includes('/p2p-circuit')) return undefined
  return /^\/ip[46]\/([^/]+)\/tcp\/\d+/.exec(text)?.[1]
}

/** The first `n` bytes a stream delivers (rejects if it ends or the signal fires first). */
async function readExactly (stream: Stream, n: number, signal: AbortSignal): Promise<Uint8Array> {
  return await new Promise((resolve, reject) => {
    const out = new Uint8Array(n)
    let got = 0
    const done = (err?: Error): void => {
      stream.removeEventListener('message', onMessage)
      stream.removeEventListener('close', onClose)
      signal.removeEventListener('abort', onAbort)
      if (err !== undefined) reject(err); else resolve(out)
    }
    const onMessage = (evt: { data: Uint8Array | { subarray: () => Uint8Array } }): void => {
      const chunk = evt.data instanceof Uint8Array ? evt.data : evt.data.subarray()
      const take = Math.min(chunk.byteLength, n - got)
      out.set(chunk.subarray(0, take), got)
      got += take
      if (got === n) done()
    }
    const onClose = (): void => { done(new Error(`the stream ended after ${got} of ${n} bytes`)) }
    const onAbort = (): void => { done(new Error('timed out waiting for the direct-path offer')) }
    stream.addEventListener('message', onMessage)
    stream.addEventListener('close', onClose)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
