/**
 * A Linux TUN device (`IFF_TUN | IFF_NO_PI`: one read or write is one IP packet, with no
 * header in front of it). Linux only; needs root or CAP_NET_ADMIN and /dev/net/tun.
 *
 * How it works (see docs/vpn.md, "The TUN device"):
 * - `/dev/net/tun` is opened non-blocking and attached with the `TUNSETIFF` ioctl, called through
 *   koffi (an FFI that ships prebuilt binaries: no compiler at install time). The MTU is set with
 *   the `SIOCSIFMTU` ioctl on a socket. Addresses, link state and routes are `ip-command.ts`.
 * - Reads are done on the main thread with non-blocking `readSync` calls, in batches of at most
 *   `READ_BATCH` packets per turn of the event loop, until the kernel says EAGAIN. Waiting for the
 *   next packet is done by a small worker thread blocked in `poll(2)` on the device and an eventfd:
 *   it takes no libuv threadpool thread (which LevelDB, fs and dns share), and `close()` wakes it
 *   through the eventfd. The worker only signals readiness; it never touches a packet.
 * - Writes are non-blocking `writeSync` calls: a TUN write never waits (the kernel takes the packet
 *   or refuses it), so nothing is ever buffered in user space. A refused write (queue full, link
 *   down, not an IP packet, device closed) returns false and is counted in `txDropped`.
 */
import { closeSync, constants as fsConstants, openSync, readSync, writeSync } from 'node:fs'
import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import { WeftError } from '../log/errors.js'

export interface TunStats {
  rxPackets: number
  rxBytes: number
  txPackets: number
  txBytes: number
  /** Writes the kernel refused (or writes after close): counted and dropped, as a NIC does. */
  txDropped: number
}

export interface TunDevice {
  /** The interface name the kernel gave (the requested one, or `weft%d` filled in). */
  readonly name: string
  readonly mtu: number
  /**
   * 10 when every packet read or written starts with a virtio_net_hdr (`offload: true`), else 0.
   */
  readonly vnetHeader: number
  /**
   * Sets the packet handler and starts reading. Each packet is a fresh view (never reused), valid
   * for as long as the handler keeps it. Until a handler is set, packets wait in the kernel's
   * queue (500 packets; then the kernel drops them).
   */
  onPacket: (fn: (pkt: Uint8Array) => void) => void
  /** Writes one IP packet. false = dropped (the kernel refused it, or the device is closed). */
  write: (pkt: Uint8Array) => boolean
  readonly stats: Readonly<TunStats>
  /** Stops reading and closes the device; a non-persistent device disappears from `ip link`. */
  close: () => Promise<void>
}

export interface OpenTunOptions {
  /** Interface name, at most 15 bytes; may contain one `%d` for the kernel to fill in. Default weft0. */
  name?: string
  /** Default 1420 (room for the mesh's framing inside a 1500-byte path). */
  mtu?: number
  /** Aborting closes the device (or abandons the open). */
  signal?: AbortSignal
  /** Default /dev/net/tun (tests point it elsewhere). */
  devicePath?: string
  /**
   * IFF_VNET_HDR with TSO and checksum offload: packets carry a 10-byte virtio_net_hdr and TCP
   * arrives in segments of up to 64 KiB. Default false (one plain IP packet per read).
   */
  offload?: boolean
  /**
   * Called when reading stops for a reason other than close() (the interface was deleted under
   * us, the read failed) or a packet handler threw. Default: `process.emitWarning`.
   */
  onError?: (err: WeftError) => void
}

/** Packets delivered per turn of the event loop before yielding to other I/O. */
export const READ_BATCH = 128

const IFNAMSIZ = 16
const IFREQ_SIZE = 40 // sizeof(struct ifreq) on 64-bit Linux (32 on 32-bit; 40 is enough for both)
const IFF_TUN = 0x0001
const IFF_NO_PI = 0x1000
const IFF_VNET_HDR = 0x4000
/** struct virtio_net_hdr, before every packet when the device has IFF_VNET_HDR. */
export const VNET_HDR_BYTES = 10
const TUN_F_CSUM = 0x01
const TUN_F_TSO4 = 0x02
const TUN_F_TSO6 = 0x04
const SIOCSIFMTU = 0x8922
const AF_INET = 2
const SOCK_DGRAM = 2
const SOCK_CLOEXEC = 0o2000000
const EFD_CLOEXEC = 0o2000000
const EFD_NONBLOCK = 0o4000
const MAX_PACKET = 65535
/** One read: a packet of up to 64 KiB (a TSO segment), after its virtio header. */
const MAX_READ = MAX_PACKET + VNET_HDR_BYTES
const SLAB_SIZE = 1 << 18

