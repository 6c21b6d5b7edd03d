/**
 * A wire with delay for the simulated internet (internet-lab.ts), where this kernel has no netem:
 * a userspace Ethernet bridge between two interfaces of one namespace that holds every frame
 * `ms` milliseconds, each way, in arrival order. Frames are read and written whole through
 * AF_PACKET sockets (koffi, as the VPN reaches libc), so nothing above Ethernet is touched: the
 * NAT routers on either side see the same packets, only later.
 *
 *   node --import tsx test/system/delay-wire.ts <ifA> <ifB> <ms>
 *
 * Prints `ready` once both sockets are bound; on SIGTERM prints its counters and exits. Bounds:
 * at most MAX_QUEUED frames wait per direction (more are dropped and counted), and a frame
 * bigger than the 64 KiB read buffer is cut (and counted); offloads should be off on both
 * neighbours (`gso_max_segs 1`) so that no frame exceeds the MTU.
 */
import { readFileSync } from 'node:fs'
import { syscalls, EAGAIN, EINTR } from '../../src/net/syscalls.js'
import { FdWatch } from '../../src/net/fd-watch.js'
import { socketCalls } from '../../src/net/reuseport-socket.js'

const [ifA, ifB, msText] = process.argv.slice(2)
const delayMs = Number(msText)
if (ifA === undefined || ifB === undefined || !Number.isFinite(delayMs) || delayMs < 0) {
  process.stderr.write('usage: delay-wire.ts <ifA> <ifB> <ms>\n')
  process.exit(2)
}

const AF_PACKET = 17
const SOCK_RAW = 3
const SOCK_NONBLOCK = 0o4000
const ETH_P_ALL_BE = 0x0300 // htons(0x0003)
const SOL_PACKET = 263
const PACKET_IGNORE_OUTGOING = 23
const MAX_QUEUED = 20_000
const BUF = 65_536

// The same socket calls the hole-punching dials use (src/net/reuseport-socket.ts).
const calls = socketCalls()
const sys = syscalls()
if (calls === null || sys === null) throw new Error('no libc through koffi')

function open (name: string): number {
  const index = Number(readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8'))
  const fd = calls!.socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, ETH_P_ALL_BE)
  if (fd < 0) throw new Error(`socket(AF_PACKET) failed: errno ${calls!.errno()}`)
  // Our own writes on this interface must not come back as reads.
  if (calls!.setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, new Int32Array([1]), 4) !== 0) throw new Error(`PACKET_IGNORE_OUTGOING failed: errno ${calls!.errno()}`)
  const sll = Buffer.alloc(20)
  sll.writeUInt16LE(AF_PACKET, 0)
  sll.writeUInt16LE(ETH_P_ALL_BE, 2)
  sll.writeInt32LE(index, 4)
  if (calls!.bind(fd, sll, sll.byteLength) !== 0) throw new Error(`bind to ${name} failed: errno ${calls!.errno()}`)
  return fd
}

interface Direction { from: number, to: number, queue: Array<{ due: number, frame: Uint8Array }>, timer: NodeJS.Timeout | undefined }
const stats = { forwarded: 0, queueFull: 0, writeFailed: 0, cut: 0 }
const buf = new Uint8Array(BUF)

function drain (d: Direction): void {
  for (;;) {
    const n = sys!.read(d.from, buf, BUF)
    if (n < 0) {
      const e = sys!.errno()
      if (e === EINTR) continue
      if (e === EAGAIN) return
      throw new Error(`read failed: errno ${e}`)
    }
    if (n === BUF) stats.cut++
    if (d.queue.length >= MAX_QUEUED) { stats.queueFull++; continue }
    const frame = buf.slice(0, n)
    fixChecksum(frame)
    d.queue.push({ due: performance.now() + delayMs, frame })
    schedule(d)
  }
}

/**
 * A veth hands its peer TCP and UDP segments whose checksum the sender left to "the hardware"
 * (CHECKSUM_PARTIAL); read off the wire here they carry a wrong one, and the receiver would drop
 * them. So the IPv4 TCP/UDP checksum of every frame is computed again (the lab is IPv4).
 */
function fixChecksum (f: Uint8Array): void {
  if (f.byteLength < 34 || f[12] !== 0x08 || f[13] !== 0x00) return
  const ip = 14
  const ihl = ((f[ip] as number) & 0x0f) * 4
  const total = ((f[ip + 2] as number) << 8) | (f[ip + 3] as number)
  const proto = f[ip + 9]
  const fragment = (((f[ip + 6] as number) & 0x1f) << 8) | (f[ip + 7] as number)
  if ((proto !== 6 && proto !== 17) || fragment !== 0 || (((f[ip + 6] as number) & 0x20) !== 0)) return
  const l4 = ip + ihl
  const len = total - ihl
  if (len < (proto === 6 ? 20 : 8) || l4 + len > f.byteLength) return
  const at = l4 + (proto === 6 ? 16 : 6)
  f[at] = 0
  f[at + 1] = 0
  let sum = 0
  for (let i = ip + 12; i < ip + 20; i += 2) sum += ((f[i] as number) << 8) | (f[i + 1] as number)
  sum += (proto as number) + len
  for (let i = l4; i < l4 + len - 1; i += 2) sum += ((f[i] as number) << 8) | (f[i + 1] as number)
  if ((len & 1) === 1) sum += (f[l4 + len - 1] as number) << 8
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  let c = ~sum & 0xffff
  if (c === 0 && proto === 17) c = 0xffff
  f[at] = c >> 8
  f[at + 1] = c & 0xff
}

function schedule (d: Direction): void {
  if (d.timer !== undefined || d.queue.length === 0) return
  const wait = Math.max(0, (d.queue[0]?.due ?? 0) - performance.now())
  d.timer = setTimeout(() => { d.timer = undefined; release(d) }, wait)
}

function release (d: Direction): void {
  const now = performance.now()
  let i = 0
  for (; i < d.queue.length && (d.queue[i]?.due ?? 0) <= now + 0.5; i++) {
    const f = (d.queue[i] as { frame: Uint8Array }).frame
    if (sys!.write(d.to, f, f.byteLength) < 0) stats.writeFailed++
    else stats.forwarded++
  }
  d.queue.splice(0, i)
  schedule(d)
}

const a = open(ifA)
const b = open(ifB)
const dirs: Direction[] = [{ from: a, to: b, queue: [], timer: undefined }, { from: b, to: a, queue: [], timer: undefined }]
const watches = dirs.map((d) => FdWatch.start(d.from, `${d.from === a ? ifA : ifB} (delay wire)`, {
  readable: () => { drain(d) },
  failed: (m) => { process.stderr.write(`watch failed: ${m}\n`); process.exit(1) }
}))
for (const w of watches) w.ref()
process.on('SIGTERM', () => {
  process.stdout.write(`stats ${JSON.stringify(stats)}\n`)
  process.exit(0)
})
process.stdout.write(`ready ${ifA} <-> ${ifB} ${delayMs} ms\n`)
