/**
 * What the packet-thread tests share (packet-thread.test.ts, packet-loop-native.test.ts): a
 * SOCK_SEQPACKET socket pair standing in for the TUN device (one read is one packet), IPv4
 * packets and their frames, and TCP pairs on loopback for the direct connections.
 */
import { createRequire } from 'node:module'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { syscalls } from '../../src/net/syscalls.js'

const sys = syscalls()

/** An IPv4/UDP packet from `src` to `dst` with `payload` bytes (byte i is i & 0xff). */
export function ip4 (src: string, dst: string, payload = 8): Uint8Array {
  const p = new Uint8Array(20 + payload)
  p[0] = 0x45
  p[2] = p.byteLength >> 8; p[3] = p.byteLength & 0xff
  p[9] = 17
  p.set(src.split('.').map(Number), 12)
  p.set(dst.split('.').map(Number), 16)
  for (let i = 20; i < p.byteLength; i++) p[i] = i & 0xff
  return p
}

/** A frame as it travels: a zero virtio header, then the packet. */
export function framed (pkt: Uint8Array): Uint8Array {
  const f = new Uint8Array(10 + pkt.byteLength)
  f.set(pkt, 10)
  return f
}

/** Two ends of a non-blocking SOCK_SEQPACKET pair: one for the thread (the device), one for the test. */
export function seqpacketPair (): [number, number] {
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi')
  const socketpair = koffi.load(null).func('int socketpair(int, int, int, _Out_ int *sv)') as (d: number, t: number, p: number, sv: Int32Array) => number
  const sv = new Int32Array(2)
  // AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC
  if (socketpair(1, 5 | 0o4000 | 0o2000000, 0, sv) !== 0) throw new Error('socketpair failed')
  return [sv[0] as number, sv[1] as number]
}

/** Packets the thread wrote to the device, read from the test's end. */
export function readDevice (fd: number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (;;) {
    const buf = new Uint8Array(70_000)
    const n = sys!.read(fd, buf, buf.byteLength)
    if (n <= 0) return out
    out.push(buf.slice(0, n))
  }
}

/** Writes one packet into the test's end of the device, waiting while its buffer is full (the thread is reading). */
export async function writeDevice (fd: number, pkt: Uint8Array): Promise<void> {
  const deadline = Date.now() + 5_000
  while (sys!.write(fd, pkt, pkt.byteLength) < 0) {
    if (sys!.errno() !== 11 || Date.now() > deadline) throw new Error(`writing the device failed (errno ${sys!.errno()})`)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}

/** A connected TCP pair on loopback; both are added to the lists the caller cleans up. */
export async function tcpPair (servers: Server[], sockets: Socket[]): Promise<{ client: Socket, server: Socket }> {
  let accepted: ((s: Socket) => void) | undefined
  const got = new Promise<Socket>((resolve) => { accepted = resolve })
  const server = createServer({ noDelay: true }, (s) => { accepted?.(s) })
  servers.push(server)
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const client = connect({ port: (server.address() as { port: number }).port, host: '127.0.0.1', noDelay: true })
  await new Promise<void>((resolve, reject) => { client.once('connect', resolve); client.once('error', reject) })
  const s = await got
  sockets.push(client, s)
  return { client, server: s }
}

/** What a test started (threads, servers, sockets, descriptors), all let go of by `release` (call it in afterEach). */
export class TestResources {
  readonly threads: Array<{ stop: () => Promise<void> }> = []
  readonly servers: Server[] = []
  readonly sockets: Socket[] = []
  readonly fds: number[] = []

  async release (): Promise<void> {
    await Promise.all(this.threads.map(async (t) => { await t.stop() }))
    this.threads.length = 0
    for (const s of this.sockets) s.destroy()
    this.sockets.length = 0
    for (const s of this.servers) s.close()
    this.servers.length = 0
    for (const fd of this.fds) sys!.close(fd)
    this.fds.length = 0
  }
}