// _IOW('T', 202, int): the direction bits differ on a few architectures.
const TUNSETIFF = ['mips', 'mipsel', 'ppc', 'ppc64', 'sparc', 'sparc64'].includes(process.arch) ? 0x800454ca : 0x400454ca
// _IOW('T', 208, unsigned int)
const TUNSETOFFLOAD = ['mips', 'mipsel', 'ppc', 'ppc64', 'sparc', 'sparc64'].includes(process.arch) ? 0x800454d0 : 0x400454d0

const ERRNO: Record<number, string> = { 1: 'EPERM', 2: 'ENOENT', 13: 'EACCES', 16: 'EBUSY', 19: 'ENODEV', 22: 'EINVAL', 25: 'ENOTTY', 77: 'EBADFD' }

interface Libc {
  koffiPath: string
  ioctl: (fd: number, req: number, arg: Buffer) => number
  ioctlInt: (fd: number, req: number, arg: number) => number
  socket: (domain: number, type: number, proto: number) => number
  close: (fd: number) => number
  eventfd: (initval: number, flags: number) => number
  errno: () => number
}

let libc: Libc | undefined

async function loadLibc (): Promise<Libc> {
  if (libc !== undefined) return libc
  const require = createRequire(import.meta.url)
  let koffiPath: string
  let koffi: typeof import('koffi')
  try {
    koffiPath = require.resolve('koffi')
    koffi = require(koffiPath) as typeof import('koffi')
  } catch (err) {
    throw new WeftError('ERR_TUN', `cannot load koffi (the FFI used to configure /dev/net/tun) for ${process.platform}-${process.arch}: ${(err as Error).message}; reinstall weft's dependencies (npm ci) or use --no-tun`, { cause: err })
  }
  // dlopen(NULL): the symbols already in the process, which include libc's (glibc or musl).
  const lib = koffi.load(null)
  libc = {
    koffiPath,
    ioctl: lib.func('int ioctl(int fd, unsigned long request, void *arg)') as Libc['ioctl'],
    // The same variadic call with an integer argument (TUNSETOFFLOAD takes its flags by value).
    ioctlInt: lib.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']) as Libc['ioctlInt'],
    socket: lib.func('int socket(int domain, int type, int protocol)') as Libc['socket'],
    close: lib.func('int close(int fd)') as Libc['close'],
    eventfd: lib.func('int eventfd(unsigned int initval, int flags)') as Libc['eventfd'],
    errno: () => koffi.errno()
  }
  return libc
}

/**
 * The poll worker (CommonJS, run with `eval`). state[0]: 0 = armed (the worker polls),
 * 1 = readable (the main thread drains), 2 = closing. It waits while the main thread owns the
 * device, polls once armed, and posts a message when the device is readable.
 */
const POLL_WORKER = `
const { workerData, parentPort } = require('node:worker_threads')
const koffi = require(workerData.koffiPath)
const poll = koffi.load(null).func('int poll(void *fds, unsigned long nfds, int timeout)')
const state = new Int32Array(workerData.state)
const fds = Buffer.alloc(16)
fds.writeInt32LE(workerData.fd, 0); fds.writeInt16LE(1, 4)
fds.writeInt32LE(workerData.wakeFd, 8); fds.writeInt16LE(1, 12)
parentPort.postMessage('ready')
for (;;) {
  Atomics.wait(state, 0, 1)
  if (Atomics.load(state, 0) === 2) break
  fds.writeInt16LE(0, 6); fds.writeInt16LE(0, 14)
  const r = poll(fds, 2, -1)
  if (r < 0) {
    const e = koffi.errno()
    if (e === 4) continue
    parentPort.postMessage({ error: 'poll failed with errno ' + e })
    break
  }
  if (fds.readInt16LE(14) !== 0 || Atomics.load(state, 0) === 2) break
  const rev = fds.readInt16LE(6)
  if ((rev & 1) === 0 && (rev & (8 | 16 | 32)) !== 0) {
    parentPort.postMessage({ error: (rev & 32) !== 0 ? 'the device fd is not open' : 'the device reported an error or hang-up (was the interface deleted?)' })
    break
  }
  if (Atomics.compareExchange(state, 0, 0, 1) !== 0) break
  parentPort.postMessage(null)
}
`

