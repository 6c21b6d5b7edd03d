/**
 * read(2), write(2), close(2) and fcntl(2) through koffi, returning -1 and leaving errno to
 * `errno()` instead of throwing: the packet path meets EAGAIN at the end of every drain, and
 * Node's fs calls turn each one into an exception (13–22 µs here). Loaded on first use; null
 * off Linux or without koffi (callers then keep Node's own I/O).
 */
import { createRequire } from 'node:module'

export const EINTR = 4
export const EAGAIN = 11

export interface Syscalls {
  read: (fd: number, buf: Uint8Array, n: number) => number
  write: (fd: number, buf: Uint8Array, n: number) => number
  close: (fd: number) => number
  fcntl: (fd: number, cmd: number, arg: number) => number
  /** poll(2) over an array of struct pollfd (8 bytes each: int fd, short events, short revents). */
  poll: (fds: Uint8Array, n: number, timeoutMs: number) => number
  eventfd: (initval: number, flags: number) => number
  errno: () => number
}

export const F_DUPFD_CLOEXEC = 1030

let loaded: Syscalls | null | undefined

export function syscalls (): Syscalls | null {
  if (loaded !== undefined) return loaded
  if (process.platform !== 'linux') return (loaded = null)
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi')
    const lib = koffi.load(null)
    // void *, not _Out_ uint8_t *: koffi passes a typed array's own memory (its view, offset
    // included) with no copy either way.
    loaded = {
      read: lib.func('read', 'long', ['int', 'void *', 'unsigned long']) as Syscalls['read'],
      write: lib.func('write', 'long', ['int', 'void *', 'unsigned long']) as Syscalls['write'],
      close: lib.func('close', 'int', ['int']) as Syscalls['close'],
      fcntl: lib.func('fcntl', 'int', ['int', 'int', 'int']) as Syscalls['fcntl'],
      poll: lib.func('poll', 'int', ['void *', 'unsigned long', 'int']) as Syscalls['poll'],
      eventfd: lib.func('eventfd', 'int', ['unsigned int', 'int']) as Syscalls['eventfd'],
      errno: () => koffi.errno()
    }
  } catch {
    loaded = null
  }
  return loaded
}

const ERRNO: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 4: 'EINTR', 5: 'EIO', 6: 'ENXIO', 9: 'EBADF', 11: 'EAGAIN', 13: 'EACCES', 14: 'EFAULT', 16: 'EBUSY',
  19: 'ENODEV', 22: 'EINVAL', 25: 'ENOTTY', 77: 'EBADFD', 90: 'EMSGSIZE', 105: 'ENOBUFS'
}

/** The symbolic name of an errno value (EAGAIN, EBADF…), for messages. */
export function errnoName (errno: number): string {
  return ERRNO[errno] ?? `errno ${errno}`
}
