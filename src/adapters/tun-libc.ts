/**
 * The system calls behind the TUN device (`tun-device.ts`), made through koffi (an FFI that ships
 * prebuilt binaries: no compiler at install time): attaching /dev/net/tun to an interface with
 * `TUNSETIFF`, offload with `TUNSETOFFLOAD` and the MTU with `SIOCSIFMTU`. Every failure is a `WeftError('ERR_TUN')` saying what to do about it.
 */
import { closeSync, constants as fsConstants, openSync } from 'node:fs'
import { createRequire } from 'node:module'
import { WeftError } from '../log/errors.js'
import { errnoName, syscalls } from '../net/syscalls.js'

export interface Libc {
  koffiPath: string
  ioctl: (fd: number, req: number, arg: Buffer) => number
  ioctlInt: (fd: number, req: number, arg: number) => number
  socket: (domain: number, type: number, proto: number) => number
  close: (fd: number) => number
  /** read(2) and write(2) on the device: the shared bindings of src/net/syscalls.ts (-1 and errno, no exceptions). */
  read: (fd: number, buf: Uint8Array, n: number) => number
  write: (fd: number, buf: Uint8Array, n: number) => number
  errno: () => number
}

const IFNAMSIZ = 16
const IFREQ_SIZE = 40 // sizeof(struct ifreq) on 64-bit Linux (32 on 32-bit; 40 is enough for both)
const IFF_TUN = 0x0001
const IFF_NO_PI = 0x1000
const IFF_VNET_HDR = 0x4000
const TUN_F_CSUM = 0x01
const TUN_F_TSO4 = 0x02
const TUN_F_TSO6 = 0x04
const SIOCSIFMTU = 0x8922
const AF_INET = 2
const SOCK_DGRAM = 2
const SOCK_CLOEXEC = 0o2000000
export const MAX_PACKET = 65535

const ODD_IOCTL_ARCH = ['mips', 'mipsel', 'ppc', 'ppc64', 'sparc', 'sparc64'].includes(process.arch)
// _IOW('T', 202, int): the direction bits differ on a few architectures.
const TUNSETIFF = ODD_IOCTL_ARCH ? 0x800454ca : 0x400454ca
// _IOW('T', 208, unsigned int)
const TUNSETOFFLOAD = ODD_IOCTL_ARCH ? 0x800454d0 : 0x400454d0

let libc: Libc | undefined

export async function loadLibc (): Promise<Libc> {
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
  const sys = syscalls()
  if (sys === null) throw new WeftError('ERR_TUN', `cannot bind read(2)/write(2) through koffi on ${process.platform}-${process.arch}; reinstall weft's dependencies (npm ci) or use --no-tun`)
  // dlopen(NULL): the symbols already in the process, which include libc's (glibc or musl).
  const lib = koffi.load(null)
  libc = {
    koffiPath,
    ioctl: lib.func('int ioctl(int fd, unsigned long request, void *arg)') as Libc['ioctl'],
    // The same variadic call with an integer argument (TUNSETOFFLOAD takes its flags by value).
    ioctlInt: lib.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']) as Libc['ioctlInt'],
    socket: lib.func('int socket(int domain, int type, int protocol)') as Libc['socket'],
    close: lib.func('int close(int fd)') as Libc['close'],
    read: sys.read,
    write: sys.write,
    errno: sys.errno
  }
  return libc
}

/** Checks an interface name: 1-15 bytes, no "/" or spaces, at most one %d. */
export function checkInterfaceName (name: string): void {
  if (Buffer.byteLength(name) >= IFNAMSIZ || name.length === 0 || /[/\s]/.test(name) || name === '.' || name === '..' || (name.match(/%/g) ?? []).length > 1) {
    throw new WeftError('ERR_BAD_INPUT', `"${name}" is not a valid interface name (1-15 bytes, no "/" or spaces, at most one %d)`)
  }
}

/**
 * Opens `devicePath` non-blocking and attaches it to the TUN interface `requested` (creating it),
 * with offload if asked, and sets the MTU. Returns the fd and the name the kernel gave.
 */
export function attachTun (c: Libc, devicePath: string, requested: string, mtu: number, offload: boolean): { fd: number, name: string } {
  let fd: number
  try {
    fd = openSync(devicePath, fsConstants.O_RDWR | fsConstants.O_NONBLOCK)
  } catch (err) {
    throw openError(devicePath, (err as NodeJS.ErrnoException).code, err)
  }
  try {
    const ifr = Buffer.alloc(IFREQ_SIZE)
    ifr.write(requested, 0, 'utf8')
    ifr.writeUInt16LE(IFF_TUN | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0), IFNAMSIZ)
    if (c.ioctl(fd, TUNSETIFF, ifr) !== 0) throw setIffError(requested, devicePath, c.errno())
    // Segmentation and checksum offload: the kernel hands us TCP segments of up to 64 KiB (one
    // read, one frame on the mesh, one write at the peer, which the peer's kernel segments or
    // delivers whole) instead of one MTU-sized packet each. Without it the virtio header stays,
    // with no segments in it.
    if (offload) c.ioctlInt(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    const end = ifr.indexOf(0)
    const name = ifr.toString('utf8', 0, end === -1 ? IFNAMSIZ : Math.min(end, IFNAMSIZ))
    setMtu(c, name, mtu)
    return { fd, name }
  } catch (err) {
    closeSync(fd)
    throw err
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

