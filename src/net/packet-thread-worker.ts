/**
 * The packet thread: the VPN's hot path, run outside the main event loop (docs/vpn.md "The packet
 * thread"). It blocks in poll(2) on the TUN device, the direct-path connections it was given and
 * an eventfd the main thread rings, and moves packets between them with read(2)/write(2) and the
 * kept-key AEAD (gcm.ts), all through koffi. No libuv turn, no callbacks, no promise jobs sit
 * between a packet and the system call that moves it on: a wake-up of this thread costs about
 * what a C daemon's does (docs/vpn.md "The packet thread": the echo servers measured before
 * choosing).
 *
 * What it does not do it hands to the main thread: packets to peers with no direct connection
 * here (the libp2p stream path, dialling, relays) go out as one message per wake-up.
 *
 * Messages from the main thread are read with receiveMessageOnPort after the eventfd rings: this
 * thread's own event loop never runs while it polls.
 */
import { receiveMessageOnPort, workerData } from 'node:worker_threads'
import { RouteIndex } from '../projections/route-index.js'
import { EAGAIN, EINTR, errnoName, syscalls } from './syscalls.js'
import { FrameOpener, FrameSealer, sealedSize } from './transport-frames.js'
import { FrameDecoder, VNET_HDR_BYTES, encodeFramesInto } from './packet-frames.js'
import { destinationPeer, isIp, isLinkChatter, sourceOwnedBy, withZeroHeader } from './packet-routing.js'
import { CONTROL, COUNTER, DROP_REASONS, type FromThread, type ThreadSetup, type ToThread } from './packet-thread-wire.js'
import type { DropReason } from './peer-link.js'
import { loadNativeLoop } from './packet-loop-native.js'
import { runNativeLoop } from './packet-thread-native.js'

const POLLIN = 1
const POLLOUT = 4
const POLLERR = 8
const POLLHUP = 16
const POLLNVAL = 32
/** Device packets per wake-up before the connections get their turn. */
const READ_BATCH = 128
/** Reads of one connection per wake-up. */
const READS_PER_TURN = 64
const MAX_READ = 65_535 + VNET_HDR_BYTES
/**
 * Device packets of one drain are read one after the other into this buffer, which is reused:
 * what they become (sealed frames, copies for the main thread) never points into it, and a drain
 * that fills it seals what it holds first. No garbage per packet.
 */
const SLAB_BYTES = 1 << 20
/** Bytes of one write of frames (as PeerLink batches). */
const BATCH_BYTES = 64 * 1024
/** Sealed bytes the kernel has not taken, per connection; packets beyond are dropped (queue_full). */
const PENDING_BYTES = 1024 * 1024
const BROKEN_FD = new Set(['EBADF', 'EBADFD', 'ENODEV', 'EFAULT', 'ENXIO'])

interface Out { kind: 'out', id: number, author: string, slot: number, fd: number, sealer: FrameSealer, pending: Uint8Array[], pendingBytes: number, batch: Uint8Array[], batchBytes: number }
interface In { kind: 'in', id: number, author: string, slot: number, fd: number, opener: FrameOpener, decoder: FrameDecoder }
type Conn = Out | In

const setup = workerData as ThreadSetup
const port = setup.port
const sys = syscalls()
if (sys === null) throw new Error('the packet thread needs koffi and Linux system calls')
const counters = new Float64Array(setup.counters)
const withHeader = setup.vnetHeader === VNET_HDR_BYTES

let tunFd = -1
let tunGen = 0
let injectedFault = false
/** Set by a write to the device: the kernel's answer (a ping's reply, an ACK) may already be there. */
let wroteTun = false
let routes: RouteIndex | undefined
const conns = new Map<number, Conn>()
const outByAuthor = new Map<string, Out>()
const control = new Int32Array(setup.control)

let pollBuf = new Uint8Array(0)
let pollView = new DataView(pollBuf.buffer)
let pollConns: Array<Conn | null> = []
let pollDirty = true

