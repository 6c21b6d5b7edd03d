/**
 * The VPN's direct path: packets to a peer over a plain TCP connection with ONE layer of AEAD
 * (the frames of transport-frames.ts, AES-256-GCM, node:crypto), instead of a libp2p stream,
 * which stacks the transport protection, noise and yamux on the same bytes. The libp2p stream
 * stays the fallback (relayed peers, a blocked port, any failure here); docs/vpn.md "Direct path".
 *
 * Keying goes through the mesh, which has already authenticated the peer (noise, PeerId): the
 * sender asks the receiver over the `direct` libp2p protocol and gets an OFFER, made for that
 * peer alone:
 *
 *   port (2 bytes, big-endian) | session id (16 random bytes) | key (32 random bytes)
 *
 * The sender then connects to that port at the address of the libp2p connection it asked over,
 * writes the session id, and from then on only frames sealed with the key (counter nonces).
 * The receiver knows which member a connection speaks for from the session, never from the
 * address. A session is used once and expires unused after DIRECT_LIMITS.sessionTtlMs, so a
 * recorded connection cannot be replayed; a wrong session, a bad frame or silence past the
 * handshake deadline closes the connection. Each direction of a pair has its own connection
 * (the sender of the packets dials), as each has its own libp2p packet stream.
 */
import { randomBytes } from 'node:crypto'
import { createServer, connect, type NetConnectOpts, type Server, type Socket } from 'node:net'
import { FrameOpener, FrameSealer } from './transport-frames.js'
import { FrameDecoder } from './packet-frames.js'
import { writeToSocket } from './socket-fd-write.js'
import { adoptForReading, type SocketReader } from './socket-fd-read.js'
import type { MeshLogger } from './mesh-logger.js'
import type { PacketChannel } from './peer-link.js'
import { toHex } from '../log/bytes.js'

export const DIRECT_LIMITS = {
  /** Offers made and not yet used; the oldest is forgotten beyond this. */
  pendingSessions: 256,
  /** An offer not used within this is forgotten. */
  sessionTtlMs: 10_000,
  /** A connection must name its session within this. */
  handshakeMs: 5_000,
  /** Connections not yet past the session id; more are refused at once. */
  unauthenticated: 64,
  /** Authenticated direct connections to this node. */
  connections: 1_024,
  /** Bytes written to a direct connection and not yet taken by the kernel before back-pressure. */
  socketBufferBytes: 1024 * 1024
} as const

export const OFFER_BYTES = 2 + 16 + 32
const SESSION_BYTES = 16

export interface DirectOffer { port: number, session: Uint8Array, key: Uint8Array }

export function encodeOffer (o: DirectOffer): Uint8Array {
  const out = new Uint8Array(OFFER_BYTES)
  out[0] = o.port >> 8
  out[1] = o.port & 0xff
  out.set(o.session, 2)
  out.set(o.key, 2 + SESSION_BYTES)
  return out
}

export function decodeOffer (b: Uint8Array): DirectOffer {
  if (b.byteLength !== OFFER_BYTES) throw new Error(`a direct-path offer is ${OFFER_BYTES} bytes, got ${b.byteLength}`)
  const port = ((b[0] as number) << 8) | (b[1] as number)
  if (port === 0) throw new Error('a direct-path offer names port 0')
  return { port, session: b.slice(2, 2 + SESSION_BYTES), key: b.slice(2 + SESSION_BYTES) }
}

export interface DirectListenerOptions {
  /** Addresses to listen on: where the mesh listens (never wider). */
  hosts: string[]
  /** 0 = a port the kernel picks (it travels in the offer). */
  port: number
  log: MeshLogger
  now: () => number
  /** Packet frames (virtio header + IP packet) that arrived from `author`. */
  deliver: (author: string, frames: Uint8Array[]) => void
  /** A connection sent something that is not a frame of its session. */
  malformed: () => void
  /**
   * Offered each connection once it named its session (the packet thread takes it: packet-thread.ts):
   * true when taken; `closed` must then be called once when it ends. Absent or false: read here.
   */
  handOff?: (c: { author: string, socket: Socket, key: Uint8Array, leftover: Uint8Array, closed: () => void }) => boolean
}

interface Session { author: string, key: Uint8Array, expires: number }

