/**
 * Readiness of a file descriptor that Node cannot wrap (a TUN device is a character device, not a
 * socket or a pipe), delivered on the main thread's event loop by libuv's own `uv_poll_t`: the
 * same epoll the process's sockets use, reached through koffi (Node's binary exports libuv).
 *
 * Why not a thread blocked in poll(2), as this once was: every packet that woke that thread
 * crossed to the main thread by a message, a context switch and a scheduling delay per burst
 * (tens of µs on a quiet machine, milliseconds on a loaded one; most of the VPN's ping time),
 * and the hand-over between the two threads was where the device once died for good. Here the
 * kernel wakes the event loop directly and there is nothing to hand over.
 *
 * The reader runs inside libuv's callback, which koffi enters with a callback scope: promise jobs
 * and nextTicks it queues run right after it, as for any I/O callback. The watch is
 * level-triggered: while the fd stays readable and the reader has not drained it, the callback
 * fires again (once per poll phase).
 *
 * Main thread only: `uv_default_loop()` is the main thread's loop.
 */
import { isMainThread } from 'node:worker_threads'
import { createRequire } from 'node:module'
import { WeftError } from '../log/errors.js'

const UV_POLL = 8 // uv_handle_type
const UV_READABLE = 1
const UV_WRITABLE = 2

interface Uv {
  koffi: typeof import('koffi')
  handleSize: number
  pollInit: (loop: unknown, handle: unknown, fd: number) => number
  pollStart: (handle: unknown, events: number, cb: unknown) => number
  pollStop: (handle: unknown) => number
  close: (handle: unknown, cb: unknown) => void
  ref: (handle: unknown) => void
  unref: (handle: unknown) => void
  loop: unknown
  errName: (status: number) => string
  pollCb: import('koffi').TypeObject
  closeCb: import('koffi').TypeObject
}

let uv: Uv | undefined

function loadUv (): Uv {
  if (uv !== undefined) return uv
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi')
  const lib = koffi.load(null)
  const pollCb = koffi.proto('void weft_uv_poll_cb(void *handle, int status, int events)')
  const closeCb = koffi.proto('void weft_uv_close_cb(void *handle)')
  const errName = lib.func('const char *uv_err_name(int err)') as (status: number) => string
  uv = {
    koffi,
    handleSize: Number((lib.func('size_t uv_handle_size(int type)') as (t: number) => number | bigint)(UV_POLL)),
    pollInit: lib.func('int uv_poll_init(void *loop, void *handle, int fd)') as Uv['pollInit'],
    pollStart: lib.func('int uv_poll_start(void *handle, int events, weft_uv_poll_cb *cb)') as Uv['pollStart'],
    pollStop: lib.func('int uv_poll_stop(void *handle)') as Uv['pollStop'],
    close: lib.func('void uv_close(void *handle, weft_uv_close_cb *cb)') as Uv['close'],
    ref: lib.func('void uv_ref(void *handle)') as Uv['ref'],
    unref: lib.func('void uv_unref(void *handle)') as Uv['unref'],
    loop: (lib.func('void *uv_default_loop()') as () => unknown)(),
    errName: (status) => { try { return errName(status) } catch { return `status ${status}` } },
    pollCb,
    closeCb
  }
  return uv
}

export interface FdWatchEvents {
  /** The fd is readable (called from libuv's poll phase, at most once per loop turn). */
  readable: () => void
  /** The watch failed (libuv reported an error on the fd); no more events. */
  failed: (message: string) => void
  /**
   * Given: the fd is watched for writability instead of readability (a non-blocking connect(2)
   * finishing, reuseport-tcp.ts), and this is called in place of `readable`.
   */
  writable?: () => void
}

/** One watch on one fd. Not reusable: after stop(), make a new one (e.g. on a reopened fd). */
export class FdWatch {
  #handle: unknown
  #cb: bigint | undefined
  #stopped = false

  private constructor (private readonly u: Uv, private readonly events: FdWatchEvents) {}

  /** Throws the error start() would for reasons other than the fd: call it when opening, so they show at once. */
  static check (name: string): Uv {
    if (!isMainThread) throw new WeftError('ERR_TUN', `${name} must be opened on the main thread (its readiness comes from the main event loop)`)
    try {
      return loadUv()
    } catch (err) {
      throw new WeftError('ERR_TUN', `cannot reach libuv through koffi to watch ${name}: ${(err as Error).message}; reinstall weft's dependencies (npm ci) or use --no-tun`, { cause: err })
    }
  }

  /** Starts watching `fd` for readability. Unref'd until ref(): an idle device keeps no process alive. */
  static start (fd: number, name: string, events: FdWatchEvents): FdWatch {
    const u = FdWatch.check(name)
    const w = new FdWatch(u, events)
    const handle = u.koffi.alloc('uint8_t', u.handleSize)
    const rc = u.pollInit(u.loop, handle, fd)
    if (rc !== 0) throw new WeftError('ERR_TUN', `cannot watch ${name} (uv_poll_init: ${u.errName(rc)})`)
    w.#handle = handle
    w.#cb = u.koffi.register((_h: unknown, status: number) => { w.#fire(status) }, u.koffi.pointer(u.pollCb))
    const started = u.pollStart(handle, events.writable !== undefined ? UV_WRITABLE : UV_READABLE, w.#cb)
    if (started !== 0) {
      w.stop()
      throw new WeftError('ERR_TUN', `cannot watch ${name} (uv_poll_start: ${u.errName(started)})`)
    }
    u.unref(handle)
    return w
  }

  #fire (status: number): void {
    if (this.#stopped) return
    if (status < 0) {
      const message = this.u.errName(status)
      this.stop()
      setImmediate(() => { this.events.failed(message) })
      return
    }
    // The reader runs right here, in the poll phase, not in a setImmediate: koffi calls back inside
    // a callback scope, so the nextTicks and promise jobs it queues run as soon as it returns (as
    // after any I/O callback; test/vpn/fd-watch.test.ts), and the hop through the check phase cost
    // a ping ~50–190 µs per wake-up on a busy machine (docs/vpn.md "Where a ping's time goes").
    try {
      const writable = this.events.writable
      if (writable !== undefined) writable()
      else this.events.readable()
    } catch (err) {
      // As a throwing I/O callback would: an uncaught exception, not one swallowed inside libuv.
      setImmediate(() => { throw err })
    }
  }

  /** A device that is being read keeps the process alive, like a listening socket. */
  ref (): void { if (!this.#stopped) this.u.ref(this.#handle) }

  /** Stops the watch before the fd is closed (epoll must not watch a closed fd). Idempotent. */
  stop (): void {
    if (this.#stopped) return
    this.#stopped = true
    const u = this.u
    const handle = this.#handle
    const cb = this.#cb
    u.pollStop(handle)
    // libuv touches the handle until its close callback: the memory and the registered callback
    // are released only then.
    const closed = u.koffi.register(() => {
      // Not from inside the callback being released.
      setImmediate(() => {
        u.koffi.unregister(closed)
        if (cb !== undefined) u.koffi.unregister(cb)
        u.koffi.free(handle)
      })
    }, u.koffi.pointer(u.closeCb))
    u.close(handle, closed)
  }

  /** Tests only: report a failure as libuv would (the watch stops by itself). */
  failForTest (): void { this.#fire(-9) }
}
