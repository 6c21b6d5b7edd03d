import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import { decode, encode } from 'cborg'
import { authorName, parseAuthorName } from '../log/author.js'
import { fromHex, toHex } from '../log/bytes.js'
import type { MeshLogger } from './mesh-logger.js'

/**
 * Liveness, kept out of the log: the log says who is a member, presence says who is up.
 *
 * Each pair of directly connected nodes keeps one long-lived stream (opened by the smaller peer
 * id) on which both sides send a heartbeat every `intervalMs`; a peer heard on it is seen
 * directly. The stream rides the connection, which pnet and noise already authenticate, so the
 * heartbeats are unsigned and a few bytes. A node also vouches for the nodes it has seen lately
 * to the peers that do not see them directly (the same heartbeat carries `[author, age]`); a
 * node is online when it was seen, directly or through a peer that vouches, within
 * `3 × intervalMs`. Ages, not timestamps, travel, so clocks do not matter, and an age only
 * grows as it is passed on: a cycle of peers cannot keep a stopped node alive.
 *
 * Idle traffic per node is one heartbeat per connected peer per interval, plus vouches only for
 * the nodes a peer cannot see itself (none in a full mesh): it does not grow with the size of the
 * network, only with the (capped) number of connections. The direct set is sent when the link
 * opens and when it changes (the stream is reliable and ordered, so never again otherwise).
 *
 * Trust: a member can vouch falsely for another (keep a stopped node "online" to its peers).
 * Presence only informs `weft status` and the API; nothing in the log or the data plane depends
 * on it.
 */
export interface PresenceEntry {
  author: string
  peerId: string
  /** Local time (ms) of the latest evidence, direct or vouched. */
  lastSeen: number
  /** True while a presence stream with this peer is open. */
  direct: boolean
  /** The addresses of the direct connection; empty for a vouched peer. */
  addrs: string[]
}

export const PRESENCE_LIMITS = {
  /** Bytes of one heartbeat (a direct set of 256 keys and 1,024 vouches fit). */
  frameBytes: 64 * 1024,
  /** Keys in a direct set, vouches in a heartbeat. */
  direct: 256,
  vouches: 1024,
  /** Authors remembered at most; the ones heard from longest ago go first. */
  tracked: 4096,
  /** An author not heard of for this long is forgotten. */
  forgetMs: 60 * 60_000
} as const

/** What presence needs from the libp2p host. */
export interface PresenceHost {
  peerId: PeerId
  handle: (protocol: string, handler: (stream: Stream, connection: Connection) => void, opts?: { maxInboundStreams?: number, maxOutboundStreams?: number }) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  dialProtocol: (peer: PeerId, protocol: string, opts?: { signal?: AbortSignal }) => Promise<Stream>
  getConnections: (peer?: PeerId) => Connection[]
}

export interface PresenceOptions {
  host: PresenceHost
  protocol: string
  /** Heartbeat period (default 10 s); online means seen within 3 periods. */
  intervalMs: number
  now: () => number
  log: MeshLogger
}

/** [direct set or null when unchanged, vouches [author key, age ms][]] */
type Heartbeat = [Uint8Array[] | null, Array<[Uint8Array, number]>]

interface Link {
  peer: PeerId
  author: string
  stream: Stream
  lp: LengthPrefixedStream
  addrs: string[]
  lastHeard: number
  /** The authors this peer sees directly (what it last said). */
  theirDirect: Set<string>
  /** What we last told it about our direct set. */
  sentDirect: string
  sending: boolean
}

export class Presence {
  private readonly seen = new Map<string, { lastSeen: number, peerId: string }>()
  private readonly links = new Map<string, Link>()
  /** Peers that speak the protocol and whose link we open (retried each tick while connected). */
  private readonly toOpen = new Map<string, PeerId>()
  private readonly opening = new Set<string>()
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  readonly self: string
  readonly stats = { heartbeatsSent: 0, bytesSent: 0 }

  constructor (private readonly opts: PresenceOptions) {
    this.self = toHex(parseAuthorName(opts.host.peerId.toString()))
  }

  private get windowMs (): number { return 3 * this.opts.intervalMs }