const slab = new Uint8Array(SLAB_BYTES)
let slabOffset = 0
/** One batch of frames, and the same sealed: reused, so sending makes no garbage (the kernel takes most writes whole). */
const ENC_BYTES = BATCH_BYTES + 4 + MAX_READ
const encBuf = new Uint8Array(ENC_BYTES)
const sealBuf = new Uint8Array(sealedSize(ENC_BYTES))
/** One read of a connection; a copy goes to the opener when it holds part of a frame (it keeps references). */
const connBuf = new Uint8Array(65_536)
const eventBuf = new Uint8Array(8)

// On the channel's port, not parentPort: if this thread dies, the main thread reads what is
// left there synchronously before it closes anything (parentPort's messages may come after the
// 'error' event).
function post (msg: FromThread, transfer?: ArrayBuffer[]): void { port.postMessage(msg, transfer ?? []) }

function drop (reason: DropReason, n = 1): void { bump(COUNTER.drops + DROP_REASONS.indexOf(reason), n) }

function count (slot: number, field: 0 | 1 | 2 | 3, n: number): void {
  const i = COUNTER.peers + 4 * slot + field
  counters[i] = (counters[i] as number) + n
}

function bump (i: number, n: number): void { counters[i] = (counters[i] as number) + n }

function rebuildPoll (): void {
  const n = 2 + conns.size
  if (pollBuf.byteLength < n * 8) { pollBuf = new Uint8Array(n * 8 * 2); pollView = new DataView(pollBuf.buffer) }
  pollConns = [null, null]
  pollView.setInt32(0, setup.wakeFd, true)
  pollView.setInt16(4, POLLIN, true)
  pollView.setInt32(8, tunFd, true) // -1: poll ignores the entry
  pollView.setInt16(12, POLLIN, true)
  let i = 2
  for (const c of conns.values()) {
    pollView.setInt32(i * 8, c.fd, true)
    // A sending connection is polled for reading too: the receiver never writes, so readable
    // means closed (or a peer breaking the protocol).
    pollView.setInt16(i * 8 + 4, POLLIN | (c.kind === 'out' && c.pendingBytes > 0 ? POLLOUT : 0), true)
    pollConns.push(c)
    i++
  }
  pollDirty = false
}

/** Closes a connection; the main thread is told (it forgets the descriptor only then). */
function closeConn (c: Conn, why: string): void {
  if (conns.get(c.id) !== c) return
  conns.delete(c.id)
  if (c.kind === 'out' && outByAuthor.get(c.author) === c) outByAuthor.delete(c.author)
  sys!.close(c.fd)
  pollDirty = true
  post({ t: 'closed', id: c.id, why })
}

/** Writes what is pending on a sending connection; false when it failed (and was closed). */
function flushOut (c: Out): boolean {
  const waiting = c.pendingBytes > 0
  while (c.pending.length > 0) {
    const head = c.pending[0] as Uint8Array
    const n = sys!.write(c.fd, head, head.byteLength)
    if (n < 0) {
      const errno = sys!.errno()
      if (errno === EINTR) continue
      if (errno === EAGAIN) break
      closeConn(c, `writing failed (${errnoName(errno)})`)
      return false
    }
    c.pendingBytes -= n
    if (n === head.byteLength) c.pending.shift()
    else c.pending[0] = head.subarray(n)
  }
  // Poll for writability only while something waits.
  if (waiting !== (c.pendingBytes > 0)) pollDirty = true
  return true
}

/** Seals `plain` and writes it, or queues what the kernel does not take (a copy: the buffers are reused). */
function sendSealed (c: Out, plain: Uint8Array): void {
  let sealed: Uint8Array
  try {
    sealed = plain.byteLength <= ENC_BYTES ? sealBuf.subarray(0, c.sealer.sealInto(plain, sealBuf)) : Buffer.concat(c.sealer.seal(plain))
  } catch (err) {
    closeConn(c, (err as Error).message)
    return
  }
  if (c.pendingBytes > 0) { queue(c, sealed.slice()); return } // behind what waits: POLLOUT flushes it
  let n = 0
  while (n < sealed.byteLength) {
    const w = sys!.write(c.fd, sealed.subarray(n), sealed.byteLength - n)
    if (w >= 0) { n += w; continue }
    const errno = sys!.errno()
    if (errno === EINTR) continue
    if (errno === EAGAIN) break
    closeConn(c, `writing failed (${errnoName(errno)})`)
    return
  }
  if (n < sealed.byteLength) { queue(c, sealed.slice(n)); pollDirty = true }
}

