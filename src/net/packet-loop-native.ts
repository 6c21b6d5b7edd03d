/**
 * The native packet loop (native/packet-loop.c, docs/vpn.md "The native packet loop"), loaded
 * through koffi. Built at install with the machine's C compiler where there is one; without it
 * (or with WEFT_PACKET_LOOP=js) the packet thread runs its JavaScript loop, which moves the same
 * bytes.
 */
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

/** The C side's version of this interface: a library from another build is not used. */
const ABI = 1

type Ptr = unknown

export interface NativeLoop {
  /** The loop's state; counters, control and mesh must stay alive (and unmoved) as long as it. */
  create: (wakeFd: number, vnet: number, selfPeer: number, meshBacklog: number, counters: Float64Array, control: Int32Array, mesh: Uint8Array, meshCap: number) => Ptr
  setTun: (loop: Ptr, fd: number, gen: number) => void
  /** Records of 24 bytes (route-records in packet-thread-native.ts); 0, or -1 when one is malformed. */
  setRoutes: (loop: Ptr, records: Uint8Array, n: number) => number
  /** Tests only: the peer index for a packet's destination (src 0) or source (src 1), or -1. */
  routeFor: (loop: Ptr, ip: Uint8Array, n: number, src: number) => number
  addOut: (loop: Ptr, id: number, peer: number, slot: number, fd: number, key: Uint8Array, head: Uint8Array, headLen: number) => number
  addIn: (loop: Ptr, id: number, peer: number, slot: number, fd: number, key: Uint8Array, leftover: Uint8Array, len: number) => number
  send: (loop: Ptr, id: number, bytes: Uint8Array, len: number) => void
  close: (loop: Ptr, id: number) => void
  fault: (loop: Ptr) => void
  /** Blocks until there is something for JavaScript: RUN bits, or -errno. */
  run: (loop: Ptr) => number
  /** The next event into out[0..3] (type, id or generation, why, errno); 0 when none is left. */
  event: (loop: Ptr, out: Int32Array) => number
  meshBytes: (loop: Ptr) => number
  stop: (loop: Ptr) => void
  free: (loop: Ptr) => void
}

export const RUN = { wake: 1, events: 2, mesh: 4, stop: 8 } as const
export const EVENT = { closed: 1, tunFault: 2, tunClosed: 3 } as const

let loaded: NativeLoop | string | undefined

/** Where the install put the library: native/build/ at the package's root (two levels up from src/net/, dist/net/ and dist/cli/). */
export function nativeLoopPath (): string {
  return fileURLToPath(new URL('../../native/build/packet-loop.so', import.meta.url))
}

/** The native loop, or why it cannot be used (the packet thread then runs its JavaScript loop). */
export function loadNativeLoop (): NativeLoop | string {
  if (loaded !== undefined) return loaded
  if (process.env.WEFT_PACKET_LOOP === 'js') return (loaded = 'turned off (WEFT_PACKET_LOOP=js)')
  if (process.platform !== 'linux') return (loaded = `not on ${process.platform}`)
  const path = nativeLoopPath()
  if (!existsSync(path)) return (loaded = `not built (${path} is missing: the install found no C compiler; apt-get install gcc libc6-dev, then npm rebuild weft)`)
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi')
    const lib = koffi.load(path)
    const fn = (name: string, ret: string, args: string[]): never => lib.func(name, ret, args) as never
    const abi = (fn('weft_pl_abi', 'int', []) as () => number)()
    if (abi !== ABI) return (loaded = `${path} is from another version (interface ${abi}, this one needs ${ABI}): run npm rebuild weft`)
    if ((fn('weft_pl_init', 'int', []) as () => number)() !== 0) return (loaded = 'OpenSSL\'s EVP functions are not exported by this Node.js')
    const conn = ['void *', 'int', 'int', 'int', 'int', 'void *', 'void *', 'int']
    loaded = {
      create: fn('weft_pl_new', 'void *', ['int', 'int', 'int', 'int', 'void *', 'void *', 'void *', 'int']),
      setTun: fn('weft_pl_set_tun', 'void', ['void *', 'int', 'int']),
      setRoutes: fn('weft_pl_set_routes', 'int', ['void *', 'void *', 'int']),
      routeFor: fn('weft_pl_route_for', 'int', ['void *', 'void *', 'int', 'int']),
      addOut: fn('weft_pl_add_out', 'int', conn),
      addIn: fn('weft_pl_add_in', 'int', conn),
      send: fn('weft_pl_send', 'void', ['void *', 'int', 'void *', 'int']),
      close: fn('weft_pl_close', 'void', ['void *', 'int']),
      fault: fn('weft_pl_fault', 'void', ['void *']),
      run: fn('weft_pl_run', 'int', ['void *']),
      event: fn('weft_pl_event', 'int', ['void *', 'void *']),
      meshBytes: fn('weft_pl_mesh_bytes', 'int', ['void *']),
      stop: fn('weft_pl_stop', 'void', ['void *']),
      free: fn('weft_pl_free', 'void', ['void *'])
    }
  } catch (err) {
    loaded = `${path} could not be loaded (${(err as Error).message})`
  }
  return loaded
}