/** The receiving side: one TCP listener per host, and the offers it has made. */
export class DirectListener {
  private readonly sessions = new Map<string, Session>()
  private readonly sockets = new Set<Socket>()
  private readonly readers = new Set<SocketReader>()
  private unauthenticated = 0
  private authenticated = 0
  private refusedLogged = false

  private constructor (private readonly servers: Server[], readonly port: number, private readonly opts: DirectListenerOptions) {}

  static async listen (opts: DirectListenerOptions): Promise<DirectListener> {
    const servers: Server[] = []
    let port = opts.port
    let listener: DirectListener | undefined
    try {
      for (const host of opts.hosts) {
        const server = createServer({ noDelay: true }, (s) => { listener?.accept(s) })
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject)
          // Every host on the same port: the offer carries one.
          // ipv6Only: '::' next to '0.0.0.0' on the same port (a mesh listening on both) must not collide.
          server.listen({ host, port, exclusive: true, ipv6Only: host.includes(':') }, () => { server.off('error', reject); resolve() })
        })
        servers.push(server)
        if (port === 0) port = (server.address() as { port: number }).port
      }
    } catch (err) {
      for (const s of servers) s.close()
      throw err
    }
    listener = new DirectListener(servers, port, opts)
    return listener
  }

  /** A fresh offer for `author` (the member the offer stream was authenticated as). */
  offer (author: string): DirectOffer {
    const now = this.opts.now()
    for (const [id, s] of this.sessions) if (s.expires <= now) this.sessions.delete(id)
    while (this.sessions.size >= DIRECT_LIMITS.pendingSessions) this.sessions.delete(this.sessions.keys().next().value as string)
    const session = new Uint8Array(randomBytes(SESSION_BYTES))
    const key = new Uint8Array(randomBytes(32))
    this.sessions.set(toHex(session), { author, key, expires: now + DIRECT_LIMITS.sessionTtlMs })
    return { port: this.port, session, key }
  }

  /** `readByDescriptor`: connections read without Node's streams (socket-fd-read.ts). */
  get stats (): { sessions: number, connections: number, readByDescriptor: number } {
    return { sessions: this.sessions.size, connections: this.authenticated, readByDescriptor: this.readers.size }
  }

  private accept (s: Socket): void {
    if (this.unauthenticated >= DIRECT_LIMITS.unauthenticated || this.authenticated >= DIRECT_LIMITS.connections) { s.destroy(); return }
    this.unauthenticated++
    this.sockets.add(s)
    let authed = false
    let adopted = false
    let head = new Uint8Array(0)
    let opener: FrameOpener | undefined
    let author = ''
    const decoder = new FrameDecoder()
    const timer = setTimeout(() => { s.destroy() }, DIRECT_LIMITS.handshakeMs)
    const refuse = (why: string): void => {
      if (!this.refusedLogged) { this.refusedLogged = true; this.opts.log.info({ from: s.remoteAddress, why }, 'refused a direct-path connection (logged once)') }
      s.destroy()
    }
    /** Frames in; false when the connection must go (a bad frame). */
    const take = (data: Uint8Array): boolean => {
      try {
        const frames: Uint8Array[] = []
        for (const plain of (opener as FrameOpener).push(data)) for (const f of decoder.push(plain)) frames.push(f)
        if (frames.length > 0) this.opts.deliver(author, frames)
        return true
      } catch {
        this.opts.malformed()
        return false
      }
    }
    s.on('error', () => {})
    s.on('close', () => {
      clearTimeout(timer)
      this.sockets.delete(s)
      if (adopted) return // the connection lives on in the reader, which does its own accounting
      if (authed) this.authenticated--; else this.unauthenticated--
    })
    s.on('data', (chunk: Buffer) => {
      let data: Uint8Array = chunk
      if (opener === undefined) {
        const joined = new Uint8Array(head.byteLength + chunk.byteLength)
        joined.set(head)
        joined.set(chunk, head.byteLength)
        if (joined.byteLength < SESSION_BYTES) { head = joined; return }
        const id = toHex(joined.subarray(0, SESSION_BYTES))
        const session = this.sessions.get(id)
        if (session === undefined || session.expires <= this.opts.now()) { refuse('unknown or expired session'); return }
        this.sessions.delete(id) // once only: a replayed connection finds nothing
        clearTimeout(timer)
        authed = true
        this.unauthenticated--
        this.authenticated++
        author = session.author
        data = joined.subarray(SESSION_BYTES)
        // Marked before the hand-over: destroying the Node socket emits its 'close'.
        adopted = true
        if (this.opts.handOff?.({ author, socket: s, key: session.key, leftover: data, closed: () => { this.authenticated-- } }) === true) return
        adopted = false
        opener = new FrameOpener(session.key)
        if (data.byteLength > 0 && !take(data)) { s.destroy(); return }
        this.adopt(s, take, () => { adopted = true })
        return
      }
      if (!take(data)) s.destroy()
    })
  }

  /**
   * From its first frame on, an authenticated connection is read without Node's stream machinery
   * (socket-fd-read.ts) where that is possible; otherwise it stays on the Node socket.
   */
  private adopt (s: Socket, take: (data: Uint8Array) => boolean, adopted: () => void): void {
    let reader: SocketReader | undefined
    const end = (): void => {
      if (reader === undefined) return
      this.readers.delete(reader)
      this.authenticated--
      reader = undefined
    }
    // Marked before the hand-over: destroying the Node socket emits its 'close'.
    adopted()
    reader = adoptForReading(s, {
      data: (chunk) => { if (!take(chunk)) { const r = reader; end(); r?.close() } },
      end
    })
    if (reader === undefined) {
      // Not adopted: undo the mark, the Node socket keeps the connection and its accounting.
      s.removeAllListeners('close')
      s.on('close', () => { this.sockets.delete(s); this.authenticated-- })
      return
    }
    this.readers.add(reader)
  }

  async close (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    for (const r of this.readers) r.close()
    this.readers.clear()
    await Promise.all(this.servers.map(async (server) => { await new Promise<void>((resolve) => { server.close(() => { resolve() }) }) }))
  }
}

