/**
 * TCP sockets that share their port with a listening socket (SO_REUSEPORT), which Node 20's `net`
 * cannot make: the outgoing half of TCP hole punching (docs/mesh.md "4. Hole punching").
 *
 * Why: a NAT maps each outgoing connection's source port. When a dial leaves from an ephemeral
 * port, the public address a peer observes is a mapping of that port, not of the listening one,
 * and a peer that dials it back (DCUtR) meets a mapping that no longer matches anything. Dials
 * that leave from the listening port (bound with SO_REUSEADDR + SO_REUSEPORT before connect(2))
 * make the NAT map the listening port itself, and make DCUtR's two simultaneous dials cross as
 * one TCP simultaneous open.
 *
 * How: socket(2), setsockopt(2), bind(2) and a non-blocking connect(2) through koffi; the end of
 * the connect is seen by libuv's uv_poll (fd-watch.ts, writable), SO_ERROR says how it ended, and
 * the connected descriptor is handed to `new net.Socket({ fd })`. The listening side: Node binds
 * and listens as usual, then SO_REUSEPORT is set on its descriptor (Linux checks the flag of the
 * sockets already on a port when a new one binds it; test/net/reuseport-socket.test.ts).
 * Linux only; where koffi or a call fails, callers dial as before (reuseport-tcp.ts).
 */
import { Socket, type Server } from 'node:net'
import { createRequire } from 'node:module'
import { isIPv4 } from 'node:net'
import { FdWatch } from './fd-watch.js'
import { syscalls } from './syscalls.js'

const AF_INET = 2
const SOCK_STREAM = 1
const SOCK_NONBLOCK = 0o4000
const SOCK_CLOEXEC = 0o2000000
const SOL_SOCKET = 1
const SO_REUSEADDR = 2
const SO_ERROR = 4
const SO_REUSEPORT = 15
export const EADDRINUSE = 98
export const EADDRNOTAVAIL = 99
const EINPROGRESS = 115

interface SocketCalls {
  socket: (domain: number, type: number, protocol: number) => number
  setsockopt: (fd: number, level: number, name: number, value: Int32Array, len: number) => number
  getsockopt: (fd: number, level: number, name: number, value: Int32Array, len: Uint32Array) => number
  bind: (fd: number, addr: Uint8Array, len: number) => number
  connect: (fd: number, addr: Uint8Array, len: number) => number
  close: (fd: number) => number
  errno: () => number
}

let loaded: SocketCalls | null | undefined

/** The calls, or null (not Linux, no koffi, or WEFT_REUSEPORT=off to test the fallback). */
export function socketCalls (): SocketCalls | null {
  if (process.env.WEFT_REUSEPORT === 'off') return null
  if (loaded !== undefined) return loaded
  const sys = syscalls()
  if (sys === null) return (loaded = null)
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi')
    const lib = koffi.load(null)
    loaded = {
      socket: lib.func('int socket(int, int, int)') as SocketCalls['socket'],
      setsockopt: lib.func('int setsockopt(int, int, int, void *, unsigned int)') as SocketCalls['setsockopt'],
      getsockopt: lib.func('int getsockopt(int, int, int, void *, void *)') as SocketCalls['getsockopt'],
      bind: lib.func('int bind(int, void *, unsigned int)') as SocketCalls['bind'],
      connect: lib.func('int connect(int, void *, unsigned int)') as SocketCalls['connect'],
      close: sys.close,
      errno: sys.errno
    }
  } catch {
    loaded = null
  }
  return loaded
}

/** A failed call, with its errno (EADDRINUSE/EADDRNOTAVAIL: the port cannot be shared for this dial). */
export class SocketCallError extends Error {
  constructor (readonly call: string, readonly errno: number) {
    super(`${call} failed (errno ${errno})`)
    this.name = 'SocketCallError'
  }
}

/** struct sockaddr_in (Linux, little-endian family, port and address in network order). */
function sockaddrIn (ip: string, port: number): Uint8Array {
  const b = new Uint8Array(16)
  new DataView(b.buffer).setUint16(0, AF_INET, true)
  new DataView(b.buffer).setUint16(2, port, false)
  b.set(ip.split('.').map(Number), 4)
  return b
}

