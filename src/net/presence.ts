import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import { decode, encode } from 'cborg'
import { authorName, parseAuthorName } from '../log/author.js'
import { fromHex, toHex } from '../log/bytes.js'
import type { MeshLogger } from './mesh-logger.js'

/**
 * Liveness, kept out of the log: the log says who is a member, presence says who is up.
 *
 * Each pair of directly connected nodes keeps one long-lived stream (opened by the larger peer
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
 * Only the opener's heartbeats keep time: the other side answers each of them at once (at most
 * once per half interval), and sends on its own timer only when it has sent nothing for an
 * interval and a half (an opener that lags, or one of an older release). On the wire a link's
 * exchange is then one segment each way and one delayed ACK, where heartbeats on two timers cost
 * a segment and a delayed ACK each way (docs/mesh.md, "Who keeps time").
 *
 * Each heartbeat also carries its sequence number and an echo of the last one received
 * (`[seq, µs held]`), so each side measures the link's round trip from traffic it sends anyway,
 * and sets it on the connection the link rides (`Connection.rtt`: path choice, `weft peers ls`);
 * libp2p's own pings, a new stream per connection every 30 s, are not needed for that. The first
 * heartbeat on a link is answered at once, so a new link is measured within a round trip. A
 * heartbeat also carries an 8-byte digest of the sender's log frontier when it changed, so the
 * mesh skips anti-entropy sessions with peers whose log is the same as ours.
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
  /** The link's round trip measured from heartbeat echoes (ms); undefined until measured. */
  rttMs?: number
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
  forgetMs: 60 * 60_000,
  /** Bytes of a log digest. */
  digestBytes: 8,
  /** Heartbeats sent on a link whose send time is kept for its echo. */
  echoes: 4
} as const

/** What presence needs from the libp2p host. */
export interface PresenceHost {
  peerId: PeerId
  handle: (protocol: string | string[], handler: (stream: Stream, connection: Connection) => void, opts?: { maxInboundStreams?: number, maxOutboundStreams?: number }) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  getConnections: (peer?: PeerId) => Connection[]
}

export interface PresenceOptions {
  host: PresenceHost
  /** The protocol, newest version first: `[v3, v2]` (v2 links carry no echo and no digest). */
  protocols: readonly [string, ...string[]]
  /** The connection a new link should ride (the peer's best path); undefined: none usable. */
  pick: (conns: Connection[]) => Connection | undefined
  /** Heartbeat period (default 10 s); online means seen within 3 periods. */
  intervalMs: number
  now: () => number
  /** A monotonic clock (ms) for round trips; default performance.now. */
  clock?: () => number
  /** The digest of our log frontier (PRESENCE_LIMITS.digestBytes); absent: none sent. */
  digest?: () => Uint8Array
  log: MeshLogger
}

type Vouches = Array<[Uint8Array, number]>
/**
 * v2: [direct set or null when unchanged, vouches [author key, age ms][]];
 * v3 adds [seq, echo [seq received, µs held] or null, log digest or null when unchanged, direct
 * set diff [added, removed] or null]: after the first heartbeat a v3 link sends what changed in
 * the direct set, not the set (a churning peer cost every link the whole set per change).
 */
type DirectDiff = [Uint8Array[], Uint8Array[]]
type Heartbeat = [Uint8Array[] | null, Vouches] | [Uint8Array[] | null, Vouches, number, [number, number] | null, Uint8Array | null, DirectDiff | null]

