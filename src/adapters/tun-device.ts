/**
 * A Linux TUN device (`IFF_TUN | IFF_NO_PI`: one read or write is one IP packet, with no
 * header in front of it). Linux only; needs root or CAP_NET_ADMIN and /dev/net/tun.
 *
 * How it works (see docs/vpn.md, "The TUN device"):
 * - `/dev/net/tun` is opened non-blocking and attached with the `TUNSETIFF` ioctl (`tun-libc.ts`).
 *   Addresses, link state and routes are `ip-command.ts`.
 * - Reads are done on the main thread with non-blocking read(2) calls (through koffi, which
 *   returns -1 and errno rather than throwing: every drain ends in EAGAIN), in batches of at most
 *   `READ_BATCH` packets per turn of the event loop, until the kernel says EAGAIN. The event loop
 *   itself says when the device is readable (`fd-watch.ts`: libuv's uv_poll on the fd, the same
 *   epoll as the sockets), so no thread and no hand-over sits between a packet and its reader.
 *   The VPN normally hands reading to its packet thread instead (`handOver`, src/net/packet-thread.ts),
 *   which polls the fd outside the event loop; this main-thread path is the fallback.
 * - Writes are non-blocking write(2) calls, the same way: a TUN write never waits (the kernel takes the packet
 *   or refuses it), so nothing is ever buffered in user space. A refused write (queue full, link
 *   down, not an IP packet, device closed) returns false and is counted in `txDropped`.
 * - Never dead for long: when the watch on the fd fails, it is restarted; when the device
 *   itself fails (a read or write says the fd is broken, the watch reports an error or hang-up, e.g.
 *   the interface was deleted under us), the device is reopened under the same name and
 *   `onReopen` tells the owner to put its addresses and routes back. Either way within a second
 *   (a failed attempt is retried after 100, 200, 400 ms, then every second), each fault counted
 *   in `stats.faults` / `stats.reopens`, its cause kept in `stats.lastFault` and reported once
 *   through `onError`.
 */
import { closeSync } from 'node:fs'
import { WeftError } from '../log/errors.js'
import { attachTun, checkInterfaceName, loadLibc, MAX_PACKET, type Libc } from './tun-libc.js'
import { errnoName } from '../net/syscalls.js'
import { FdWatch } from '../net/fd-watch.js'

export interface TunStats {
  rxPackets: number
  rxBytes: number
  txPackets: number
  txBytes: number
  /** Writes the kernel refused (or writes after close): counted and dropped, as a NIC does. */
  txDropped: number
  /** Failures of the device I/O (readiness watch, read, write) that were recovered from (or are being). */
  faults: number
  /** Of those, the ones that needed the device reopened (its addresses and routes put back). */
  reopens: number
  /** The cause of the last fault, or null. */
  lastFault: string | null
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
  /**
   * Reads now what the writes since the last read made the kernel answer (a ping reply, a TCP
   * ACK), instead of in the check phase of this loop turn: call it after a burst of writes.
   */
  readNow: () => void
  readonly stats: Readonly<TunStats>
  /**
   * Hands reading to another reader (the VPN's packet thread) instead of `onPacket`: `attach`
   * gets the device's fd now and again after every reopen, and the reader reports a failure of
   * that fd with the function returned, which reopens the device as a failure here would.
   */
  handOver: (attach: (fd: number) => void) => (cause: string) => void
  /** Reading comes back to `onPacket` (set it first): the other reader gave up. */
  handBack: () => void
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
   * Called once per fault of the device I/O (with its cause; the device is being restarted or
   * reopened), and when a packet handler threw. Default: `process.emitWarning`.
   */
  onError?: (err: WeftError) => void
  /**
   * Called after the device was reopened (a new interface, with no address, link down, no
   * routes): the owner puts its configuration back.
   */
  onReopen?: () => void
}

/** Packets delivered per turn of the event loop before yielding to other I/O. */
export const READ_BATCH = 128

/** struct virtio_net_hdr, before every packet when the device has IFF_VNET_HDR. */
export const VNET_HDR_BYTES = 10
/** One read: a packet of up to 64 KiB (a TSO segment), after its virtio header. */
const MAX_READ = MAX_PACKET + VNET_HDR_BYTES
const SLAB_SIZE = 1 << 18
/** Delay before the n-th retry of a failed recovery (the last one repeats). */
const RETRY_MS = [100, 200, 400, 1_000]
/** Errors of a write that mean the fd itself is broken (not a full queue or a link that is down). */
const BROKEN_FD = new Set(['EBADF', 'EBADFD', 'ENODEV', 'EFAULT', 'ENXIO'])

