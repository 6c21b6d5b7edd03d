import { connect as tcpConnect, createServer, type Server, type Socket } from 'node:net'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { z } from 'zod'
import { toHex } from '../log/bytes.js'
import type { MeshLogger } from './mesh-logger.js'

/**
 * TCP over the mesh: `/weft/<network id>/tcp/1.0.0`, one libp2p stream per TCP connection.
 *
 *   opener                                             server (the node that serves the service)
 *   [u16 len][{"v":1,"service":"ns/name","port":80}]  ─────▶  may this peer use it? connect to the target
 *                                                     ◀─────  [u16 len][{"ok":true}]  or  {"ok":false,"error":{code,message}}
 *   bytes ◀──────────────────────────────────────────────────▶ bytes   (after ok only)
 *
 * After the answer the stream carries the TCP payload both ways, unframed. A FIN on either TCP
 * side closes the stream's matching write side (half-close), a reset on either side aborts the
 * stream (and the other TCP side is reset). Back-pressure holds in both directions: a full
 * stream pauses the socket it reads from, a full socket pauses the stream (yamux then stops
 * granting window, so the sender's stream fills and pauses its socket in turn). See
 * docs/services.md.
 */

export const TUNNEL_LIMITS = {
  /** Tunnels open at once between this node and one peer, each way. */
  maxPerPeer: 64,
  /** Tunnels open at once on this node, each way (served, and opened). */
  maxTotal: 1024,
  /** Server: connecting to the target. */
  connectTimeoutMs: 10_000,
  /** Opener: dialling, sending the header and reading the answer. */
  openTimeoutMs: 15_000,
  /** Server: the header must arrive within this. */
  headerTimeoutMs: 10_000,
  /** Header and answer frames. */
  frameBytes: 1024,
  /**
   * Cap on one tunnel stream's yamux receive window (default 16 MiB). A paused stream buffers
   * at most its window, so this bounds the memory one stalled tunnel holds at the receiving end.
   */
  streamWindowBytes: 2 * 1024 * 1024,
  /** A refused stream the opener does not close is aborted after this. */
  refusalLingerMs: 5_000
} as const

export type TunnelLimits = { -readonly [K in keyof typeof TUNNEL_LIMITS]: number }

/** Why a tunnel was not opened. The first five are the server's answers. */
export type TunnelErrorCode =
  | 'unknown-service' // the server does not serve this service (or not this port)
  | 'not-member' // the opener is not an active member of the log
  | 'busy' // a concurrency limit was reached (server's, or the opener's own)
  | 'unreachable' // the server could not connect to its target; or the opener could not reach the server
  | 'bad-request' // a malformed header
  | 'protocol' // the answer was not one (opener side)

export class TunnelError extends Error {
  constructor (readonly code: TunnelErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'TunnelError'
  }
}

export interface TunnelTarget { host: string, port: number }
export type ResolveResult = TunnelTarget | { refuse: Exclude<TunnelErrorCode, 'protocol'>, message: string }

/** Traffic of one service at one end. In = towards the service, out = from it. */
export interface TunnelTraffic {
  active: number
  /** Tunnels that carried traffic (were answered ok). */
  opened: number
  /** Refused before any byte was carried (by a server, or a local limit). */
  refused: number
  /** Failed: target unreachable, no server reachable, reset. */
  failed: number
  bytesIn: number
  bytesOut: number
}

export function emptyTraffic (): TunnelTraffic {
  return { active: 0, opened: 0, refused: 0, failed: 0, bytesIn: 0, bytesOut: 0 }
}

/** The part of a libp2p node the tunnel needs. */
export interface TunnelHost {
  handle: (protocol: string, handler: (stream: Stream, connection: Connection) => void | Promise<void>, opts?: { maxInboundStreams?: number, maxOutboundStreams?: number }) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  dialProtocol: (peer: PeerId, protocol: string, opts?: { signal?: AbortSignal }) => Promise<Stream>
}

// ---- frames --------------------------------------------------------------------------------

const Header = z.strictObject({
  v: z.literal(1),
  service: z.string().min(3).max(127).regex(/^[a-z0-9-]+\/[a-z0-9-]+$/, 'namespace/name'),
  port: z.int().min(1).max(65535)
})
export type TunnelHeader = z.infer<typeof Header>

