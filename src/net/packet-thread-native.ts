/**
 * The packet thread with the native loop (packet-loop-native.ts): this side reads the main
 * thread's messages and turns them into calls, compiles the routes, and says what the loop did
 * (connections closed, device faults, packets for the libp2p path). The loop itself blocks in
 * C and returns only when there is something for JavaScript, so a packet on the direct path
 * wakes no JavaScript (docs/vpn.md "The native packet loop").
 *
 * What the main thread sees is the same as with the JavaScript loop (packet-thread-worker.ts):
 * the same messages, the same counters, the same reasons.
 */
import { receiveMessageOnPort } from 'node:worker_threads'
import type { Route } from '../projections/routes.js'
import { parseCidr } from '../projections/ip.js'
import { errnoName, syscalls } from './syscalls.js'
import { EVENT, RUN, type NativeLoop } from './packet-loop-native.js'
import { CONTROL, THREAD_PEER_SLOTS, type FromThread, type ThreadSetup, type ToThread } from './packet-thread-wire.js'

/** Room for packets handed to the main thread per return of the loop (each up to 64 KiB). */
const MESH_BUFFER_BYTES = 1024 * 1024
const RECORD_BYTES = 24

const CLOSED_WHY = [
  'the peer closed the connection', 'writing failed', 'reading failed', 'a frame failed authentication or was malformed',
  'the descriptor is not open', 'replaced by a newer connection', 'closed', 'the VPN stopped',
  'the frame counter is exhausted; reconnect', 'AES-256-GCM encryption failed in OpenSSL'
]
const TUN_WHY = ['reading the device failed', 'writing to the device failed', 'the device reported a closed descriptor', 'the device reported a hang-up', 'the device reported an error']

/** Peers as small numbers for the C side, in the order first seen (never reused while the thread runs). */
class PeerNumbers {
  private readonly numbers = new Map<string, number>()
  of (author: string): number {
    let n = this.numbers.get(author)
    if (n === undefined) { n = this.numbers.size; this.numbers.set(author, n) }
    return n
  }
}

/**
 * The route table as the C side reads it: per route, family, prefix length, 2 unused bytes, the
 * peer's number (int32, little-endian), the address (16 bytes, network order).
 */
export function routeRecords (routes: readonly Route[], peers: { of: (author: string) => number }): Uint8Array {
  const out = new Uint8Array(RECORD_BYTES * routes.length)
  const view = new DataView(out.buffer)
  for (const [i, r] of routes.entries()) {
    const c = parseCidr(r.cidr)
    const o = i * RECORD_BYTES
    out[o] = c.family
    out[o + 1] = c.prefix
    view.setInt32(o + 4, peers.of(r.peer), true)
    const bytes = c.family === 4 ? 4 : 16
    for (let b = 0; b < bytes; b++) out[o + 8 + b] = Number((c.base >> BigInt(8 * (bytes - 1 - b))) & 0xffn)
  }
  return out
}

function closedWhy (why: number, errno: number): string {
  const text = CLOSED_WHY[why] ?? `closed (${why})`
  return why === 1 || why === 2 ? `${text} (${errnoName(errno)})` : text
}

function tunWhy (why: number, errno: number): string {
  const text = TUN_WHY[why] ?? `the device failed (${why})`
  return why <= 1 ? `${text} (${errnoName(errno)})` : text
}

