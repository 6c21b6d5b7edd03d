/**
 * The main thread's side of the packet thread (packet-thread-worker.ts; docs/vpn.md "The packet
 * thread"): it starts the thread, hands it the TUN device's descriptor and the direct-path
 * connections once they are keyed, keeps it told of the routes, and brings back what the thread
 * does not carry itself (packets for peers reached over the libp2p streams) and what it saw
 * (closed connections, device faults, counters).
 *
 * Descriptors are handed over as duplicates (F_DUPFD_CLOEXEC). The thread says which ones it
 * closed; the main thread closes only the others (a thread that died, messages it never read), so
 * nothing is closed twice or left open. A thread that dies has its connections reported closed
 * (the VPN falls back to the mesh streams, then redials the direct path) and is started again
 * with the device within a second.
 */
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads'
import type { Socket } from 'node:net'
import type { Route } from '../projections/routes.js'
import type { MeshLogger } from './mesh-logger.js'
import type { DropReason, LinkCounters, PacketChannel } from './peer-link.js'
import { F_DUPFD_CLOEXEC, syscalls, type Syscalls } from './syscalls.js'
import { socketFd } from './socket-fd-write.js'
import { CONTROL, COUNTER, COUNTER_SLOTS, DROP_REASONS, MESH_BACKLOG_BYTES, THREAD_PEER_SLOTS, type FromThread, type ToThread } from './packet-thread-wire.js'

const EFD_NONBLOCK = 0o4000
const EFD_CLOEXEC = 0o2000000
/** A thread that died is started again after this: short, since the give-up rule below bounds a crash loop, and the device is not read meanwhile. */
const RESTART_MS = 50
/** A thread that dies this often within GIVE_UP_WINDOW_MS is not started again: the main thread reads the device. */
const GIVE_UP_DEATHS = 5
const GIVE_UP_WINDOW_MS = 60_000

export interface PacketThreadOptions {
  /** 10 when the device's packets carry a virtio header. */
  vnetHeader: number
  /** This node's author hex. */
  self: string
  log: MeshLogger
  /** A device packet the thread does not carry (no direct connection to its peer there). */
  onPacket: (raw: Uint8Array) => void
  /** The device's descriptor failed in the thread: reopen the device (then `attachDevice` again). */
  onDeviceFault: (cause: string) => void
  /** The thread kept dying and is not started again: read the device on the main thread. */
  onGiveUp: (reason: string) => void
  /** Tests only: another bound than MESH_BACKLOG_BYTES. */
  meshBacklogBytes?: number
  /** 'js': the JavaScript loop even where the native one is built (tests, comparisons). */
  loop?: 'js' | 'auto'
}

export interface ThreadTunCounters { rxPackets: number, rxBytes: number, txPackets: number, txBytes: number, txDropped: number }

/** A descriptor the thread holds; `done` once its owner was told it closed. */
interface Handed { fd: number, closed: Set<(why: string) => void>, done: boolean }

/** Whether a packet thread can run here, and why not. */
export function packetThreadUnavailable (): string | undefined {
  if (process.env.WEFT_PACKET_THREAD === 'off') return 'turned off (WEFT_PACKET_THREAD=off)'
  if (process.platform !== 'linux') return `not on ${process.platform}`
  if (syscalls() === null) return 'koffi or the system calls are missing'
  return undefined
}

export class PacketThread {
  /** Whether this process has logged that the native loop is not used (once: a restarted thread finds the same library). */
  private static loopSaid = false
  /** Tests only: forget that the notice was logged. */
  static forgetLoopNoticeForTest (): void { PacketThread.loopSaid = false }

  private worker: Worker | undefined
  private port: MessagePort | undefined
  private wakeFd = -1
  private readonly wakeBytes = new Uint8Array(8)
  private readonly shared = new SharedArrayBuffer(8 * COUNTER_SLOTS)
  private control = new Int32Array(new SharedArrayBuffer(4 * CONTROL.size))
  private readonly onExit = (): void => { this.signalStop() }
  private readonly counters = new Float64Array(this.shared)
  /** Counters of threads that died, so figures never go backwards. */
  private readonly carried = new Float64Array(COUNTER_SLOTS)
  private readonly slots = new Map<string, number>()
  private readonly handed = new Map<number, Handed>()
  private deviceFd = -1
  /** Duplicates of the device's descriptor the thread may hold, by generation, until it says it closed them. */
  private readonly deviceDups = new Map<number, number>()
  private deviceGen = 0
  private deaths: number[] = []
  /** Why the thread is not running (it gave up), for status. */
  gaveUp: string | undefined
  private routes: readonly Route[] | undefined
  private nextId = 1
  private stopped = false
  private stopping: Promise<void> | undefined
  /** Restarts after the thread died; shown in `weft status` as device faults. */
  restarts = 0
  /** Which loop the thread runs (known once it started): the native one, or why not. */
  loop: { native: boolean, reason?: string } | undefined