const Answer = z.union([
  z.strictObject({ ok: z.literal(true) }),
  z.strictObject({ ok: z.literal(false), error: z.strictObject({ code: z.string().max(64), message: z.string().max(512) }) })
])
type Answer = z.infer<typeof Answer>

export function encodeFrame (value: unknown): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(value))
  if (json.byteLength > TUNNEL_LIMITS.frameBytes) throw new TunnelError('bad-request', `a tunnel frame is limited to ${TUNNEL_LIMITS.frameBytes} bytes`)
  const out = new Uint8Array(2 + json.byteLength)
  out[0] = json.byteLength >> 8
  out[1] = json.byteLength & 0xff
  out.set(json, 2)
  return out
}

/**
 * Read one frame from the stream's 'message' events; bytes after it are returned in `rest`
 * (the listener is removed, so later bytes stay in the stream's read buffer for the pipe).
 */
export async function readFrame (stream: Stream, signal: AbortSignal): Promise<{ frame: unknown, rest: Uint8Array }> {
  return await new Promise((resolve, reject) => {
    const buf = new Uint8ArrayList()
    const done = (err: Error | undefined, value?: { frame: unknown, rest: Uint8Array }): void => {
      stream.removeEventListener('message', onMessage)
      stream.removeEventListener('end', onEnd)
      stream.removeEventListener('close', onEnd)
      signal.removeEventListener('abort', onAbort)
      if (err !== undefined) reject(err)
      else resolve(value as { frame: unknown, rest: Uint8Array })
    }
    const onMessage = (evt: { data: Uint8Array | Uint8ArrayList }): void => {
      buf.append(evt.data)
      if (buf.byteLength < 2) return
      const n = (buf.get(0) << 8) | buf.get(1)
      if (n > TUNNEL_LIMITS.frameBytes) { done(new TunnelError('bad-request', `a tunnel frame of ${n} bytes (at most ${TUNNEL_LIMITS.frameBytes})`)); return }
      if (buf.byteLength < 2 + n) return
      let frame: unknown
      try {
        frame = JSON.parse(new TextDecoder().decode(buf.subarray(2, 2 + n)))
      } catch {
        done(new TunnelError('bad-request', 'a tunnel frame that is not JSON'))
        return
      }
      done(undefined, { frame, rest: buf.subarray(2 + n) })
    }
    const onEnd = (evt?: Event): void => {
      const why = (evt as { error?: Error } | undefined)?.error?.message
      done(new TunnelError('protocol', `the stream ${why !== undefined ? `was reset (${why})` : 'ended'} before a whole frame arrived`))
    }
    const onAbort = (): void => { done(new TunnelError('unreachable', 'no frame in time', { cause: signal.reason })) }
    if (signal.aborted) { onAbort(); return }
    if (stream.readableEnded || stream.status !== 'open') { onEnd(); return }
    stream.addEventListener('message', onMessage)
    stream.addEventListener('end', onEnd)
    stream.addEventListener('close', onEnd)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** yamux's largest stream window (its default cap). */
const YAMUX_MAX_WINDOW = 16 * 1024 * 1024

/**
 * Bound the stream's receive window and make its read buffer limit hold one window. A paused
 * yamux stream stops granting window, so it buffers at most one window; but the window grows to
 * 16 MiB by default while the read buffer limit is 4 MiB, past which the stream is reset. The cap
 * is the yamux stream's `maxStreamWindowSize` field (@libp2p/yamux 8); a stream without it keeps
 * the default window and gets a read buffer limit that holds it.
 */
function boundStream (stream: Stream, windowBytes: number): void {
  const s = stream as Stream & { maxStreamWindowSize?: unknown }
  let window = YAMUX_MAX_WINDOW
  if (typeof s.maxStreamWindowSize === 'number') {
    window = Math.max(256 * 1024, Math.min(windowBytes, s.maxStreamWindowSize))
    s.maxStreamWindowSize = window
  }
  stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, window + 256 * 1024)
}

function authorOf (conn: Connection): string | undefined {
  const key = conn.remotePeer.publicKey?.raw
  return key !== undefined && key.byteLength === 32 ? toHex(key) : undefined
}

function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

// ---- the pipe ------------------------------------------------------------------------------

export interface PipeResult {
  /** Bytes read from the socket and sent on the stream. */
  fromSocket: number
  /** Bytes received on the stream and written to the socket. */
  toSocket: number
  /** Set when either side was reset or failed. */
  error?: string
}

export interface PipeInfo {
  /** Bytes waiting to reach the socket: the stream's unread buffer plus the socket's write queue. */
  queuedToSocket: number
  /** Of those, the stream's unread buffer (at most one receive window). */
  streamBuffered: number
  /** Bytes waiting to leave on the stream. */
  queuedToStream: number
  socketPaused: boolean
  streamPaused: boolean
}

export interface Pipe {
  readonly done: Promise<PipeResult>
  info: () => PipeInfo
  /** Reset both sides. */
  abort: (reason: string) => void
}

export interface PipeOptions {
  /** Bytes that arrived on the stream before the pipe (after the answer frame). */
  initial?: Uint8Array
  onFromSocket?: (n: number) => void
  onToSocket?: (n: number) => void
}

/**
 * Pipe a TCP socket and a stream both ways, with back-pressure, half-close and resets. The socket
 * must allow half-open connections (`allowHalfOpen: true`), else a FIN from its peer would end
 * both directions. Resolves once both the socket and the stream are closed.
 */
export function pipeSocketStream (socket: Socket, stream: Stream, opts: PipeOptions = {}): Pipe {
  let fromSocket = 0
  let toSocket = 0
  let error: string | undefined
  let socketClosed = false
  let streamClosed = false
  let socketEnded = false
  let resolveDone!: (r: PipeResult) => void
  const done = new Promise<PipeResult>((resolve) => { resolveDone = resolve })
  const finish = (): void => {
    if (socketClosed && streamClosed) resolveDone({ fromSocket, toSocket, ...(error !== undefined ? { error } : {}) })
  }
  const fail = (reason: string, err?: Error): void => {
    error ??= reason
    if (stream.status === 'open' || stream.status === 'closing') stream.abort(err ?? new Error(reason))
    if (!socket.destroyed) socket.resetAndDestroy()
  }

  // socket → stream
  const resumeSocket = (): void => { if (!socket.destroyed) socket.resume() }
  socket.on('data', (chunk: Buffer) => {
    fromSocket += chunk.byteLength
    opts.onFromSocket?.(chunk.byteLength)
    let ok: boolean
    try {
      ok = stream.send(chunk)
    } catch (err) {
      fail(`the stream cannot take more data: ${errorMessage(err)}`, err as Error)
      return
    }
    if (!ok) {
      socket.pause()
      stream.addEventListener('drain', resumeSocket, { once: true })
    }
  })
  socket.on('end', () => {
    // FIN from the socket's peer: FIN on the stream once what it holds is sent.
    socketEnded = true
    if (stream.writeStatus === 'writable') {
      stream.close().catch((err: unknown) => { fail(`closing the stream failed: ${errorMessage(err)}`, err as Error) })
    }
  })
  socket.on('error', (err) => { fail(`socket: ${err.message}`, err) })
  socket.on('close', () => {
    socketClosed = true
    // Destroyed without its peer's FIN (by us, or an error): the stream cannot finish cleanly.
    if (!socketEnded && (stream.status === 'open' || stream.status === 'closing')) fail('the socket closed')
    finish()
  })

  // stream → socket. `resume()` delivers the buffered bytes before it tells yamux to grant window
  // again: a pause from inside that delivery would be undone by it (the stream reads 'paused'
  // while yamux keeps granting window, and the read buffer grows until the stream is reset). So
  // a pause wanted during a resume is made after it.
  let resuming = false
  let pauseAfterResume = false
  const pauseStream = (): void => {
    if (resuming) { pauseAfterResume = true; return }
    if (stream.readStatus !== 'readable') return
    stream.pause()
    socket.once('drain', resumeStream)
  }
  const resumeStream = (): void => {
    if (stream.readStatus !== 'paused') return
    resuming = true
    pauseAfterResume = false
    try {
      stream.resume()
    } finally {
      resuming = false
    }
    if (pauseAfterResume) pauseStream()
  }
  const write = (buf: Uint8Array): void => {
    if (buf.byteLength === 0) return
    if (socket.destroyed || socket.writableEnded) return
    toSocket += buf.byteLength
    opts.onToSocket?.(buf.byteLength)
    if (!socket.write(buf)) pauseStream()
  }
  const endSocket = (): void => {
    if (!socket.destroyed && !socket.writableEnded) socket.end()
  }
  if (opts.initial !== undefined) write(opts.initial)
  stream.addEventListener('message', (evt) => {
    const data = evt.data
    if (data instanceof Uint8Array) write(data)
    else for (const b of data) write(b)
  })
  stream.addEventListener('end', () => {
    // Remote FIN, every byte delivered (an abort or reset ends the readable side too: 'close' handles those).
    if (stream.status !== 'aborted' && stream.status !== 'reset') endSocket()
  })
  stream.addEventListener('close', (evt) => {
    streamClosed = true
    if (evt.error != null) {
      error ??= `stream: ${evt.error.message}`
      if (!socket.destroyed) socket.resetAndDestroy()
    } else if (stream.readableEnded) {
      endSocket()
    }
    finish()
  }, { once: true })
  // The stream may have ended or closed before this pipe listened.
  if (stream.status === 'aborted' || stream.status === 'reset') {
    streamClosed = true
    fail('the stream was reset before the pipe started')
  } else {
    if (stream.readableEnded) endSocket()
    if (stream.status === 'closed') streamClosed = true
  }
  socket.resume()

  return {
    done,
    info: () => ({
      queuedToSocket: stream.readBufferLength + socket.writableLength,
      streamBuffered: stream.readBufferLength,
      queuedToStream: stream.writeBufferLength,
      socketPaused: socket.isPaused(),
      streamPaused: stream.readStatus === 'paused'
    }),
    abort: (reason) => { fail(reason) }
  }
}

/** Connect to a target, allowing half-open connections, within a timeout. */
export async function connectTarget (target: TunnelTarget, timeoutMs: number, signal?: AbortSignal): Promise<Socket> {
  return await new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: target.host, port: target.port, allowHalfOpen: true })
    socket.setNoDelay(true)
    const timer = setTimeout(() => { settle(new Error(`no connection to ${target.host}:${target.port} within ${timeoutMs} ms`)) }, timeoutMs)
    const onAbort = (): void => { settle(new Error('aborted')) }
    const settle = (err?: Error): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      socket.off('error', onError)
      socket.off('connect', onConnect)
      if (err === undefined) { resolve(socket); return }
      socket.on('error', () => {})
      socket.destroy()
      reject(err)
    }
    const onError = (err: Error): void => { settle(err) }
    const onConnect = (): void => { settle() }
    socket.once('error', onError)
    socket.once('connect', onConnect)
    if (signal?.aborted === true) onAbort()
    else signal?.addEventListener('abort', onAbort, { once: true })
  })
}