interface Link {
  peer: PeerId
  author: string
  stream: Stream
  /** The connection the stream rides (its RTT is set from the echoes). */
  conn: Connection | undefined
  /** Whether the link speaks v3 (seq, echo, digest). */
  v3: boolean
  /** Whether we opened the stream: the opener's heartbeats keep time, the other side answers them. */
  opener: boolean
  /** When our latest heartbeat on this link went (now()). */
  lastSent: number
  lp: LengthPrefixedStream
  addrs: string[]
  lastHeard: number
  /** The authors this peer sees directly (what it last said). */
  theirDirect: Set<string>
  /** What we last told it about our direct set (undefined: nothing yet); v3 diffs are taken against it. */
  toldDirect: Set<string> | undefined
  sending: boolean
  /** A heartbeat asked for while one was being sent: send another after it. */
  again: boolean
  /** Our next heartbeat's seq, and when the latest ones went (seq → clock), for their echoes. */
  seq: number
  sentAt: Map<number, number>
  /** Their latest heartbeat not yet echoed: its seq and when it arrived (clock). */
  toEcho: { seq: number, at: number } | undefined
  rttMs: number | undefined
  theirDigest: Uint8Array | undefined
  sentDigest: string
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
  /** Heartbeats and their bytes; direct-set keys sent (whole sets and diffs). */
  readonly stats = { heartbeatsSent: 0, bytesSent: 0, directKeysSent: 0, answers: 0 }

  /** The clock round trips are measured with (monotonic, ms). */
  private readonly clock: () => number

  constructor (private readonly opts: PresenceOptions) {
    this.self = toHex(parseAuthorName(opts.host.peerId.toString()))
    this.clock = opts.clock ?? (() => performance.now())
  }

  private get windowMs (): number { return 3 * this.opts.intervalMs }