/** Opens (creating if needed) the TUN interface `name`. See the module comment. */
export async function openTun (opts: OpenTunOptions = {}): Promise<TunDevice> {
  const requested = opts.name ?? 'weft0'
  const mtu = opts.mtu ?? 1420
  const devicePath = opts.devicePath ?? '/dev/net/tun'
  const signal = opts.signal
  signal?.throwIfAborted()
  if (process.platform !== 'linux') throw new WeftError('ERR_TUN', `TUN devices are supported on Linux only (this is ${process.platform}): use --no-tun`)
  if (Buffer.byteLength(requested) >= IFNAMSIZ || requested.length === 0 || /[/\s]/.test(requested) || requested === '.' || requested === '..' || (requested.match(/%/g) ?? []).length > 1) {
    throw new WeftError('ERR_BAD_INPUT', `"${requested}" is not a valid interface name (1-15 bytes, no "/" or spaces, at most one %d)`)
  }
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > MAX_PACKET) throw new WeftError('ERR_BAD_INPUT', `MTU ${mtu} is not an integer in 68..65535`)
  const c = await loadLibc()

  let fd: number
  try {
    fd = openSync(devicePath, fsConstants.O_RDWR | fsConstants.O_NONBLOCK)
  } catch (err) {
    throw openError(devicePath, (err as NodeJS.ErrnoException).code, err)
  }
  let wakeFd = -1
  let worker: Worker | undefined
  // The main thread owns the device (state 1) until the first drain arms the poll thread.
  const state = new Int32Array(new SharedArrayBuffer(4))
  Atomics.store(state, 0, 1)
  try {
    const ifr = Buffer.alloc(IFREQ_SIZE)
    ifr.write(requested, 0, 'utf8')
    ifr.writeUInt16LE(IFF_TUN | IFF_NO_PI | (opts.offload === true ? IFF_VNET_HDR : 0), IFNAMSIZ)
    if (c.ioctl(fd, TUNSETIFF, ifr) !== 0) throw setIffError(requested, devicePath, c.errno())
    // Segmentation and checksum offload: the kernel hands us TCP segments of up to 64 KiB (one
    // read, one frame on the mesh, one write at the peer, which the peer's kernel segments or
    // delivers whole) instead of one MTU-sized packet each. Without it the virtio header stays,
    // with no segments in it.
    if (opts.offload === true) c.ioctlInt(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    const name = ifr.toString('utf8', 0, ifr.indexOf(0) === -1 ? IFNAMSIZ : Math.min(ifr.indexOf(0), IFNAMSIZ))
    setMtu(c, name, mtu)
    wakeFd = c.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
    if (wakeFd < 0) throw new WeftError('ERR_TUN', `eventfd failed (${errnoName(c.errno())})`)
    worker = await startPollWorker(c, state, fd, wakeFd, name)
    signal?.throwIfAborted()
    const dev = new Tun(c, fd, wakeFd, state, worker, name, mtu, opts.onError, opts.offload === true ? VNET_HDR_BYTES : 0)
    if (signal !== undefined) {
      const onAbort = (): void => { void dev.close() }
      signal.addEventListener('abort', onAbort, { once: true })
      dev.onClosed = () => { signal.removeEventListener('abort', onAbort) }
    }
    return dev
  } catch (err) {
    if (worker !== undefined) await stopPollWorker(worker, state, wakeFd)
    closeSync(fd)
    if (wakeFd >= 0) c.close(wakeFd)
    throw err
  }
}

async function stopPollWorker (worker: Worker, state: Int32Array, wakeFd: number): Promise<void> {
  const exited = new Promise((resolve) => worker.once('exit', resolve))
  worker.ref() // so the process waits for it
  Atomics.store(state, 0, 2) // wakes it from Atomics.wait ...
  Atomics.notify(state, 0)
  writeSync(wakeFd, new BigUint64Array([1n])) // ... or from poll
  await exited
}