// ---- slots ---------------------------------------------------------------------------------

class Slots {
  total = 0
  private readonly perPeer = new Map<string, number>()
  constructor (private readonly limits: { maxPerPeer: number, maxTotal: number }) {}

  take (peer: string): boolean {
    const n = this.perPeer.get(peer) ?? 0
    if (this.total >= this.limits.maxTotal || n >= this.limits.maxPerPeer) return false
    this.perPeer.set(peer, n + 1)
    this.total++
    return true
  }

  release (peer: string): void {
    const n = this.perPeer.get(peer) ?? 0
    if (n <= 1) this.perPeer.delete(peer)
    else this.perPeer.set(peer, n - 1)
    this.total--
  }

  of (peer: string): number { return this.perPeer.get(peer) ?? 0 }
}

/** Release a slot once, when the stream closes. */
function holdUntilClosed (stream: Stream, release: () => void): void {
  let released = false
  const once = (): void => { if (!released) { released = true; release() } }
  if (stream.status === 'closed' || stream.status === 'aborted' || stream.status === 'reset') once()
  else stream.addEventListener('close', once, { once: true })
}

// ---- server --------------------------------------------------------------------------------

export interface TunnelServerOptions {
  host: Pick<TunnelHost, 'handle' | 'unhandle'>
  /** `identifiers(token).tcpProtocol`. */
  protocol: string
  /**
   * Whether this node serves `service` (`namespace/name`) on `port` to the peer whose author
   * (hex of its Ed25519 key, as the handshake proved it) is `remoteAuthor`, and where to.
   */
  resolve: (service: string, port: number, remoteAuthor: string) => ResolveResult | Promise<ResolveResult>
  limits?: Partial<TunnelLimits>
  log: MeshLogger
}