function share (c: SocketCalls, fd: number): void {
  const one = new Int32Array([1])
  for (const [name, opt] of [['SO_REUSEADDR', SO_REUSEADDR], ['SO_REUSEPORT', SO_REUSEPORT]] as const) {
    if (c.setsockopt(fd, SOL_SOCKET, opt, one, 4) !== 0) throw new SocketCallError(`setsockopt(${name})`, c.errno())
  }
}

/**
 * Lets later sockets bind the port `server` listens on (SO_REUSEPORT on its descriptor). False
 * when it cannot (no calls, no descriptor): dials then leave from ephemeral ports, as before.
 */
export function sharePort (server: Server): boolean {
  const c = socketCalls()
  const fd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd
  if (c === null || typeof fd !== 'number' || fd < 0) return false
  try {
    share(c, fd)
    return true
  } catch {
    return false
  }
}

export interface PortDial {
  /** The local address (a listener's, 0.0.0.0 for any) and port to leave from. */
  localIp: string
  localPort: number
  remoteIp: string
  remotePort: number
  signal: AbortSignal
}

/**
 * Connects from `localIp:localPort` (shared with a listener) to the remote address; resolves
 * with the connected Node socket. Rejects with a SocketCallError (errno) when a call fails: at
 * bind or connect with EADDRINUSE/EADDRNOTAVAIL the port cannot be used for this peer (the same
 * four-tuple is open or in TIME_WAIT), other errnos are the connection's own failure
 * (ECONNREFUSED, ETIMEDOUT, …); with the signal's reason when aborted.
 */
export async function dialFromPort (d: PortDial): Promise<Socket> {
  const c = socketCalls()
  if (c === null) throw new SocketCallError('koffi', 0)
  if (!isIPv4(d.localIp) || !isIPv4(d.remoteIp)) throw new SocketCallError('IPv4 only', 0)
  d.signal.throwIfAborted()
  const fd = c.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
  if (fd < 0) throw new SocketCallError('socket', c.errno())
  let owned = true
  try {
    share(c, fd)
    const local = sockaddrIn(d.localIp, d.localPort)
    if (c.bind(fd, local, local.byteLength) !== 0) throw new SocketCallError('bind', c.errno())
    const remote = sockaddrIn(d.remoteIp, d.remotePort)
    if (c.connect(fd, remote, remote.byteLength) !== 0) {
      const e = c.errno()
      if (e !== EINPROGRESS) throw new SocketCallError('connect', e)
      await connected(c, fd, d.signal)
    }
    owned = false
    // Node takes the descriptor over (and closes it with the socket).
    return new Socket({ fd, readable: true, writable: true })
  } finally {
    if (owned) c.close(fd)
  }
}

/** Waits for a non-blocking connect(2) on `fd` to end; throws its error (SO_ERROR) or the abort. */
async function connected (c: SocketCalls, fd: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let watch: FdWatch | undefined
    const done = (err?: unknown): void => {
      signal.removeEventListener('abort', onAbort)
      // Stopped before Node wraps the descriptor: one fd, one watcher in libuv.
      watch?.stop()
      watch = undefined
      if (err === undefined) resolve()
      else reject(err)
    }
    const onAbort = (): void => { done(signal.reason) }
    try {
      // The connect's outcome is SO_ERROR, whether libuv saw the fd writable or in error (a refusal).
      const outcome = (): void => {
        const v = new Int32Array(1)
        const n = new Uint32Array([4])
        if (c.getsockopt(fd, SOL_SOCKET, SO_ERROR, v, n) !== 0) done(new SocketCallError('getsockopt(SO_ERROR)', c.errno()))
        else if (v[0] !== 0) done(new SocketCallError('connect', v[0] as number))
        else done()
      }
      watch = FdWatch.start(fd, 'a reuseport dial', {
        readable: () => {},
        failed: () => { outcome() },
        writable: outcome
      })
      // A dial in progress keeps the process alive, as Node's own connecting socket does.
      watch.ref()
    } catch (err) {
      done(err)
      return
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