/** Starts the poll thread and waits until it has loaded koffi (so a failure shows at open, not at the first read). */
async function startPollWorker (c: Libc, state: Int32Array, fd: number, wakeFd: number, name: string): Promise<Worker> {
  const worker = new Worker(POLL_WORKER, {
    eval: true,
    workerData: { koffiPath: c.koffiPath, state: state.buffer, fd, wakeFd },
    stdout: false,
    stderr: false
  })
  try {
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        worker.off('message', onMessage).off('error', done).off('exit', onExit)
        if (err === undefined) resolve(); else reject(err)
      }
      const onMessage = (): void => { done() }
      const onExit = (code: number): void => { done(new Error(`it exited with code ${code}`)) }
      worker.once('message', onMessage).once('error', done).once('exit', onExit)
    })
  } catch (err) {
    void worker.terminate()
    throw new WeftError('ERR_TUN', `cannot start the poll thread of ${name}: ${(err as Error).message}`, { cause: err })
  }
  // Idle until onPacket(): an open device with no reader does not keep the process alive.
  worker.unref()
  return worker
}

class Tun implements TunDevice {
  readonly name: string
  readonly mtu: number
  readonly stats: TunStats = { rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txDropped: 0 }
  onClosed: (() => void) | undefined

  readonly #libc: Libc
  readonly #fd: number
  readonly #wakeFd: number
  readonly #state: Int32Array
  readonly #onError: (err: WeftError) => void
  readonly #worker: Worker
  #workerGone = false
  #failed = false
  #handler: ((pkt: Uint8Array) => void) | undefined
  #closed = false
  #closing: Promise<void> | undefined
  #drainScheduled = false
  #slab = new Uint8Array(SLAB_SIZE)
  #slabOffset = 0

  readonly vnetHeader: number