/** Serves tunnel streams: checks each one, connects to its target and pipes. */
export class TunnelServer {
  private readonly limits: TunnelLimits
  private readonly slots: Slots
  private readonly traffic = new Map<string, TunnelTraffic>()
  private readonly pipes = new Set<Pipe>()
  private started = false

  constructor (private readonly opts: TunnelServerOptions) {
    this.limits = { ...TUNNEL_LIMITS, ...opts.limits }
    this.slots = new Slots(this.limits)
  }

  async start (): Promise<void> {
    // libp2p's own per-connection limits sit above ours, so a peer over our limit gets a "busy"
    // answer rather than a reset. They also bound the streams this node opens with the protocol.
    const libp2pLimit = this.limits.maxPerPeer + 16
    await this.opts.host.handle(this.opts.protocol, (stream, conn) => { void this.serve(stream, conn) }, { maxInboundStreams: libp2pLimit, maxOutboundStreams: libp2pLimit })
    this.started = true
  }

  async stop (): Promise<void> {
    if (this.started) await this.opts.host.unhandle(this.opts.protocol).catch(() => {})
    this.started = false
    for (const p of this.pipes) p.abort('the node is stopping')
  }

  /** Traffic per service key served here. */
  stats (): Record<string, TunnelTraffic> {
    return Object.fromEntries([...this.traffic].map(([k, t]) => [k, { ...t }]))
  }