  async start (): Promise<void> {
    // One link per peer, opened by the larger peer id; 2, not 1, so a new link can replace one
    // whose close the other side has not seen yet.
    await this.opts.host.handle([...this.opts.protocols], (stream, conn) => { this.attach(conn.remotePeer, stream, conn, false) }, { maxInboundStreams: 2, maxOutboundStreams: 2 })
    this.timer = setInterval(() => { this.tick() }, this.opts.intervalMs)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer !== undefined) clearInterval(this.timer)
    for (const l of this.links.values()) l.stream.abort(new Error('presence stopped'))
    this.links.clear()
    for (const p of this.opts.protocols) await this.opts.host.unhandle(p).catch(() => {})
  }

  /** A peer that speaks our protocol was identified: open the link if it is ours to open. */
  async connected (peer: PeerId): Promise<void> {
    const id = peer.toString()
    if (this.stopped || this.links.has(id) || this.opening.has(id) || id > this.opts.host.peerId.toString()) return
    if (this.toOpen.size < PRESENCE_LIMITS.direct || this.toOpen.has(id)) this.toOpen.set(id, peer)
    this.opening.add(id)
    try {
      const conn = this.opts.pick(this.opts.host.getConnections(peer))
      if (conn === undefined) return
      const stream = await conn.newStream([...this.opts.protocols], { signal: AbortSignal.timeout(10_000) })
      this.attach(peer, stream, conn, true)
    } catch (err) {
      this.opts.log.debug({ peer: id, err: (err as Error).message }, 'presence link not opened')
    } finally {
      this.opening.delete(id)
    }
  }

  private attach (peer: PeerId, stream: Stream, conn: Connection | undefined, opener: boolean): void {
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
      peer, author, stream, conn, v3: stream.protocol === this.opts.protocols[0], opener, lastSent: 0,
      lp: lpStream(stream, { maxDataLength: PRESENCE_LIMITS.frameBytes }),
      addrs: conn !== undefined ? [conn.remoteAddr.toString()] : [],
      lastHeard: this.opts.now(), theirDirect: new Set(), toldDirect: undefined, sending: false, again: false,
      seq: 0, sentAt: new Map(), toEcho: undefined, rttMs: undefined, theirDigest: undefined, sentDigest: ''
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
        const hb = parseHeartbeat(frame.subarray(), link.v3)
        if (hb === undefined) throw new Error('malformed presence heartbeat')
        link.lastHeard = this.opts.now()
        this.heard(link.author, link.peer.toString(), 0)
        if (hb[0] !== null) link.theirDirect = new Set(hb[0].map(toHex))
        if (hb.length === 6 && hb[5] !== null) {
          for (const k of hb[5][0]) link.theirDirect.add(toHex(k))
          for (const k of hb[5][1]) link.theirDirect.delete(toHex(k))
          if (link.theirDirect.size > PRESENCE_LIMITS.direct) throw new Error('presence direct set over its bound')
        }
        for (const [key, age] of hb[1]) this.heard(toHex(key), authorName(key), age)
        if (hb.length === 6) this.echoed(link, hb[2], hb[3], hb[4])
      }
    } catch (err) {
      if (!this.stopped) this.opts.log.debug({ peer: link.peer.toString(), err: (err as Error).message }, 'presence link closed')
    } finally {
      this.drop(link)
    }
  }

  /** Their seq to echo, our round trip from their echo, and their digest. */
  private echoed (link: Link, seq: number, echo: [number, number] | null, digest: Uint8Array | null): void {
    const at = this.clock()
    link.toEcho = { seq, at }
    if (echo !== null) {
      const sent = link.sentAt.get(echo[0])
      // The peer held our heartbeat echo[1] µs before its reply left; what remains is the path.
      if (sent !== undefined) {
        const rtt = at - sent - echo[1] / 1000
        if (rtt >= 0) {
          link.rttMs = Math.round(rtt * 100) / 100
          if (link.conn !== undefined && link.conn.status === 'open') link.conn.rtt = link.rttMs
        }
        link.sentAt.delete(echo[0])
      }
    }
    if (digest !== null) link.theirDigest = digest
    // A new link's first heartbeat is answered now, so its round trip is known within one; the
    // side that did not open the link answers the opener's heartbeats (the opener keeps time).
    // At most one answer per half interval: a member that floods heartbeats gets no more back.
    if (seq === 0 || (!link.opener && this.opts.now() - link.lastSent >= this.opts.intervalMs / 2)) {
      this.stats.answers++
      void this.send(link)
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
      // A peer silent for the whole window is gone even if its connection still looks open: the
      // connection is dead too (what libp2p's connection pings used to find), so it is closed.
      if (now - link.lastHeard > this.windowMs) {
        this.drop(link)
        if (link.conn?.status === 'open') {
          this.opts.log.info({ peer: link.peer.toString(), silentMs: now - link.lastHeard }, 'no presence heartbeat from a peer for the whole window: closing its connection (it is dead, or the peer stuck)')
          link.conn.abort(new Error(`no presence heartbeat for ${this.windowMs} ms`))
        }
        continue
      }
      // The answering side sends on its own only when it has not answered for an interval and a
      // half (the half: the opener's timer and ours drift against each other).
      if (link.v3 && !link.opener && now - link.lastSent < 1.5 * this.opts.intervalMs) continue
      void this.send(link)
    }
    for (const [id, peer] of this.toOpen) {
      if (this.opts.host.getConnections(peer).length === 0) this.toOpen.delete(id)
      else if (!this.links.has(id)) void this.connected(peer)
    }
    this.forget(now)
  }

  private async send (link: Link): Promise<void> {
    if (link.sending) { link.again = true; return }
    link.sending = true
    link.again = false
    try {
      const now = this.opts.now()
      const direct = [...this.links.values()].map((l) => l.author).sort().slice(0, PRESENCE_LIMITS.direct)
      const told = link.toldDirect
      const current = new Set(direct)
      const added = told === undefined ? direct : direct.filter((a) => !told.has(a))
      const removed = told === undefined ? [] : [...told].filter((a) => !current.has(a))
      const sendDirect = told === undefined || added.length + removed.length > 0
      const vouches: Array<[Uint8Array, number]> = []
      for (const [author, e] of this.seen) {
        if (vouches.length >= PRESENCE_LIMITS.vouches) break
        const age = now - e.lastSeen
        if (age > this.windowMs || author === link.author || link.theirDirect.has(author)) continue
        vouches.push([fromHex(author), Math.max(0, Math.round(age))])
      }
      const directSet = sendDirect ? direct.map(fromHex) : null
      let hb: Heartbeat = [directSet, vouches]
      let digestKey = link.sentDigest
      if (link.v3) {
        const seq = link.seq++
        const clock = this.clock()
        const echo: [number, number] | null = link.toEcho !== undefined ? [link.toEcho.seq, Math.max(0, Math.round((clock - link.toEcho.at) * 1000))] : null
        link.toEcho = undefined
        const digest = this.opts.digest?.()
        digestKey = digest !== undefined ? toHex(digest) : ''
        // A diff once the peer holds a set, when it is shorter than the set.
        const asDiff = sendDirect && told !== undefined && added.length + removed.length < current.size
        const full = asDiff ? null : directSet
        const diff: DirectDiff | null = asDiff ? [added.map(fromHex), removed.map(fromHex)] : null
        hb = [full, vouches, seq, echo, digest !== undefined && digestKey !== link.sentDigest ? digest : null, diff]
        link.sentAt.set(seq, clock)
        if (link.sentAt.size > PRESENCE_LIMITS.echoes) link.sentAt.delete(link.sentAt.keys().next().value as number)
      }
      const bytes = encode(hb)
      this.stats.directKeysSent += (hb[0]?.length ?? 0) + (hb.length === 6 && hb[5] !== null ? hb[5][0].length + hb[5][1].length : 0)
      await link.lp.write(bytes, { signal: AbortSignal.timeout(this.windowMs) })
      this.stats.heartbeatsSent++
      link.lastSent = this.opts.now()
      this.stats.bytesSent += bytes.byteLength
      if (sendDirect) link.toldDirect = current
      link.sentDigest = digestKey
    } catch {
      this.drop(link)
    } finally {
      link.sending = false
    }
    if (link.again && this.links.get(link.peer.toString()) === link) void this.send(link)
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
      return { author, peerId: e.peerId, lastSeen: e.lastSeen, direct: link !== undefined, addrs: link?.addrs ?? [], ...(link?.rttMs !== undefined ? { rttMs: link.rttMs } : {}) }
    })
  }

  /** The log digest a directly linked peer last sent (v3 links); undefined when unknown. */
  digestOf (peerId: string): Uint8Array | undefined {
    return this.links.get(peerId)?.theirDigest
  }

  /** Whether a connection carries a presence link (its RTT is measured by the heartbeats). */
  carries (conn: Connection): boolean {
    for (const l of this.links.values()) if (l.conn === conn && l.v3) return true
    return false
  }

  onlineCount (): number {
    let n = 0
    for (const a of this.seen.keys()) if (this.isOnline(a)) n++
    return n
  }
}