function queue (c: Out, bytes: Uint8Array): void {
  c.pending.push(bytes)
  c.pendingBytes += bytes.byteLength
}

/** The frames batched for a connection during one device drain, sealed and written. */
function flushBatch (c: Out): void {
  if (c.batch.length === 0) return
  const batch = c.batch
  c.batch = []
  c.batchBytes = 0
  let start = 0
  while (start < batch.length) {
    let bytes = 0
    let end = start
    while (end < batch.length && (end === start || bytes + 4 + (batch[end] as Uint8Array).byteLength <= BATCH_BYTES)) { bytes += 4 + (batch[end] as Uint8Array).byteLength; end++ }
    const part = batch.slice(start, end)
    let payload = 0
    for (const p of part) payload += p.byteLength
    sendSealed(c, encBuf.subarray(0, encodeFramesInto(part, encBuf)))
    if (conns.get(c.id) !== c) { drop('no_connection', batch.length - end); return }
    count(c.slot, 0, part.length)
    count(c.slot, 1, payload - VNET_HDR_BYTES * part.length)
    start = end
  }
}

function tunFault (cause: string): void {
  if (tunFd >= 0) sys!.close(tunFd)
  tunFd = -1
  pollDirty = true
  post({ t: 'tun-fault', cause, gen: tunGen })
}

function drainTun (): void {
  let touched: Out[] = []
  const toMain: Uint8Array[] = []
  let toMainBytes = 0
  slabOffset = 0
  for (let i = 0; i < READ_BATCH && tunFd >= 0; i++) {
    if (SLAB_BYTES - slabOffset < MAX_READ) {
      for (const c of touched) flushBatch(c)
      touched = []
      slabOffset = 0
    }
    const buf = slab.subarray(slabOffset, slabOffset + MAX_READ)
    const injected = injectedFault
    injectedFault = false
    const n = injected ? -1 : sys!.read(tunFd, buf, MAX_READ)
    if (n < 0) {
      const code = injected ? 'EIO' : errnoName(sys!.errno())
      if (code === 'EAGAIN') break
      if (code === 'EINTR') continue
      tunFault(`reading the device failed (${code})`)
      break
    }
    slabOffset += (n + 7) & ~7
    bump(COUNTER.tunRxPackets, 1)
    bump(COUNTER.tunRxBytes, n)
    const raw = buf.subarray(0, n)
    const frame = withHeader ? raw : withZeroHeader(raw)
    const ip = frame.subarray(VNET_HDR_BYTES)
    if (isLinkChatter(ip)) continue
    const peer = routes === undefined ? undefined : destinationPeer(routes, ip)
    if (peer === undefined || peer === setup.self) { drop(peer === undefined && ip.byteLength > 0 && !isIp(ip) ? 'malformed' : 'no_route'); continue }
    const out = outByAuthor.get(peer)
    if (out === undefined) {
      if (Atomics.load(control, CONTROL.meshBytes) + toMainBytes + n > setup.meshBacklogBytes) { drop('queue_full'); continue }
      toMain.push(raw.slice())
      toMainBytes += n
      continue
    }
    if (out.pendingBytes + out.batchBytes + frame.byteLength > PENDING_BYTES) { drop('queue_full'); continue }
    if (out.batch.length === 0) touched.push(out)
    out.batch.push(frame)
    out.batchBytes += frame.byteLength + 4
    // The first packet of a wake-up leaves at once, not after the read that says there is no
    // other: a lone packet (a ping, a keystroke) does not wait for that system call. The rest
    // of a burst is batched.
    if (i === 0) { flushBatch(out); touched = [] }
  }
  for (const c of touched) flushBatch(c)
  if (toMain.length > 0) {
    Atomics.add(control, CONTROL.meshBytes, toMainBytes)
    post({ t: 'mesh', packets: toMain }, toMain.map((p) => p.buffer as ArrayBuffer))
  }
}