  /** The pipes open now (for tests and debugging). */
  pipeInfo (): PipeInfo[] { return [...this.pipes].map((p) => p.info()) }

  get active (): number { return this.slots.total }

  private trafficOf (service: string): TunnelTraffic {
    let t = this.traffic.get(service)
    if (t === undefined) {
      t = emptyTraffic()
      // Bounded: a peer could name many services that do not exist.
      if (this.traffic.size < 4096) this.traffic.set(service, t)
    }
    return t
  }

  private async serve (stream: Stream, conn: Connection): Promise<void> {
    const { log, resolve } = this.opts
    const peer = conn.remotePeer.toString()
    const author = authorOf(conn)
    if (author === undefined) { stream.abort(new Error('tunnels need an Ed25519 peer')); return }
    boundStream(stream, this.limits.streamWindowBytes)
    const refuse = (code: TunnelErrorCode, message: string, t?: TunnelTraffic): void => {
      if (t !== undefined) { if (code === 'unreachable') t.failed++; else t.refused++ }
      log.debug({ peer, code }, `tunnel refused: ${message}`)
      try {
        stream.send(encodeFrame({ ok: false, error: { code, message } }))
      } catch {
        stream.abort(new Error(message))
        return
      }
      void stream.close().catch(() => { stream.abort(new Error('tunnel refused')) })
      const t2 = setTimeout(() => { stream.abort(new Error('the opener kept a refused tunnel open')) }, this.limits.refusalLingerMs)
      t2.unref()
      stream.addEventListener('close', () => { clearTimeout(t2) }, { once: true })
    }
    // The header is read before anything is sent: an answer sent at once could arrive with the
    // protocol negotiation's last message, and the opener's libp2p drops bytes it reads ahead then.
    let header: TunnelHeader
    let rest: Uint8Array
    try {
      const r = await readFrame(stream, AbortSignal.timeout(this.limits.headerTimeoutMs))
      const h = Header.safeParse(r.frame)
      if (!h.success) { refuse('bad-request', 'not a tunnel header: expected {"v":1,"service":"namespace/name","port":N}'); return }
      header = h.data
      rest = r.rest
    } catch (err) {
      log.debug({ peer, err: errorMessage(err) }, 'tunnel header not received')
      stream.abort(err as Error)
      return
    }
    if (!this.slots.take(author)) {
      refuse('busy', `this node serves ${this.slots.of(author) >= this.limits.maxPerPeer ? `${this.limits.maxPerPeer} tunnels to your node` : `${this.limits.maxTotal} tunnels`} already; try again later`, this.trafficOf(header.service))
      return
    }
    holdUntilClosed(stream, () => { this.slots.release(author) })
    const t = this.trafficOf(header.service)
    let target: ResolveResult
    try {
      target = await resolve(header.service, header.port, author)
    } catch (err) {
      log.warn({ peer, service: header.service, err: errorMessage(err) }, 'tunnel resolve failed')
      refuse('unknown-service', 'this node cannot serve that service now', t)
      return
    }
    if ('refuse' in target) { refuse(target.refuse, target.message, t); return }
    let socket: Socket
    try {
      socket = await connectTarget(target, this.limits.connectTimeoutMs)
    } catch (err) {
      refuse('unreachable', `${header.service} port ${header.port}: cannot connect to its target: ${errorMessage(err)}`, t)
      return
    }
    if (stream.status !== 'open') { socket.destroy(); t.failed++; return }
    try {
      stream.send(encodeFrame({ ok: true }))
    } catch (err) {
      socket.destroy()
      t.failed++
      stream.abort(err as Error)
      return
    }
    t.opened++
    t.active++
    const pipe = pipeSocketStream(socket, stream, {
      initial: rest,
      onFromSocket: (n) => { t.bytesOut += n },
      onToSocket: (n) => { t.bytesIn += n }
    })
    this.pipes.add(pipe)
    const r = await pipe.done
    this.pipes.delete(pipe)
    t.active--
    if (r.error !== undefined) {
      t.failed++
      log.debug({ peer, service: header.service, err: r.error }, 'tunnel ended with an error')
    }
  }
}