function parseHeartbeat (bytes: Uint8Array, v3: boolean): Heartbeat | undefined {
  const v = decode(bytes) as unknown
  if (!Array.isArray(v) || v.length !== (v3 ? 6 : 2)) return undefined
  const [direct, vouches, seq, echo, digest, diff] = v as [unknown, unknown, unknown, unknown, unknown, unknown]
  if (v3) {
    if (diff !== null && (!Array.isArray(diff) || diff.length !== 2 || !diff.every((d) => Array.isArray(d) && d.length <= PRESENCE_LIMITS.direct && d.every(isKey)))) return undefined
    if (!isCount(seq)) return undefined
    if (echo !== null && (!Array.isArray(echo) || echo.length !== 2 || !isCount(echo[0]) || !isCount(echo[1]))) return undefined
    if (digest !== null && !(digest instanceof Uint8Array && digest.byteLength === PRESENCE_LIMITS.digestBytes)) return undefined
  }
  if (direct !== null && (!Array.isArray(direct) || direct.length > PRESENCE_LIMITS.direct || !direct.every(isKey))) return undefined
  if (!Array.isArray(vouches) || vouches.length > PRESENCE_LIMITS.vouches) return undefined
  for (const x of vouches) {
    if (!Array.isArray(x) || x.length !== 2 || !isKey(x[0]) || !Number.isSafeInteger(x[1]) || (x[1] as number) < 0) return undefined
  }
  return v as Heartbeat
}

function isCount (x: unknown): x is number {
  return Number.isSafeInteger(x) && (x as number) >= 0
}

function isKey (x: unknown): x is Uint8Array {
  return x instanceof Uint8Array && x.byteLength === 32
}
