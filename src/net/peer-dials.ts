import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { WeftHost } from './host.js'
import { isPlainConnection } from './transport-protector.js'
import type { MeshLogger } from './mesh-logger.js'
import type { PeerBook } from './peer-book.js'

/** How often a configured --peer that is not connected is dialled again. */
export const REDIAL_MS = 5_000
/** Discovered peers are dialled only below this many connections: a full mesh grows as N². */
export const DIAL_DISCOVERED_BELOW = 32
/** Known peers of this network re-dialled per sync round when disconnected (after a partition). */
const REDIAL_KNOWN_PER_ROUND = 4
/** A peer seen on the LAN (mDNS) is dialled again at most this often while not connected. */
export const LAN_REDIAL_MS = 10_000
/** Peers whose last LAN dial is remembered (the oldest forgotten first). */
const LAN_DIALS_KEPT = 1_024
/** Peers of the peer book dialled at start, most recently seen first, this many at a time. */
const BOOK_DIALS_AT_START = 16
const BOOK_DIAL_CONCURRENCY = 4

export interface PeerDialsOptions {
  host: WeftHost
  /** The configured peers (`--peer`): full multiaddrs with /p2p/<id>. */
  peers: readonly string[]
  log: MeshLogger
  stopped: () => boolean
  /** The clock of the LAN redial pace (default Date.now). */
  now?: () => number
}

/**
 * Whom a node dials, besides what discovery services and libp2p do on their own: configured
 * peers (again while not connected), the peer book at start, discovered peers (libp2p v3 has
 * no auto-dialler) and, after a partition, peers of this network it knew.
 */
export class PeerDials {
  private readonly lastDialError = new Map<string, string>()
  /** When each peer seen on the LAN was last considered for a dial (now()). */
  private readonly lanDials = new Map<string, number>()

  constructor (private readonly opts: PeerDialsOptions) {}

  /**
   * A peer answered on the LAN (every mDNS answer, not only its first). libp2p announces a peer
   * as discovered once, when it enters the peer store; if that first dial failed (a handshake
   * timed out on a loaded LAN, the peer was still starting) nothing dialled it again, and 30
   * nodes starting together on one LAN left some alone for good. Dialled again while not
   * connected, at most every LAN_REDIAL_MS.
   */
  seenOnLan (peerId: string): void {
    // discovered() skips ourselves, connected peers and a stopped node; this only paces.
    const now = (this.opts.now ?? Date.now)()
    const last = this.lanDials.get(peerId)
    if (last !== undefined && now - last < LAN_REDIAL_MS) return
    this.lanDials.delete(peerId)
    this.lanDials.set(peerId, now)
    if (this.lanDials.size > LAN_DIALS_KEPT) this.lanDials.delete(this.lanDials.keys().next().value as string)
    let id: PeerId
    try { id = peerIdFromString(peerId) } catch { return }
    this.discovered(id)
  }

  /** A peer found by mDNS or any discovery is only stored in the peer store until dialled. */
  discovered (id: PeerId): void {
    const { host } = this.opts
    if (this.opts.stopped() || id.equals(host.peerId) || host.getConnections(id).length > 0 || host.getConnections().length >= DIAL_DISCOVERED_BELOW) return
    host.dial(id, { signal: AbortSignal.timeout(10_000) }).catch((err: unknown) => {
      this.opts.log.debug({ peer: id.toString(), err: (err as Error).message }, 'cannot dial a discovered peer')
    })
  }

  /** Dial configured peers we are not connected to, and say why when that fails. */
  async dialConfigured (): Promise<void> {
    for (const p of this.opts.peers) {
      if (this.opts.stopped()) return
      const ma = multiaddr(p)
      const id = ma.getComponents().find((c) => c.name === 'p2p')?.value
      // Connected only plain (it took us for a public node) counts as not connected: the mesh
      // closes such a connection (Mesh.protect) and this dial makes a protected one.
      if (id !== undefined && this.opts.host.getConnections().some((c) => c.remotePeer.toString() === id && !isPlainConnection(c))) continue
      try {
        await this.opts.host.dial(ma, { signal: AbortSignal.timeout(10_000) })
        if (this.lastDialError.delete(p)) this.opts.log.info({ peer: p }, 'connected to configured peer')
      } catch (err) {
        const reason = (err as Error).message
        if (this.lastDialError.get(p) !== reason) {
          this.opts.log.warn({ peer: p, reason },
            'cannot connect to configured peer: if it is running, check that it was started with the same network token (a different token fails the private-network handshake)')
        }
        this.lastDialError.set(p, reason)
      }
    }
  }

  /** At start: the members the peer book knows, most recently seen first, before any discovery. */
  async dialBook (book: PeerBook): Promise<void> {
    const queue = book.entries().filter((e) => e.id !== this.opts.host.peerId.toString()).slice(0, BOOK_DIALS_AT_START)
    const worker = async (): Promise<void> => {
      for (let e = queue.shift(); e !== undefined && !this.opts.stopped(); e = queue.shift()) {
        const id = peerIdFromString(e.id)
        if (this.opts.host.getConnections(id).length > 0) continue
        try {
          await this.opts.host.peerStore.merge(id, { multiaddrs: e.addrs.map((a) => multiaddr(a)) })
          await this.opts.host.dial(id, { signal: AbortSignal.timeout(10_000) })
          this.opts.log.debug({ peer: e.id }, 'reconnected to a peer from the peer book')
        } catch (err) {
          this.opts.log.debug({ peer: e.id, err: (err as Error).message }, 'cannot reach a peer of the peer book')
        }
      }
    }
    await Promise.all(Array.from({ length: BOOK_DIAL_CONCURRENCY }, worker))
  }

  /**
   * After a partition heals, discovery does not announce peers it already knows, so nothing would
   * dial them again. Peers that spoke our sync protocol before and are not connected now are
   * dialled a few at a time while we have few connections.
   */
  async redialKnown (syncProtocol: string): Promise<void> {
    const { host } = this.opts
    if (this.opts.stopped() || host.getConnections().length >= DIAL_DISCOVERED_BELOW) return
    const known = await host.peerStore.all({ filters: [(p) => p.protocols.includes(syncProtocol) && host.getConnections(p.id).length === 0] }).catch(() => [])
    for (const p of known.sort(() => Math.random() - 0.5).slice(0, REDIAL_KNOWN_PER_ROUND)) {
      if (this.opts.stopped()) return
      await host.dial(p.id, { signal: AbortSignal.timeout(5_000) }).catch(() => {})
    }
  }
}