/** Opens (creating if needed) the TUN interface `name`. See the module comment. */
export async function openTun (opts: OpenTunOptions = {}): Promise<TunDevice> {
  const requested = opts.name ?? 'weft0'
  const mtu = opts.mtu ?? 1420
  const devicePath = opts.devicePath ?? '/dev/net/tun'
  const signal = opts.signal
  signal?.throwIfAborted()
  if (process.platform !== 'linux') throw new WeftError('ERR_TUN', `TUN devices are supported on Linux only (this is ${process.platform}): use --no-tun`)
  checkInterfaceName(requested)
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > MAX_PACKET) throw new WeftError('ERR_BAD_INPUT', `MTU ${mtu} is not an integer in 68..65535`)
  const c = await loadLibc()
  FdWatch.check(requested)
  const offload = opts.offload === true
  const { fd, name } = attachTun(c, devicePath, requested, mtu, offload)
  const dev = new Tun(c, fd, { name, mtu, devicePath, offload, onError: opts.onError, onReopen: opts.onReopen })
  try {
    signal?.throwIfAborted()
  } catch (err) {
    await dev.close()
    throw err
  }
  if (signal !== undefined) {
    const onAbort = (): void => { void dev.close() }
    signal.addEventListener('abort', onAbort, { once: true })
    dev.onClosed = () => { signal.removeEventListener('abort', onAbort) }
  }
  return dev
}

/** Tests only: make the device's readiness watch fail by itself, or its next read fail with EIO. */
export function injectTunFault (dev: TunDevice, kind: 'watch' | 'read'): void {
  if (!(dev instanceof Tun)) throw new Error('not a TUN device from openTun()')
  dev.injectFault(kind)
}

interface TunConfig {
  name: string
  mtu: number
  devicePath: string
  offload: boolean
  onError: ((err: WeftError) => void) | undefined
  onReopen: (() => void) | undefined
}

class Tun implements TunDevice {
  readonly name: string
  readonly mtu: number
  readonly vnetHeader: number
  readonly stats: TunStats = { rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txDropped: 0, faults: 0, reopens: 0, lastFault: null }
  onClosed: (() => void) | undefined

  readonly #libc: Libc
  readonly #cfg: TunConfig
  readonly #onError: (err: WeftError) => void
  #fd: number
  #poll: FdWatch | undefined
  /** A recovery is under way; 'device' once any fault in it needs the device reopened. */
  #recovering: 'watch' | 'device' | undefined
  #injectedReadFault = false
  #handler: ((pkt: Uint8Array) => void) | undefined
  /** Another reader of the fd (handOver), told of every (re)opened fd. */
  #reader: ((fd: number) => void) | undefined
  #closed = false
  #closing: Promise<void> | undefined
  #drainScheduled = false
  #drainImmediate: NodeJS.Immediate | undefined
  /** Inside #drain (a handler that writes to the device must not start a nested drain). */
  #draining = false
  #slab = new Uint8Array(SLAB_SIZE)
  #slabOffset = 0

  constructor (c: Libc, fd: number, cfg: TunConfig) {
    this.#libc = c
    this.#fd = fd
    this.#cfg = cfg
    this.name = cfg.name
    this.mtu = cfg.mtu
    this.vnetHeader = cfg.offload ? VNET_HDR_BYTES : 0
    this.#onError = cfg.onError ?? ((err) => { process.emitWarning(err.message, { code: err.code }) })
  }

