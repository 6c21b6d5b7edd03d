/**
 * Writes to a connected Node socket's descriptor with write(2) directly (through koffi), when
 * nothing is queued in the socket: the VPN's direct path sends most packets alone, and Node's
 * Writable machinery around each one (write → writeOrBuffer → _write → writeGeneric →
 * handleWriteReq) costs ~80 µs when the code is cold against ~55 µs for the bare call (the kernel's
 * own part). What the kernel does not take goes through `socket.write`, which queues it and
 * reports back-pressure as usual; once anything is queued, everything goes that way until it
 * drains, so the bytes keep their order.
 *
 * The descriptor is read from the socket at every write (Node's internal `_handle.fd`, stable on
 * Unix): once the socket is destroyed it is gone, and a number the kernel may already have given
 * to another file is never written to.
 */
import type { Socket } from 'node:net'
import { EAGAIN, EINTR, syscalls, type Syscalls } from './syscalls.js'

function loadRaw (): Syscalls | null {
  return process.env.WEFT_SOCKET_WRITE === 'node' ? null : syscalls()
}

/** The descriptor of a connected Node socket (Node's internal `_handle.fd`), or -1. */
export function socketFd (socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd
  return typeof fd === 'number' && fd >= 0 ? fd : -1
}

/**
 * Writes `bytes` to `socket`, as `socket.write` would (same return value: false means wait for
 * 'drain'), taking the short way when nothing is queued.
 */
export function writeToSocket (socket: Socket, bytes: Uint8Array): boolean {
  const r = loadRaw()
  if (r === null || socket.destroyed || socket.writableLength > 0 || socket.connecting) return socket.write(bytes)
  const fd = socketFd(socket)
  if (fd < 0) return socket.write(bytes)
  let n = r.write(fd, bytes, bytes.byteLength)
  if (n === bytes.byteLength) return true
  if (n < 0) {
    const errno = r.errno()
    // Anything but "full": let Node's write meet the same error and report it its own way.
    if (errno !== EAGAIN && errno !== EINTR) return socket.write(bytes)
    n = 0
  }
  return socket.write(bytes.subarray(n))
}

/** Whether writes take the short way in this process (for tests and the bench). */
export function socketWriteIsDirect (): boolean {
  return loadRaw() !== null
}