function writeTun (pkt: Uint8Array): void {
  if (tunFd < 0) { bump(COUNTER.tunTxDropped, 1); drop('device_full'); return }
  const n = sys!.write(tunFd, pkt, pkt.byteLength)
  if (n < 0) {
    bump(COUNTER.tunTxDropped, 1)
    const code = errnoName(sys!.errno())
    if (BROKEN_FD.has(code)) tunFault(`writing to the device failed (${code})`)
    else drop('device_full')
    return
  }
  bump(COUNTER.tunTxPackets, 1)
  bump(COUNTER.tunTxBytes, n)
  wroteTun = true
}

/** Bytes from a receiving connection: frames opened, sources checked, packets into the device. */
function deliver (c: In, chunk: Uint8Array): boolean {
  let frames: Uint8Array[] = []
  try {
    for (const plain of c.opener.push(chunk)) for (const f of c.decoder.push(plain)) frames.push(f)
  } catch {
    frames = []
    drop('malformed')
    closeConn(c, 'a frame failed authentication or was malformed')
    return false
  }
  const r = routes
  for (const frame of frames) {
    const ip = frame.subarray(VNET_HDR_BYTES)
    if (r === undefined || !sourceOwnedBy(r, ip, c.author)) { drop(isIp(ip) ? 'spoofed' : 'malformed'); continue }
    count(c.slot, 2, 1)
    count(c.slot, 3, ip.byteLength)
    if (!withHeader && frame[1] !== 0) { drop('malformed'); continue }
    writeTun(withHeader ? frame : ip)
  }
  return true
}

function readIn (c: In): void {
  for (let i = 0; i < READS_PER_TURN; i++) {
    const n = sys!.read(c.fd, connBuf, connBuf.byteLength)
    if (n > 0) {
      const chunk = c.opener.pendingBytes > 0 ? connBuf.slice(0, n) : connBuf.subarray(0, n)
      if (!deliver(c, chunk)) return
      // A short read emptied the socket: no read just to hear EAGAIN (poll says when there is more).
      if (n < connBuf.byteLength) return
      continue
    }
    if (n === 0) { closeConn(c, 'the peer closed the connection'); return }
    const errno = sys!.errno()
    if (errno === EAGAIN) return
    if (errno !== EINTR) { closeConn(c, `reading failed (${errnoName(errno)})`); return }
  }
}

/** A sending connection became readable: the receiver closed it (it never writes otherwise). */
function readOut (c: Out): void {
  const n = sys!.read(c.fd, connBuf, connBuf.byteLength)
  if (n === 0) { closeConn(c, 'the peer closed the connection'); return }
  const errno = n < 0 ? sys!.errno() : 0
  if (n < 0 && errno !== EAGAIN && errno !== EINTR) closeConn(c, `reading failed (${errnoName(errno)})`)
}

function handle (msg: ToThread): void {
  switch (msg.t) {
    case 'tun':
      if (tunFd >= 0) { sys!.close(tunFd); post({ t: 'tun-closed', gen: tunGen }) }
      tunFd = msg.fd
      tunGen = msg.gen
      pollDirty = true
      break
    case 'routes':
      routes = new RouteIndex({ routes: msg.routes })
      break
    case 'out': {
      const c: Out = { kind: 'out', id: msg.id, author: msg.author, slot: msg.slot, fd: msg.fd, sealer: new FrameSealer(msg.key), pending: [msg.head], pendingBytes: msg.head.byteLength, batch: [], batchBytes: 0 }
      conns.set(c.id, c)
      const old = outByAuthor.get(c.author)
      outByAuthor.set(c.author, c)
      if (old !== undefined) closeConn(old, 'replaced by a newer connection')
      pollDirty = true
      flushOut(c)
      break
    }
    case 'in': {
      const c: In = { kind: 'in', id: msg.id, author: msg.author, slot: msg.slot, fd: msg.fd, opener: new FrameOpener(msg.key), decoder: new FrameDecoder() }
      conns.set(c.id, c)
      pollDirty = true
      if (msg.leftover.byteLength > 0 && !deliver(c, msg.leftover)) break
      // Bytes that came between the main thread's last read and the hand-over wait in the kernel.
      readIn(c)
      break
    }
    case 'send': {
      const c = conns.get(msg.id)
      if (c === undefined || c.kind !== 'out') break
      sendSealed(c, msg.bytes)
      break
    }
    case 'close': {
      const c = conns.get(msg.id)
      if (c !== undefined) closeConn(c, 'closed')
      break
    }
    case 'fault':
      injectedFault = true
      break
    case 'crash':
      throw new Error('crash requested (test)')
  }
}