// ---- client --------------------------------------------------------------------------------

export interface TunnelClientOptions {
  host: Pick<TunnelHost, 'dialProtocol'>
  protocol: string
  limits?: Partial<TunnelLimits>
  log: MeshLogger
}

export interface OpenTunnel {
  stream: Stream
  /** Bytes the server sent right after its answer (a greeting): write them first. */
  initial: Uint8Array
}

/** Opens tunnel streams to peers. */
export class TunnelClient {
  readonly limits: TunnelLimits
  private readonly slots: Slots

  constructor (private readonly opts: TunnelClientOptions) {
    this.limits = { ...TUNNEL_LIMITS, ...opts.limits }
    this.slots = new Slots(this.limits)
  }

  get active (): number { return this.slots.total }

  /**
   * Open a tunnel to `service` (`namespace/name`) port `port` served by `peer`. Rejects with a
   * TunnelError: the server's refusal, `busy` at a local limit, `unreachable` when the peer
   * cannot be reached or does not answer in time.
   */
  async open (peer: PeerId, service: string, port: number, signal?: AbortSignal): Promise<OpenTunnel> {
    const key = peer.toString()
    if (!this.slots.take(key)) throw new TunnelError('busy', `this node has ${this.slots.of(key) >= this.limits.maxPerPeer ? `${this.limits.maxPerPeer} tunnels open to ${key}` : `${this.limits.maxTotal} tunnels open`} already`)
    let held = false
    const deadline = AbortSignal.timeout(this.limits.openTimeoutMs)
    const sig = signal === undefined ? deadline : AbortSignal.any([signal, deadline])
    try {
      let stream: Stream
      try {
        stream = await this.opts.host.dialProtocol(peer, this.opts.protocol, { signal: sig })
      } catch (err) {
        const unsupported = (err as Error).name === 'UnsupportedProtocolError'
        throw new TunnelError('unreachable', unsupported ? `${key} does not serve TCP tunnels (an older weft?)` : `cannot open a tunnel stream to ${key}: ${errorMessage(err)}`, { cause: err })
      }
      held = true
      holdUntilClosed(stream, () => { this.slots.release(key) })
      boundStream(stream, this.limits.streamWindowBytes)
      let answer: Answer
      let rest: Uint8Array
      try {
        stream.send(encodeFrame({ v: 1, service, port } satisfies TunnelHeader))
        const r = await readFrame(stream, sig)
        const a = Answer.safeParse(r.frame)
        if (!a.success) throw new TunnelError('protocol', `${key} answered something that is not a tunnel answer`)
        answer = a.data
        rest = r.rest
      } catch (err) {
        stream.abort(err as Error)
        if (err instanceof TunnelError) throw err
        throw new TunnelError('unreachable', `tunnel to ${key}: ${errorMessage(err)}`, { cause: err })
      }
      if (!answer.ok) {
        void stream.close().catch(() => { stream.abort(new Error('refused')) })
        const code = KNOWN_CODES.has(answer.error.code) ? answer.error.code as TunnelErrorCode : 'protocol'
        throw new TunnelError(code, `${key} refused: ${answer.error.message}`)
      }
      return { stream, initial: rest }
    } finally {
      if (!held) this.slots.release(key)
    }
  }
}