  /**
   * (Re)starts the readiness watch on the current fd, once there is a reader: until then packets
   * wait in the kernel's queue (a level-triggered watch with no reader would spin).
   */
  startPoll (): void {
    if (this.#closed) return
    if (this.#reader !== undefined) { this.#reader(this.#fd); return }
    if (this.#handler === undefined || this.#poll !== undefined) return
    const watch: FdWatch = FdWatch.start(this.#fd, this.name, {
      readable: () => { if (this.#poll === watch && !this.#drainScheduled) this.#drain() },
      // libuv reports an error on the fd itself (EBADF and the like): the device is what failed.
      failed: (message) => { if (this.#poll === watch) this.#fault(`watching ${this.name} failed (${message})`, true) }
    })
    this.#poll = watch
    watch.ref()
  }

  onPacket (fn: (pkt: Uint8Array) => void): void {
    const first = this.#handler === undefined
    this.#handler = fn
    if (!first || this.#closed) return
    if (this.#recovering === undefined) this.startPoll()
    this.#scheduleDrain()
  }

  handBack (): void {
    this.#reader = undefined
    if (this.#recovering === undefined) this.startPoll()
    this.#scheduleDrain()
  }

  handOver (attach: (fd: number) => void): (cause: string) => void {
    if (this.#handler !== undefined) throw new Error('the device is already read by a packet handler')
    this.#reader = attach
    if (this.#recovering === undefined && !this.#closed) attach(this.#fd)
    return (cause) => { this.#fault(`${this.name}: ${cause} (packet thread)`, true) }
  }

  write (pkt: Uint8Array): boolean {
    if (this.#closed) { this.stats.txDropped++; return false }
    const n = this.#fd < 0 ? -1 : this.#libc.write(this.#fd, pkt, pkt.byteLength)
    if (n < 0) {
      // EAGAIN/ENOBUFS (queue full), EIO (link down), EINVAL (not an IP packet), EMSGSIZE: a drop.
      // A broken fd is a fault of the device.
      this.stats.txDropped++
      const code = this.#fd < 0 ? 'EBADF' : errnoName(this.#libc.errno())
      if (BROKEN_FD.has(code)) this.#fault(`writing to ${this.name} failed (${code})`, true)
      return false
    }
    this.stats.txPackets++
    this.stats.txBytes += n
    // The kernel often answers inside the write itself (a ping reply, a TCP ACK): read it in
    // this turn of the event loop instead of waiting for the next poll phase.
    if (this.#handler !== undefined) this.#scheduleDrain()
    return true
  }

  async close (): Promise<void> {
    this.#closing ??= this.#close()
    await this.#closing
  }

  async #close (): Promise<void> {
    this.#closed = true
    const poll = this.#poll
    this.#poll = undefined
    poll?.stop()
    try { closeSync(this.#fd) } catch {} // the last reference: the kernel deletes a non-persistent device here
    this.onClosed?.()
  }

  injectFault (kind: 'watch' | 'read'): void {
    if (kind === 'watch') this.#poll?.failForTest()
    else { this.#injectedReadFault = true; this.#scheduleDrain() }
  }

  #scheduleDrain (): void {
    if (this.#drainScheduled || this.#closed) return
    this.#drainScheduled = true
    this.#drainImmediate = setImmediate(this.#drain)
  }

  readNow (): void {
    if (!this.#drainScheduled || this.#draining || this.#closed) return
    clearImmediate(this.#drainImmediate)
    this.#drain()
  }

  readonly #drain = (): void => {
    this.#drainScheduled = false
    if (this.#closed || this.#recovering === 'device' || this.#draining) return
    this.#draining = true
    try {
      this.#drainBatch()
    } finally {
      this.#draining = false
    }
  }

  #drainBatch (): void {
    for (let i = 0; i < READ_BATCH; i++) {
      if (this.#slab.length - this.#slabOffset < MAX_READ) {
        this.#slab = new Uint8Array(SLAB_SIZE)
        this.#slabOffset = 0
      }
      const injected = this.#injectedReadFault
      this.#injectedReadFault = false
      const n = injected ? -1 : this.#libc.read(this.#fd, this.#slab.subarray(this.#slabOffset), MAX_READ)
      if (n < 0) {
        const code = injected ? 'EIO' : errnoName(this.#libc.errno())
        if (code === 'EAGAIN') return // drained: the watch says when the next packet is there
        if (code === 'EINTR') continue
        this.#fault(`reading ${this.name} failed (${code})`, true)
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
    this.#scheduleDrain()
  }

  /** A fault of the device I/O: counted, reported once, and recovered from (see the module comment). */
  #fault (cause: string, device: boolean): void {
    if (this.#closed) return
    if (this.#recovering !== undefined) {
      if (device) this.#recovering = 'device'
      return
    }
    this.#recovering = device ? 'device' : 'watch'
    this.stats.faults++
    this.stats.lastFault = cause
    this.#onError(new WeftError('ERR_TUN', `${cause}; ${device ? 'reopening the device' : 'restarting the watch'}`))
    void this.#recover()
  }

  async #recover (): Promise<void> {
    for (let attempt = 0; !this.#closed; attempt++) {
      const reopen = this.#recovering === 'device'
      try {
        const old = this.#poll
        this.#poll = undefined
        old?.stop()
        if (this.#closed) return
        if (reopen) {
          // The other reader forgets the number before it is closed (and may be reused).
          this.#reader?.(-1)
          try { closeSync(this.#fd) } catch {}
          this.#fd = -1 // until reopened, writes fail (EBADF) instead of going to a reused fd number
          // The same name: the old interface is gone (or goes with the old fd).
          this.#fd = attachTun(this.#libc, this.#cfg.devicePath, this.name, this.mtu, this.#cfg.offload).fd
          this.stats.reopens++
        }
        this.startPoll()
        if (this.#closed) return
        this.#recovering = undefined
        if (reopen) this.#cfg.onReopen?.()
        if (this.#handler !== undefined) this.#scheduleDrain()
        return
      } catch (err) {
        // The fd may be what is wrong: the next attempt reopens the device.
        this.#recovering = 'device'
        if (attempt === 0) this.#onError(new WeftError('ERR_TUN', `recovering ${this.name} failed (${(err as Error).message}); retrying`, { cause: err }))
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)]))
      }
    }
  }
}