  constructor (c: Libc, fd: number, wakeFd: number, state: Int32Array, worker: Worker, name: string, mtu: number, onError: ((err: WeftError) => void) | undefined, vnetHeader: number) {
    this.vnetHeader = vnetHeader
    this.#libc = c
    this.#fd = fd
    this.#wakeFd = wakeFd
    this.#state = state
    this.name = name
    this.mtu = mtu
    this.#onError = onError ?? ((err) => { process.emitWarning(err.message, { code: err.code }) })
    this.#worker = worker
    worker.on('message', (m: { error: string } | null) => {
      if (m === null) { if (!this.#drainScheduled) this.#drain(); return }
      this.#fail(`reading ${this.name} stopped: ${m.error}`)
    })
    worker.on('error', (err) => { this.#fail(`the poll thread of ${this.name} failed: ${err.message}`, err) })
    worker.on('exit', () => {
      this.#workerGone = true
      this.#fail(`the poll thread of ${this.name} exited`)
    })
  }

  onPacket (fn: (pkt: Uint8Array) => void): void {
    const first = this.#handler === undefined
    this.#handler = fn
    if (!first || this.#closed) return
    this.#worker.ref() // a device that is being read keeps the process alive, like a listening socket
    this.#scheduleDrain()
  }

  write (pkt: Uint8Array): boolean {
    if (this.#closed) { this.stats.txDropped++; return false }
    try {
      const n = writeSync(this.#fd, pkt)
      this.stats.txPackets++
      this.stats.txBytes += n
      // The kernel often answers inside the write itself (a ping reply, a TCP ACK): read it in
      // this turn of the event loop instead of waiting for the poll thread to wake up and post.
      if (this.#handler !== undefined) this.#scheduleDrain()
      return true
    } catch {
      // EAGAIN/ENOBUFS (queue full), EIO (link down), EINVAL (not an IP packet), EMSGSIZE, EBADFD.
      this.stats.txDropped++
      return false
    }
  }

  async close (): Promise<void> {
    this.#closing ??= this.#close()
    await this.#closing
  }

  async #close (): Promise<void> {
    this.#closed = true
    if (!this.#workerGone) await stopPollWorker(this.#worker, this.#state, this.#wakeFd)
    closeSync(this.#fd) // the last reference: the kernel deletes a non-persistent device here
    this.#libc.close(this.#wakeFd)
    this.onClosed?.()
  }

  #scheduleDrain (): void {
    if (this.#drainScheduled || this.#closed) return
    this.#drainScheduled = true
    setImmediate(this.#drain)
  }

  readonly #drain = (): void => {
    this.#drainScheduled = false
    if (this.#closed) return
    for (let i = 0; i < READ_BATCH; i++) {
      if (this.#slab.length - this.#slabOffset < MAX_READ) {
        this.#slab = new Uint8Array(SLAB_SIZE)
        this.#slabOffset = 0
      }
      let n: number
      try {
        n = readSync(this.#fd, this.#slab, this.#slabOffset, MAX_READ, null)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
          // Drained: hand the device back to the poll thread.
          Atomics.store(this.#state, 0, 0)
          Atomics.notify(this.#state, 0)
          return
        }
        if (code === 'EINTR') continue
        this.#fail(`reading ${this.name} failed (${code ?? String(err)})`, err)
        return
      }
      const pkt = this.#slab.subarray(this.#slabOffset, this.#slabOffset + n)
      this.#slabOffset += (n + 7) & ~7
      this.stats.rxPackets++
      this.stats.rxBytes += n
      try {
        this.#handler!(pkt)
      } catch (err) {
        this.#onError(new WeftError('ERR_TUN', `the packet handler of ${this.name} threw: ${(err as Error).message}`, { cause: err }))
      }
      if (this.#closed) return
    }
    this.#drainScheduled = true
    setImmediate(this.#drain)
  }

  #fail (message: string, cause?: unknown): void {
    if (this.#closed || this.#failed) return
    this.#failed = true
    Atomics.store(this.#state, 0, 2)
    Atomics.notify(this.#state, 0)
    this.#onError(new WeftError('ERR_TUN', message, { cause }))
  }
}

function setMtu (c: Libc, name: string, mtu: number): void {
  const sock = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)
  if (sock < 0) throw new WeftError('ERR_TUN', `cannot set the MTU of ${name}: socket() failed (${errnoName(c.errno())})`)
  try {
    const ifr = Buffer.alloc(IFREQ_SIZE)
    ifr.write(name, 0, 'utf8')
    ifr.writeInt32LE(mtu, IFNAMSIZ)
    if (c.ioctl(sock, SIOCSIFMTU, ifr) !== 0) {
      throw new WeftError('ERR_TUN', `cannot set the MTU of ${name} to ${mtu} (${errnoName(c.errno())})`)
    }
  } finally {
    c.close(sock)
  }
}

function openError (path: string, code: string | undefined, cause: unknown): WeftError {
  if (code === 'ENOENT') {
    return new WeftError('ERR_TUN', `${path} does not exist: load the tun module (modprobe tun), or in a container pass the device in (docker run --device /dev/net/tun --cap-add NET_ADMIN); or use --no-tun`, { cause })
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new WeftError('ERR_TUN', `opening ${path} needs root or CAP_NET_ADMIN (${code}): run as root or use --no-tun`, { cause })
  }
  if (code === 'ENXIO' || code === 'ENODEV') {
    return new WeftError('ERR_TUN', `${path} exists but the kernel has no TUN driver behind it (${code}): load the tun module (modprobe tun) or use --no-tun`, { cause })
  }
  return new WeftError('ERR_TUN', `cannot open ${path} (${code ?? String(cause)}); use --no-tun to run without the VPN`, { cause })
}

function setIffError (name: string, path: string, errno: number): WeftError {
  const e = errnoName(errno)
  switch (e) {
    case 'EPERM':
    case 'EACCES':
      return new WeftError('ERR_TUN', `creating the TUN device ${name} needs root or CAP_NET_ADMIN (${e}): run as root, or use --no-tun (a persistent device made for this user also works: ip tuntap add ${name} mode tun user $USER)`)
    case 'EBUSY':
      return new WeftError('ERR_TUN', `the TUN device ${name} is in use by another process (${e}): is another weft running? Choose another name or stop it`)
    case 'EINVAL':
      return new WeftError('ERR_TUN', `an interface named ${name} exists and is not a TUN device with IFF_TUN|IFF_NO_PI (${e}): delete it (ip link delete ${name}) or choose another name`)
    case 'EBADFD':
    case 'ENOTTY':
      return new WeftError('ERR_TUN', `${path} is not the TUN clone device (TUNSETIFF failed with ${e}): point weft at /dev/net/tun`)
    default:
      return new WeftError('ERR_TUN', `TUNSETIFF on ${path} for ${name} failed (${e})`)
  }
}

function errnoName (errno: number): string {
  return ERRNO[errno] ?? `errno ${errno}`
}