/**
 * The sending side: connects to an offer at `host`, resolving once the kernel has the connection
 * (a refused or unreachable port rejects, and the caller stays on the mesh).
 */
export async function connectDirect (host: string, offer: DirectOffer, signal: AbortSignal): Promise<Socket> {
  // The write buffer a TCP stream through the VPN may fill before we stop sending and let our
  // per-peer queue hold packets (and drop beyond it): 1 MiB, not Node's default 16 KiB, which
  // one TSO segment exceeds.
  const socket = connect({ host, port: offer.port, noDelay: true, writableHighWaterMark: DIRECT_LIMITS.socketBufferBytes } as unknown as NetConnectOpts)
  await new Promise<void>((resolve, reject) => {
    const fail = (err: Error): void => { socket.destroy(); reject(err) }
    const onAbort = (): void => { fail(new Error(`connecting to ${host}:${offer.port} timed out`)) }
    signal.addEventListener('abort', onAbort, { once: true })
    socket.once('error', fail)
    socket.once('connect', () => {
      signal.removeEventListener('abort', onAbort)
      socket.off('error', fail)
      resolve()
    })
  })
  socket.on('error', () => {})
  // The receiver never writes: anything it sends is ignored (and nothing is buffered for it).
  socket.on('data', () => {})
  return socket
}

/** The sending side on the main thread: names the session, then sends sealed frames. */
export function directChannel (socket: Socket, offer: DirectOffer): PacketChannel {
  socket.write(offer.session)
  return new DirectChannel(socket, new FrameSealer(offer.key))
}

/** Connects to an offer and sends from the main thread (connectDirect + directChannel). */
export async function dialDirect (host: string, offer: DirectOffer, signal: AbortSignal): Promise<PacketChannel> {
  return directChannel(await connectDirect(host, offer, signal), offer)
}

class DirectChannel implements PacketChannel {
  readonly kind = 'direct' as const
  constructor (private readonly socket: Socket, private readonly sealer: FrameSealer) {}

  send (bytes: Uint8Array): boolean {
    if (this.socket.destroyed) throw new Error('the direct connection is closed')
    let ok = true
    for (const frame of this.sealer.seal(bytes)) ok = writeToSocket(this.socket, frame)
    return ok
  }

  onDrain (fn: () => void): void { this.socket.once('drain', fn) }

  onClose (fn: () => void): void {
    if (this.socket.destroyed) { queueMicrotask(fn); return }
    this.socket.once('close', () => { fn() })
  }

  close (): void { this.socket.destroy() }
}