  private constructor (private readonly sys: Syscalls, private readonly opts: PacketThreadOptions) {
    new DataView(this.wakeBytes.buffer).setBigUint64(0, 1n, true)
  }

  /** A running packet thread, or undefined when there cannot be one (see packetThreadUnavailable). */
  static start (opts: PacketThreadOptions): PacketThread | undefined {
    if (packetThreadUnavailable() !== undefined) return undefined
    const t = new PacketThread(syscalls() as Syscalls, opts)
    t.spawn()
    // A process that exits without stopping the VPN must not wait for a thread blocked in poll.
    process.on('exit', t.onExit)
    return t
  }

  private spawn (): void {
    const wakeFd = this.sys.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
    if (wakeFd < 0) throw new Error('eventfd failed')
    const { port1, port2 } = new MessageChannel()
    this.control = new Int32Array(new SharedArrayBuffer(4 * CONTROL.size))
    // From the sources (tests) the worker is TypeScript: it registers tsx (a dev dependency) first.
    const ts = import.meta.url.endsWith('.ts')
    const entry = new URL(ts ? './packet-thread-worker.ts' : './packet-thread-worker.js', import.meta.url)
    const worker = new Worker(ts ? `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(entry.href)}) })` : entry, {
      workerData: { port: port2, wakeFd, counters: this.shared, control: this.control.buffer, vnetHeader: this.opts.vnetHeader, self: this.opts.self, meshBacklogBytes: this.opts.meshBacklogBytes ?? MESH_BACKLOG_BYTES, loop: this.opts.loop ?? 'auto' },
      transferList: [port2],
      ...(ts ? { eval: true } : {}),
      // The thread's own heap holds a few slabs and the route table.
      resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 4 }
    })
    worker.unref()
    this.worker = worker
    this.port = port1
    this.wakeFd = wakeFd
    port1.on('message', (m: FromThread) => { if (this.worker === worker) this.received(m) })
    port1.unref()
    worker.on('error', (err) => { if (this.worker === worker) this.died(err.message) })
    worker.on('exit', (code) => {
      // The eventfd is ours: closed only once the thread can no longer read it.
      this.sys.close(wakeFd)
      if (this.wakeFd === wakeFd) this.wakeFd = -1
      if (this.worker === worker) this.died(`exited with code ${code}`)
    })
    if (this.routes !== undefined) this.send({ t: 'routes', routes: [...this.routes] })
    if (this.deviceFd >= 0) this.attachDevice(this.deviceFd)
  }

  /** Tells the thread to stop (it returns from poll at once and closes what it holds). */
  private signalStop (): void {
    if (this.port === undefined || this.wakeFd < 0) return
    Atomics.store(this.control, CONTROL.stop, 1)
    this.sys.write(this.wakeFd, this.wakeBytes, 8)
  }

  private send (msg: ToThread, transfer?: ArrayBuffer[]): void {
    if (this.port === undefined || this.wakeFd < 0) return
    this.port.postMessage(msg, transfer ?? [])
    this.sys.write(this.wakeFd, this.wakeBytes, 8)
  }

  private received (m: FromThread): void {
    switch (m.t) {
      case 'mesh': {
        let bytes = 0
        for (const p of m.packets) { bytes += p.byteLength; this.opts.onPacket(p) }
        Atomics.sub(this.control, CONTROL.meshBytes, bytes)
        break
      }
      case 'closed':
        this.release(m.id, m.why)
        this.handed.delete(m.id)
        break
      case 'tun-fault':
        // A fault of a descriptor that was replaced meanwhile (the device was already reopened
        // for another fault) says nothing about the current one.
        this.deviceDups.delete(m.gen) // the thread closed it
        if (m.gen !== this.deviceGen) break
        this.opts.onDeviceFault(m.cause)
        break
      case 'tun-closed':
        this.deviceDups.delete(m.gen)
        break
      case 'loop':
        this.loop = m.native ? { native: true } : { native: false, reason: m.reason ?? 'unknown' }
        if (!m.native && !PacketThread.loopSaid) {
          PacketThread.loopSaid = true
          this.opts.log.warn({ reason: m.reason }, 'the VPN packet thread runs its JavaScript loop: the native packet loop is not available, so pings take longer')
        }
        break
      case 'stopped':
        // The thread said what it closed; what is left here never reached it.
        this.worker = undefined
        this.port = undefined
        this.closeLeftovers('the VPN stopped')
        break
    }
  }

  /** Closes every descriptor handed over that the thread did not say it closed, and tells their owners. */
  private closeLeftovers (why: string): void {
    for (const fd of this.deviceDups.values()) this.sys.close(fd)
    this.deviceDups.clear()
    for (const [id, h] of [...this.handed]) {
      this.sys.close(h.fd)
      this.release(id, why)
      this.handed.delete(id)
    }
  }

  /** The thread died: close what it held, report its connections closed, start another. */
  private died (why: string): void {
    const worker = this.worker
    const port = this.port
    if (worker === undefined || port === undefined) return
    // What it said before it died (a connection it closed, a descriptor it let go of) is read
    // first: only what it still held is closed here.
    for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) this.received(m.message as FromThread)
    if (this.worker !== worker) return // its last word was 'stopped'
    this.worker = undefined
    this.port = undefined
    port.close()
    for (let i = 0; i < COUNTER_SLOTS; i++) this.carried[i] = (this.carried[i] as number) + (this.counters[i] as number)
    this.counters.fill(0)
    this.closeLeftovers('the packet thread stopped')
    if (this.stopped) return
    const now = Date.now()
    this.deaths = [...this.deaths.filter((t) => now - t < GIVE_UP_WINDOW_MS), now]
    if (this.deaths.length >= GIVE_UP_DEATHS) {
      this.gaveUp = `it stopped ${this.deaths.length} times within ${GIVE_UP_WINDOW_MS / 1000} s (last: ${why})`
      this.opts.log.error({ err: why }, `the VPN packet thread ${this.gaveUp.slice(3)}; the main thread reads the device from now on`)
      this.opts.onGiveUp(this.gaveUp)
      return
    }
    this.restarts++
    this.opts.log.error({ err: why }, 'the VPN packet thread stopped; starting it again')
    setTimeout(() => { if (!this.stopped && this.worker === undefined) this.spawn() }, RESTART_MS).unref()
  }

  /** Tells the owner of connection `id` it is closed (once); the entry stays until the thread let go of it. */
  private release (id: number, why: string): void {
    const h = this.handed.get(id)
    if (h === undefined || h.done) return
    h.done = true
    for (const fn of h.closed) fn(why)
  }

  private dup (fd: number): number { return fd < 0 ? -1 : this.sys.fcntl(fd, F_DUPFD_CLOEXEC, 0) }

  /** The device's descriptor (now, and after every reopen): the thread reads a duplicate of it. */
  attachDevice (fd: number): void {
    // -1: the device is being reopened; the number must not be duplicated again (a restart in
    // between would hand the thread whatever file gets that number next).
    this.deviceFd = fd
    if (fd < 0 || this.worker === undefined) return
    const own = this.dup(fd)
    if (own < 0) { this.opts.onDeviceFault('cannot duplicate the device descriptor for the packet thread'); return }
    this.deviceDups.set(++this.deviceGen, own)
    this.send({ t: 'tun', fd: own, gen: this.deviceGen })
  }

  /** Whether the thread reads the device now (false once it gave up). */
  get running (): boolean { return this.gaveUp === undefined }

  setRoutes (routes: readonly Route[]): void {
    this.routes = routes
    this.send({ t: 'routes', routes: [...routes] })
  }

  private slotOf (author: string): number | undefined {
    let s = this.slots.get(author)
    if (s === undefined) {
      if (this.slots.size >= THREAD_PEER_SLOTS) return undefined
      s = this.slots.size
      this.slots.set(author, s)
    }
    return s
  }

  /** Takes a connected socket's descriptor (duplicated; the Node socket is destroyed). */
  private take (socket: Socket): number {
    if (this.worker === undefined || socket.destroyed || socket.writableLength > 0) return -1
    const own = this.dup(socketFd(socket))
    if (own < 0) return -1
    socket.removeAllListeners('data')
    socket.destroy()
    return own
  }

  /**
   * A keyed direct connection to `author` for the thread to send on (it writes `head`, the
   * session id, first). Undefined when it cannot take it; the socket is then untouched.
   */
  adoptOutbound (author: string, socket: Socket, key: Uint8Array, head: Uint8Array): PacketChannel | undefined {
    const slot = this.slotOf(author)
    if (slot === undefined) return undefined
    const fd = this.take(socket)
    if (fd < 0) return undefined
    const id = this.nextId++
    const h: Handed = { fd, closed: new Set(), done: false }
    this.handed.set(id, h)
    this.send({ t: 'out', id, author, slot, fd, key, head })
    return new ThreadChannel(this, id, h)
  }

  /**
   * An authenticated direct connection from `author` for the thread to read (`leftover`: what
   * came with the session id). False when it cannot take it; the socket is then untouched.
   * `closed` is called once when the connection ends.
   */
  adoptInbound (author: string, socket: Socket, key: Uint8Array, leftover: Uint8Array, closed: () => void): boolean {
    const slot = this.slotOf(author)
    if (slot === undefined) return false
    const fd = this.take(socket)
    if (fd < 0) return false
    const id = this.nextId++
    this.handed.set(id, { fd, closed: new Set([() => { closed() }]), done: false })
    this.send({ t: 'in', id, author, slot, fd, key, leftover: leftover.slice() })
    return true
  }

  /** @internal ThreadChannel */
  sendFrames (id: number, bytes: Uint8Array): void {
    if (this.handed.get(id)?.done !== false) throw new Error('the direct connection is closed')
    this.send({ t: 'send', id, bytes })
  }

  /** @internal ThreadChannel */
  closeConnection (id: number): void {
    if (this.handed.get(id)?.done !== false) return
    this.send({ t: 'close', id })
    this.release(id, 'closed')
  }

  private value (i: number): number { return (this.counters[i] as number) + (this.carried[i] as number) }

  /** What the thread moved for `author` (undefined: it never had a connection of that peer). */
  peerCounters (author: string): LinkCounters | undefined {
    const s = this.slots.get(author)
    if (s === undefined) return undefined
    const b = COUNTER.peers + 4 * s
    return { txPackets: this.value(b), txBytes: this.value(b + 1), rxPackets: this.value(b + 2), rxBytes: this.value(b + 3) }
  }

  get authors (): string[] { return [...this.slots.keys()] }

  drops (): Record<DropReason, number> {
    return Object.fromEntries(DROP_REASONS.map((r, i) => [r, this.value(COUNTER.drops + i)])) as Record<DropReason, number>
  }

  tunCounters (): ThreadTunCounters {
    return {
      rxPackets: this.value(COUNTER.tunRxPackets),
      rxBytes: this.value(COUNTER.tunRxBytes),
      txPackets: this.value(COUNTER.tunTxPackets),
      txBytes: this.value(COUNTER.tunTxBytes),
      txDropped: this.value(COUNTER.tunTxDropped)
    }
  }

  /** Tests only: the thread's next read of the device fails (EIO). */
  injectDeviceFault (): void { this.send({ t: 'fault' }) }

  /** Tests only: whether a thread is running now (false between a death and its restart). */
  get runningWorkerForTest (): boolean { return this.worker !== undefined }

  /** Tests only: the thread dies as if it had thrown. */
  crashForTest (): void { this.send({ t: 'crash' }) }

  /** Stops the thread; it closes what it holds, and what never reached it is closed here. */
  async stop (): Promise<void> {
    this.stopping ??= this.stopNow()
    await this.stopping
  }

  private async stopNow (): Promise<void> {
    this.stopped = true
    process.off('exit', this.onExit)
    const worker = this.worker
    if (worker === undefined) return
    const exited = new Promise<void>((resolve) => { worker.once('exit', () => { resolve() }) })
    this.signalStop()
    await exited
  }
}

/** A direct connection the thread sends on, as the PeerLink sees it. */
class ThreadChannel implements PacketChannel {
  readonly kind = 'direct' as const
  constructor (private readonly thread: PacketThread, private readonly id: number, private readonly h: Handed) {}

  send (bytes: Uint8Array): boolean {
    this.thread.sendFrames(this.id, bytes)
    return true
  }

  // send never reports back-pressure: the thread bounds what it holds and drops beyond (queue_full).
  onDrain (_fn: () => void): void {}

  onClose (fn: () => void): void { this.h.closed.add(() => { fn() }) }

  close (): void { this.thread.closeConnection(this.id) }
}