function readMessages (): void {
  for (;;) {
    const m = receiveMessageOnPort(port)
    if (m === undefined) return
    handle(m.message as ToThread)
  }
}

function loop (): void {
  readMessages()
  while (Atomics.load(control, CONTROL.stop) === 0) {
    if (pollDirty) rebuildPoll()
    if (injectedFault && tunFd >= 0) { drainTun(); continue }
    const r = sys!.poll(pollBuf, pollConns.length, -1)
    if (r < 0) {
      if (sys!.errno() === EINTR) continue
      throw new Error(`poll failed (${errnoName(sys!.errno())})`)
    }
    // The connections first: the device's next packets are often the replies to what they bring.
    // pollConns is rebuilt only at the top of the loop; a connection closed meanwhile is skipped.
    for (let i = 2; i < pollConns.length; i++) {
      const ev = pollView.getInt16(i * 8 + 6, true)
      const c = pollConns[i] as Conn
      if (ev === 0 || conns.get(c.id) !== c) continue
      if (c.kind === 'in') {
        if ((ev & (POLLIN | POLLHUP | POLLERR)) !== 0) readIn(c)
        else if ((ev & POLLNVAL) !== 0) closeConn(c, 'the descriptor is not open')
      } else {
        if ((ev & POLLOUT) !== 0 && !flushOut(c)) continue
        if ((ev & (POLLIN | POLLHUP | POLLERR)) !== 0) readOut(c)
        else if ((ev & POLLNVAL) !== 0) closeConn(c, 'the descriptor is not open')
      }
    }
    const tunEv = pollView.getInt16(14, true)
    // The kernel answers a packet inside its write to the device: read the answer now, without
    // another poll (a ping's reply leaves in the same wake-up as its request came in).
    const answered = wroteTun
    wroteTun = false
    if (tunFd >= 0 && pollView.getInt32(8, true) === tunFd && (tunEv & (POLLERR | POLLHUP | POLLNVAL)) !== 0 && (tunEv & POLLIN) === 0) {
      tunFault(`the device reported ${(tunEv & POLLNVAL) !== 0 ? 'a closed descriptor' : (tunEv & POLLHUP) !== 0 ? 'a hang-up' : 'an error'}`)
    } else if (tunFd >= 0 && (answered || (pollView.getInt32(8, true) === tunFd && (tunEv & POLLIN) !== 0))) {
      drainTun()
    }
    if (pollView.getInt16(6, true) !== 0) {
      sys!.read(setup.wakeFd, eventBuf, 8)
      readMessages()
    }
  }
  // Everything closed is said, so the main thread closes only what never reached this thread.
  // The eventfd is the main thread's: it closes it once this thread has exited.
  for (const c of [...conns.values()]) closeConn(c, 'the VPN stopped')
  if (tunFd >= 0) { sys!.close(tunFd); post({ t: 'tun-closed', gen: tunGen }) }
  post({ t: 'stopped' })
  port.close()
}

// The native loop where it was built (docs/vpn.md "The native packet loop"); this file's loop
// otherwise. The main thread is told which, for `weft status`.
const native = setup.loop === 'js' ? 'the JavaScript loop was asked for' : loadNativeLoop()
if (typeof native === 'string') {
  post({ t: 'loop', native: false, reason: native })
  loop()
} else {
  post({ t: 'loop', native: true })
  runNativeLoop(native, setup, post)
}