/** Runs the packet thread on the native loop until the main thread says stop. */
export function runNativeLoop (lib: NativeLoop, setup: ThreadSetup, post: (msg: FromThread, transfer?: ArrayBuffer[]) => void): void {
  const port = setup.port
  const peers = new PeerNumbers()
  const counters = new Float64Array(setup.counters)
  const control = new Int32Array(setup.control)
  // The C side keeps these three pointers between calls: shared buffers, whose memory never moves.
  const mesh = new Uint8Array(new SharedArrayBuffer(MESH_BUFFER_BYTES))
  const meshView = new DataView(mesh.buffer)
  const ev = new Int32Array(4)
  const loop = lib.create(setup.wakeFd, setup.vnetHeader, peers.of(setup.self), setup.meshBacklogBytes, counters, control, mesh, mesh.byteLength)
  if (loop === null) throw new Error('the native packet loop could not allocate its state')

  const events = (): void => {
    while (lib.event(loop, ev) !== 0) {
      const [type, id, why, errno] = ev as unknown as [number, number, number, number]
      if (type === EVENT.closed) post({ t: 'closed', id, why: closedWhy(why, errno) })
      else if (type === EVENT.tunFault) post({ t: 'tun-fault', cause: tunWhy(why, errno), gen: id })
      else if (type === EVENT.tunClosed) post({ t: 'tun-closed', gen: id })
    }
  }

  const postMesh = (): void => {
    const used = lib.meshBytes(loop)
    const packets: Uint8Array[] = []
    let bytes = 0
    for (let o = 0; o < used;) {
      const n = meshView.getUint32(o)
      packets.push(mesh.slice(o + 4, o + 4 + n))
      bytes += n
      o += (4 + n + 3) & ~3
    }
    if (packets.length === 0) return
    Atomics.add(control, CONTROL.meshBytes, bytes)
    post({ t: 'mesh', packets }, packets.map((p) => p.buffer as ArrayBuffer))
  }

  const handle = (msg: ToThread): void => {
    switch (msg.t) {
      case 'tun': lib.setTun(loop, msg.fd, msg.gen); break
      case 'routes': {
        const records = routeRecords(msg.routes, peers)
        if (lib.setRoutes(loop, records, msg.routes.length) !== 0) throw new Error('the native packet loop refused the route table')
        break
      }
      case 'out':
      case 'in':
        // The C side indexes the shared counters by slot: one outside them would write past them.
        if (!Number.isInteger(msg.slot) || msg.slot < 0 || msg.slot >= THREAD_PEER_SLOTS) throw new Error(`connection ${msg.id}: peer slot ${msg.slot} is outside 0..${THREAD_PEER_SLOTS - 1}`)
        // And it reads 32 bytes of key.
        if (msg.key.byteLength !== 32) throw new Error(`connection ${msg.id}: a frame key is 32 bytes, got ${msg.key.byteLength}`)
        if ((msg.t === 'in'
          ? lib.addIn(loop, msg.id, peers.of(msg.author), msg.slot, msg.fd, msg.key, msg.leftover, msg.leftover.byteLength)
          : lib.addOut(loop, msg.id, peers.of(msg.author), msg.slot, msg.fd, msg.key, msg.head, msg.head.byteLength)) !== 0) {
          // Not taken (out of memory): the descriptor is closed here, and the main thread told.
          syscalls()?.close(msg.fd)
          post({ t: 'closed', id: msg.id, why: 'the native packet loop is out of memory' })
        }
        break
      case 'send': lib.send(loop, msg.id, msg.bytes, msg.bytes.byteLength); break
      case 'close': lib.close(loop, msg.id); break
      case 'fault': lib.fault(loop); break
      case 'crash': throw new Error('crash requested (test)')
    }
    events()
  }

  const messages = (): void => {
    for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) handle(m.message as ToThread)
  }

  try {
    messages()
    for (;;) {
      const r = lib.run(loop)
      if (r < 0) throw new Error(`poll failed (${errnoName(-r)})`)
      // Closed connections first, as the JavaScript loop says them: the main thread must not
      // route the packets below to a connection the thread already closed.
      if ((r & RUN.events) !== 0) events()
      if ((r & RUN.mesh) !== 0) postMesh()
      if ((r & RUN.stop) !== 0) break
      if ((r & RUN.wake) !== 0) messages()
    }
  } catch (err) {
    // The main thread closes every descriptor this thread did not say it closed; the memory is
    // given back here.
    events()
    lib.free(loop)
    throw err
  }
  lib.stop(loop)
  events()
  lib.free(loop)
  post({ t: 'stopped' })
  port.close()
}