const KNOWN_CODES = new Set<string>(['unknown-service', 'not-member', 'busy', 'unreachable', 'bad-request'])

// ---- the local listener --------------------------------------------------------------------

export interface ServiceListenerOptions {
  client: TunnelClient
  /** Where to listen (port 0: any free port). */
  listen: TunnelTarget
  /** `namespace/name`. */
  service: string
  /** The service port asked for in each tunnel. */
  port: number
  /** Peers that serve the service, in preference order; the next is tried when one fails. */
  pick: (service: string, port: number) => PeerId[]
  /** When this node itself serves the service: its target, connected to directly. */
  local?: (service: string, port: number) => TunnelTarget | undefined
  /** Connections at once; more are closed at once (default 256). */
  maxConnections?: number
  log: MeshLogger
}

export interface ListenerStats extends TunnelTraffic {
  /** The last reason a connection could not be carried. */
  lastError?: string
}

/**
 * A local TCP listener for one service: every connection it accepts is carried through a
 * tunnel to a peer that serves the service (the first of `pick` that accepts), or closed
 * (a plain FIN) when none does.
 */
export class ServiceListener {
  private server: Server | undefined
  private readonly sockets = new Set<Socket>()
  private readonly pipes = new Set<Pipe>()
  readonly traffic: ListenerStats = emptyTraffic()
  private bound: TunnelTarget | undefined

  constructor (private readonly opts: ServiceListenerOptions) {}