  async start (): Promise<void> {
    // One link per peer, opened by the smaller peer id; 2, not 1, so a new link can replace one
    // whose close the other side has not seen yet.
    await this.opts.host.handle(this.opts.protocol, (stream, conn) => { this.attach(conn.remotePeer, stream, conn) }, { maxInboundStreams: 2, maxOutboundStreams: 2 })
    this.timer = setInterval(() => { this.tick() }, this.opts.intervalMs)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer !== undefined) clearInterval(this.timer)
    for (const l of this.links.values()) l.stream.abort(new Error('presence stopped'))
    this.links.clear()
    await this.opts.host.unhandle(this.opts.protocol).catch(() => {})
  }

  /** A peer that speaks our protocol was identified: open the link if it is ours to open. */
  async connected (peer: PeerId): Promise<void> {
    const id = peer.toString()
    if (this.stopped || this.links.has(id) || this.opening.has(id) || id > this.opts.host.peerId.toString()) return
    if (this.toOpen.size < PRESENCE_LIMITS.direct || this.toOpen.has(id)) this.toOpen.set(id, peer)
    this.opening.add(id)
    try {
      const stream = await this.opts.host.dialProtocol(peer, this.opts.protocol, { signal: AbortSignal.timeout(10_000) })
      const conn = this.opts.host.getConnections(peer)[0]
      this.attach(peer, stream, conn)
    } catch (err) {
      this.opts.log.debug({ peer: id, err: (err as Error).message }, 'presence link not opened')
    } finally {
      this.opening.delete(id)
    }
  }

  private attach (peer: PeerId, stream: Stream, conn: Connection | undefined): void {
    const id = peer.toString()
    let author: string
    try {
      author = toHex(parseAuthorName(id))
    } catch {
      stream.abort(new Error('not an Ed25519 peer'))
      return
    }
    this.links.get(id)?.stream.abort(new Error('replaced by a newer presence link'))
    const link: Link = {
      peer, author, stream, lp: lpStream(stream, { maxDataLength: PRESENCE_LIMITS.frameBytes }),
      addrs: conn !== undefined ? [conn.remoteAddr.toString()] : [],
      lastHeard: this.opts.now(), theirDirect: new Set(), sentDirect: '\0', sending: false
    }
    this.links.set(id, link)
    this.heard(author, id, 0)
    void this.send(link)
    void this.readLoop(link)
  }

  private async readLoop (link: Link): Promise<void> {
    try {
      while (!this.stopped) {
        const frame = await link.lp.read()
        const hb = parseHeartbeat(frame.subarray())
        if (hb === undefined) throw new Error('malformed presence heartbeat')
        link.lastHeard = this.opts.now()
        this.heard(link.author, link.peer.toString(), 0)
        if (hb[0] !== null) link.theirDirect = new Set(hb[0].map(toHex))
        for (const [key, age] of hb[1]) this.heard(toHex(key), authorName(key), age)
      }
    } catch (err) {
      if (!this.stopped) this.opts.log.debug({ peer: link.peer.toString(), err: (err as Error).message }, 'presence link closed')
    } finally {
      this.drop(link)
    }
  }

  private drop (link: Link): void {
    if (this.links.get(link.peer.toString()) === link) this.links.delete(link.peer.toString())
    link.stream.abort(new Error('presence link closed'))
  }

  private heard (author: string, peerId: string, ageMs: number): void {
    if (author === this.self) return
    const at = this.opts.now() - ageMs
    const e = this.seen.get(author)
    if (e === undefined) {
      if (at < this.opts.now() - this.windowMs) return // stale news of a node we do not know: not worth a slot
      this.seen.set(author, { lastSeen: at, peerId })
    } else if (at > e.lastSeen) {
      e.lastSeen = at
    }
  }

  private tick (): void {
    const now = this.opts.now()
    for (const link of [...this.links.values()]) {
      // A peer silent for the whole window is gone even if its connection still looks open.
      if (now - link.lastHeard > this.windowMs) { this.drop(link); continue }
      void this.send(link)
    }
    for (const [id, peer] of this.toOpen) {
      if (this.opts.host.getConnections(peer).length === 0) this.toOpen.delete(id)
      else if (!this.links.has(id)) void this.connected(peer)
    }
    this.forget(now)
  }

  private async send (link: Link): Promise<void> {
    if (link.sending) return
    link.sending = true
    try {
      const now = this.opts.now()
      const direct = [...this.links.values()].map((l) => l.author).sort()
      const directKey = direct.join(',')
      const sendDirect = directKey !== link.sentDirect
      const vouches: Array<[Uint8Array, number]> = []
      for (const [author, e] of this.seen) {
        if (vouches.length >= PRESENCE_LIMITS.vouches) break
        const age = now - e.lastSeen
        if (age > this.windowMs || author === link.author || link.theirDirect.has(author)) continue
        vouches.push([fromHex(author), Math.max(0, Math.round(age))])
      }
      const hb: Heartbeat = [sendDirect ? direct.slice(0, PRESENCE_LIMITS.direct).map(fromHex) : null, vouches]
      const bytes = encode(hb)
      await link.lp.write(bytes, { signal: AbortSignal.timeout(this.windowMs) })
      this.stats.heartbeatsSent++
      this.stats.bytesSent += bytes.byteLength
      if (sendDirect) link.sentDirect = directKey
    } catch {
      this.drop(link)
    } finally {
      link.sending = false
    }
  }

  private forget (now: number): void {
    for (const [a, e] of this.seen) if (now - e.lastSeen > PRESENCE_LIMITS.forgetMs) this.seen.delete(a)
    if (this.seen.size <= PRESENCE_LIMITS.tracked) return
    const oldest = [...this.seen].sort((x, y) => x[1].lastSeen - y[1].lastSeen)
    for (const [a] of oldest.slice(0, this.seen.size - PRESENCE_LIMITS.tracked)) this.seen.delete(a)
  }

  isOnline (author: string): boolean {
    const e = this.seen.get(author)
    return e !== undefined && this.opts.now() - e.lastSeen <= this.windowMs
  }

  entries (): PresenceEntry[] {
    return [...this.seen].map(([author, e]) => {
      const link = this.links.get(e.peerId)
      return { author, peerId: e.peerId, lastSeen: e.lastSeen, direct: link !== undefined, addrs: link?.addrs ?? [] }
    })
  }

  onlineCount (): number {
    let n = 0
    for (const a of this.seen.keys()) if (this.isOnline(a)) n++
    return n
  }
}

function parseHeartbeat (bytes: Uint8Array): Heartbeat | undefined {
  const v = decode(bytes) as unknown
  if (!Array.isArray(v) || v.length !== 2) return undefined
  const [direct, vouches] = v as [unknown, unknown]
  if (direct !== null && (!Array.isArray(direct) || direct.length > PRESENCE_LIMITS.direct || !direct.every(isKey))) return undefined
  if (!Array.isArray(vouches) || vouches.length > PRESENCE_LIMITS.vouches) return undefined
  for (const x of vouches) {
    if (!Array.isArray(x) || x.length !== 2 || !isKey(x[0]) || !Number.isSafeInteger(x[1]) || (x[1] as number) < 0) return undefined
  }
  return v as Heartbeat
}

function isKey (x: unknown): x is Uint8Array {
  return x instanceof Uint8Array && x.byteLength === 32
}
