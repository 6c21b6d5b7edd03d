/**
 * Reads a connected TCP socket without Node's stream machinery: the receiving end of a VPN direct
 * path gets one small frame per ping, and Node's path for it (onStreamRead → Readable.push →
 * addChunk → emit, a nextTick for maybeReadMore, a fresh 64 KiB buffer per read) was about a fifth
 * of the CPU a ping cost the daemon (docs/vpn.md "Where a ping's time goes").
 *
 * How: the socket's descriptor is duplicated (F_DUPFD_CLOEXEC), the Node socket is destroyed
 * (closing only its own descriptor: the connection lives on in the duplicate), and the duplicate
 * is watched by libuv's uv_poll (fd-watch.ts) and read with read(2) through koffi into a slab,
 * as the TUN device is. Linux only; anywhere it cannot be set up, `adoptForReading` returns
 * undefined and the caller keeps the Node socket.
 */
import type { Socket } from 'node:net'
import { FdWatch } from './fd-watch.js'
import { EAGAIN, EINTR, F_DUPFD_CLOEXEC, syscalls, type Syscalls } from './syscalls.js'
import { socketFd } from './socket-fd-write.js'

const READ_BYTES = 64 * 1024
const SLAB_BYTES = 256 * 1024
/** Reads per readiness callback before yielding to the rest of the loop (the watch fires again). */
const READS_PER_TURN = 64

function loadSys (): Syscalls | null {
  return process.env.WEFT_SOCKET_READ === 'node' ? null : syscalls()
}

export interface SocketReader {
  /** Stops reading and closes the connection. Idempotent; `onEnd` is not called for it. */
  close: () => void
}

export interface SocketReaderEvents {
  /** Bytes read: a fresh view of a slab that is never overwritten (it may be kept). */
  data: (chunk: Uint8Array) => void
  /** The peer closed the connection, or reading failed (with the errno's number). */
  end: (errno?: number) => void
}

/**
 * Takes over reading `socket` (which must be connected, with no data listener left behind, and
 * nothing to write: the Node socket is destroyed). Undefined when it cannot; then nothing was
 * changed and the socket is the caller's as before.
 */
export function adoptForReading (socket: Socket, events: SocketReaderEvents): SocketReader | undefined {
  const s = loadSys()
  if (s === null || socket.destroyed) return undefined
  const fd = socketFd(socket)
  if (fd < 0) return undefined
  const own = s.fcntl(fd, F_DUPFD_CLOEXEC, 0)
  if (own < 0) return undefined
  let watch: FdWatch
  let closed = false
  let slab = new Uint8Array(SLAB_BYTES)
  let offset = 0
  const finish = (errno?: number): void => {
    if (closed) return
    closed = true
    watch.stop()
    s.close(own)
    events.end(errno)
  }
  const drain = (): void => {
    for (let i = 0; i < READS_PER_TURN && !closed; i++) {
      if (slab.byteLength - offset < READ_BYTES) { slab = new Uint8Array(SLAB_BYTES); offset = 0 }
      const n = s.read(own, slab.subarray(offset, offset + READ_BYTES), READ_BYTES)
      if (n > 0) {
        const chunk = slab.subarray(offset, offset + n)
        offset += (n + 7) & ~7
        events.data(chunk)
        continue
      }
      if (n === 0) { finish(); return }
      const errno = s.errno()
      if (errno === EAGAIN) return
      if (errno !== EINTR) { finish(errno); return }
    }
  }
  try {
    watch = FdWatch.start(own, 'a direct-path connection', {
      readable: drain,
      failed: () => { finish() }
    })
  } catch {
    s.close(own)
    return undefined
  }
  watch.ref()
  // Only Node's descriptor goes; the connection stays open through ours.
  socket.removeAllListeners('data')
  socket.destroy()
  // Bytes that arrived between Node's last read and the hand-over are in the kernel's buffer: read them.
  setImmediate(drain)
  return {
    close: () => {
      if (closed) return
      closed = true
      watch.stop()
      s.close(own)
    }
  }
}