  /** Listen; resolves with the address actually bound. */
  async start (): Promise<TunnelTarget> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => { this.accept(socket) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host: this.opts.listen.host, port: this.opts.listen.port }, () => {
        server.off('error', reject)
        resolve()
      })
    })
    server.on('error', (err) => { this.opts.log.warn({ service: this.opts.service, err: err.message }, 'service listener error') })
    this.server = server
    const a = server.address()
    this.bound = typeof a === 'object' && a !== null ? { host: a.address, port: a.port } : this.opts.listen
    return this.bound
  }

  get address (): TunnelTarget | undefined { return this.bound }

  stats (): ListenerStats { return { ...this.traffic } }

  pipeInfo (): PipeInfo[] { return [...this.pipes].map((p) => p.info()) }

  async stop (): Promise<void> {
    const server = this.server
    this.server = undefined
    for (const p of this.pipes) p.abort('the listener is stopping')
    for (const s of this.sockets) s.destroy()
    if (server !== undefined) await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  }

  private accept (socket: Socket): void {
    const t = this.traffic
    socket.setNoDelay(true)
    socket.on('error', () => {}) // handled by the pipe, or irrelevant once refused
    if (this.sockets.size >= (this.opts.maxConnections ?? 256)) {
      t.refused++
      t.lastError = `more than ${this.opts.maxConnections ?? 256} connections at once`
      socket.resume()
      socket.end()
      setTimeout(() => { socket.destroy() }, 5_000).unref()
      return
    }
    this.sockets.add(socket)
    socket.once('close', () => { this.sockets.delete(socket) })
    void this.carry(socket)
  }

  private async carry (socket: Socket): Promise<void> {
    const { service, port, log } = this.opts
    const t = this.traffic
    const counters: PipeOptions = { onFromSocket: (n) => { t.bytesIn += n }, onToSocket: (n) => { t.bytesOut += n } }
    const local = this.opts.local?.(service, port)
    let pipe: Pipe | undefined
    // Refused: no server, or every server said no. Failed: a server could not be reached, or
    // could not reach its target.
    let failed = false
    if (local !== undefined) {
      try {
        pipe = pipeSockets(socket, await connectTarget(local, TUNNEL_LIMITS.connectTimeoutMs), counters)
      } catch (err) {
        failed = true
        t.lastError = `this node serves ${service} but cannot connect to ${local.host}:${local.port}: ${errorMessage(err)}`
      }
    } else {
      let peers: PeerId[] = []
      try {
        peers = this.opts.pick(service, port)
      } catch (err) {
        log.warn({ service, err: errorMessage(err) }, 'cannot pick a peer for a service connection')
      }
      if (peers.length === 0) t.lastError = `no member serves ${service} port ${port} now`
      // Every peer's answer is kept (the first 4): a refusal from the right peer must not be
      // hidden by the "does not serve" of the peers tried after it.
      const errors: string[] = []
      for (const peer of peers) {
        if (socket.destroyed || this.server === undefined) break
        try {
          const tunnel = await this.opts.client.open(peer, service, port)
          if (socket.destroyed || this.server === undefined) { tunnel.stream.abort(new Error('the client went away')); break }
          pipe = pipeSocketStream(socket, tunnel.stream, { ...counters, initial: tunnel.initial })
          break
        } catch (err) {
          const code = err instanceof TunnelError ? err.code : 'unreachable'
          if (code === 'unreachable' || code === 'protocol') failed = true
          if (errors.length < 4) errors.push(errorMessage(err))
          t.lastError = errors.join('; ')
          log.debug({ service, peer: peer.toString(), err: errorMessage(err) }, 'tunnel not opened; trying the next peer')
        }
      }
    }
    if (pipe === undefined) {
      if (failed) t.failed++
      else t.refused++
      // A clean close: the client sees EOF, as from a service that closed at once. What it sent
      // is read and dropped, so its FIN arrives and the socket closes.
      if (!socket.destroyed) {
        socket.resume()
        socket.end()
        setTimeout(() => { socket.destroy() }, 5_000).unref()
      }
      return
    }
    t.opened++
    t.active++
    this.pipes.add(pipe)
    const r = await pipe.done
    this.pipes.delete(pipe)
    t.active--
    if (r.error !== undefined) { t.failed++; t.lastError = r.error }
  }
}

/** Two sockets piped both ways (this node serves the service itself), with half-close and resets. */
function pipeSockets (a: Socket, b: Socket, opts: PipeOptions): Pipe {
  let closed = 0
  let error: string | undefined
  let fromA = 0
  let toA = 0
  let resolveDone!: (r: PipeResult) => void
  const done = new Promise<PipeResult>((resolve) => { resolveDone = resolve })
  const abort = (reason: string): void => {
    error ??= reason
    if (!a.destroyed) a.resetAndDestroy()
    if (!b.destroyed) b.resetAndDestroy()
  }
  a.on('data', (c: Buffer) => { fromA += c.byteLength; opts.onFromSocket?.(c.byteLength) })
  b.on('data', (c: Buffer) => { toA += c.byteLength; opts.onToSocket?.(c.byteLength) })
  a.pipe(b)
  b.pipe(a)
  for (const s of [a, b]) {
    s.on('error', (err) => { abort(err.message) })
    s.on('close', () => { if (++closed === 2) resolveDone({ fromSocket: fromA, toSocket: toA, ...(error !== undefined ? { error } : {}) }) })
  }
  a.resume()
  return {
    done,
    info: () => ({ queuedToSocket: a.writableLength, streamBuffered: 0, queuedToStream: b.writableLength, socketPaused: a.isPaused(), streamPaused: b.isPaused() }),
    abort
  }
}
