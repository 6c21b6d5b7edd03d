/**
 * The native packet loop (native/packet-loop.c) on its own terms, with no root: its route lookup
 * against RouteIndex (a property), the frames a peer sends that must close the connection and
 * deliver nothing (crafted ones, then arbitrary bytes), and the paths the JavaScript loop rarely
 * took: a burst sealed in several writes, and packet frames split across sealed frames as the
 * main thread's sealer splits them. The behaviour it shares with the JavaScript loop is checked
 * for both in packet-thread.test.ts.
 */
import type { Socket } from 'node:net'
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { PacketThread, packetThreadUnavailable } from '../../src/net/packet-thread.js'
import { loadNativeLoop } from '../../src/net/packet-loop-native.js'
import { routeRecords } from '../../src/net/packet-thread-native.js'
import { FrameDecoder, encodeFrames } from '../../src/net/packet-frames.js'
import { FrameOpener, FrameSealer } from '../../src/net/transport-frames.js'
import { RouteIndex } from '../../src/projections/route-index.js'
import type { Route } from '../../src/projections/routes.js'
import { waitFor } from './support.js'
import { TestResources, framed, ip4, readDevice, seqpacketPair, tcpPair as loopbackPair, writeDevice } from './packet-device.js'

const native = loadNativeLoop()
const why = packetThreadUnavailable() ?? (typeof native === 'string' ? native : undefined)
if (why !== undefined) console.log(`[skip] native packet loop: ${why}`)

const silent = { debug () {}, info () {}, warn () {}, error () {} }
const SELF = 'aa'.repeat(32)
const PEER = 'bb'.repeat(32)

/** An address as 4 or 16 bytes, and the packet whose source or destination it is. */
function packetWith (family: 4 | 6, addr: bigint, src: boolean): Uint8Array {
  const p = new Uint8Array(family === 4 ? 20 : 40)
  p[0] = family === 4 ? 0x45 : 0x60
  const bytes = family === 4 ? 4 : 16
  const at = family === 4 ? (src ? 12 : 16) : (src ? 8 : 24)
  for (let b = 0; b < bytes; b++) p[at + b] = Number((addr >> BigInt(8 * (bytes - 1 - b))) & 0xffn)
  return p
}

function cidrText (family: 4 | 6, value: bigint, prefix: number): string {
  const bits = family === 4 ? 32 : 128
  const base = prefix === 0 ? 0n : (value >> BigInt(bits - prefix)) << BigInt(bits - prefix)
  if (family === 4) return `${[24n, 16n, 8n, 0n].map((s) => (base >> s) & 0xffn).join('.')}/${prefix}`
  const groups: string[] = []
  for (let i = 7; i >= 0; i--) groups.push(((base >> BigInt(16 * i)) & 0xffffn).toString(16))
  return `${groups.join(':')}/${prefix}`
}

describe.skipIf(why !== undefined)('native packet loop', () => {
  it('finds the same peer as RouteIndex for every destination and source (property)', () => {
    const lib = native as Exclude<typeof native, string>
    const counters = new Float64Array(64)
    const control = new Int32Array(4)
    const mesh = new Uint8Array(16)
    const loop = lib.create(-1, 0, 0, 1 << 20, counters, control, mesh, mesh.byteLength)
    // Addresses from a small space, so that leases, networks and lookups meet often.
    const v4 = fc.integer({ min: 0, max: 63 }).map((x) => BigInt(0x0a000000 + x * 37))
    const v6 = fc.integer({ min: 0, max: 63 }).map((x) => (0xfd00n << 112n) + BigInt(x) * 0x1_0000_0001n)
    const route = fc.oneof(
      fc.record({ family: fc.constant(4 as const), addr: v4, prefix: fc.oneof(fc.constant(32), fc.integer({ min: 0, max: 32 })), peer: fc.integer({ min: 0, max: 4 }) }),
      fc.record({ family: fc.constant(6 as const), addr: v6, prefix: fc.oneof(fc.constant(128), fc.integer({ min: 0, max: 128 })), peer: fc.integer({ min: 0, max: 4 }) })
    )
    const lookup = fc.oneof(fc.tuple(fc.constant(4 as const), v4), fc.tuple(fc.constant(6 as const), v6))
    const authors = ['a', 'b', 'c', 'd', 'e'].map((c) => c.repeat(64))
    const numbers = { of: (a: string): number => authors.indexOf(a) }
    try {
      fc.assert(fc.property(fc.array(route, { maxLength: 12 }), fc.array(lookup, { minLength: 1, maxLength: 20 }), (rs, lookups) => {
        const routes: Route[] = rs.map((r) => ({ cidr: cidrText(r.family, r.addr, r.prefix), peer: authors[r.peer] as string, kind: 'lease' }))
        const index = new RouteIndex({ routes })
        expect(lib.setRoutes(loop, routeRecords(routes, numbers), routes.length)).toBe(0)
        for (const [family, addr] of lookups) {
          const want = family === 4 ? index.peerFor4(Number(addr)) : index.peerFor6(addr)
          const wantN = want === undefined ? -1 : authors.indexOf(want)
          for (const src of [false, true]) {
            const p = packetWith(family, addr, src)
            expect(lib.routeFor(loop, p, p.byteLength, src ? 1 : 0)).toBe(wantN)
          }
        }
      }), { numRuns: 300 })
      // A malformed record is refused, and the table before it kept.
      const bad = routeRecords([{ cidr: '10.0.0.1/32', peer: authors[1] as string, kind: 'lease' }], numbers)
      expect(lib.setRoutes(loop, bad, 1)).toBe(0)
      const broken = bad.slice()
      broken[1] = 33
      expect(lib.setRoutes(loop, broken, 1)).toBe(-1)
      const p = packetWith(4, 0x0a000001n, false)
      expect(lib.routeFor(loop, p, p.byteLength, 0)).toBe(1)
    } finally {
      lib.free(loop)
    }
  })

  describe('with a thread', () => {
    const held = new TestResources()
    const { threads, servers, sockets, fds } = held
    afterEach(async () => { await held.release() })

    const routes: Route[] = [
      { cidr: '10.9.0.1/32', peer: SELF, kind: 'lease' },
      { cidr: '10.9.0.2/32', peer: PEER, kind: 'lease' },
      { cidr: '192.168.50.0/24', peer: PEER, kind: 'advertised' }
    ]

    function start (): { thread: PacketThread, dev: number, toMain: Uint8Array[] } {
      const [inner, dev] = seqpacketPair()
      fds.push(inner, dev)
      const toMain: Uint8Array[] = []
      const thread = PacketThread.start({ vnetHeader: 0, self: SELF, log: silent, onPacket: (p) => { toMain.push(p) }, onDeviceFault: () => {}, onGiveUp: () => {} }) as PacketThread
      threads.push(thread)
      thread.attachDevice(inner)
      thread.setRoutes(routes)
      return { thread, dev, toMain }
    }

    const tcpPair = async (): Promise<{ client: Socket, server: Socket }> => await loopbackPair(servers, sockets)

    /** An inbound connection from PEER adopted by the thread; `write` is the peer's end. */
    async function inbound (thread: PacketThread, key: Uint8Array): Promise<{ write: (b: Uint8Array) => void, ended: () => number }> {
      const { client, server } = await tcpPair()
      let ended = 0
      expect(thread.adoptInbound(PEER, server, key, new Uint8Array(0), () => { ended++ })).toBe(true)
      return { write: (b) => { client.write(b) }, ended: () => ended }
    }

    it('runs the native loop', async () => {
      const { thread } = start()
      await waitFor(() => thread.loop !== undefined, 'the loop reported', 5_000)
      expect(thread.loop).toEqual({ native: true })
    })

    it('a burst leaves in several sealed writes, every packet in order, each opened by the JavaScript side', async () => {
      const { thread, dev, toMain } = start()
      const { client, server } = await tcpPair()
      const key = new Uint8Array(32).fill(4)
      expect(thread.adoptOutbound(PEER, client, key, new Uint8Array(16).fill(1))).toBeDefined()
      const opener = new FrameOpener(key)
      const decoder = new FrameDecoder()
      const received: Uint8Array[] = []
      let head = true
      server.on('data', (d: Buffer) => {
        let data: Uint8Array = d
        if (head) { head = false; data = data.subarray(16) }
        for (const plain of opener.push(data)) received.push(...decoder.push(plain).map((f) => f.slice()))
      })
      // 300 packets of 1,400 bytes: more than one 64 KiB batch per drain.
      const sent: Uint8Array[] = []
      for (let i = 0; i < 300; i++) {
        const p = ip4('10.9.0.1', '192.168.50.9', 1380)
        p[20] = i & 0xff; p[21] = i >> 8
        sent.push(p)
        await writeDevice(dev, p)
      }
      await waitFor(() => received.length === 300, '300 packets at the peer', 10_000)
      expect(received.map((f) => Buffer.from(f.subarray(10)).toString('hex'))).toEqual(sent.map((p) => Buffer.from(p).toString('hex')))
      expect(thread.peerCounters(PEER)?.txPackets).toBe(300)
      expect(toMain).toHaveLength(0)
    })

    it('packet frames split across sealed frames (as the main thread seals them) all arrive', async () => {
      const { thread, dev } = start()
      const key = new Uint8Array(32).fill(6)
      const peer = await inbound(thread, key)
      // Few large packets, so that all of them fit in the test device's socket buffer at once.
      const pkts = Array.from({ length: 6 }, (_, i) => { const p = ip4('10.9.0.2', '10.9.0.1', 24_000); p[20] = i; return p })
      // 6 × 24,034 bytes: FrameSealer splits this at 128 KiB, inside the sixth packet frame.
      const sealed = Buffer.concat(new FrameSealer(key).seal(encodeFrames(pkts.map(framed))))
      expect(sealed.byteLength).toBeGreaterThan(128 * 1024)
      // In pieces that cut frames anywhere.
      for (let o = 0; o < sealed.byteLength; o += 9_999) peer.write(sealed.subarray(o, o + 9_999))
      const seen: Uint8Array[] = []
      await waitFor(() => { seen.push(...readDevice(dev)); return seen.length === 6 }, 'six packets in the device', 10_000)
      expect(seen.map((p) => p[20])).toEqual(pkts.map((p) => p[20]))
      expect(peer.ended()).toBe(0)
    })

    it('crafted frames close the connection, deliver nothing and are counted', async () => {
      const { thread, dev } = start()
      const key = new Uint8Array(32).fill(8)
      const good = (sealer: FrameSealer, len = 1): Uint8Array => Buffer.concat(sealer.seal(encodeFrames(Array.from({ length: len }, () => framed(ip4('10.9.0.2', '10.9.0.1', 20))))))
      const badInner = (bytes: number[]): Uint8Array => Buffer.concat(new FrameSealer(key).seal(Uint8Array.from(bytes)))
      const cases: Array<[string, () => Uint8Array]> = [
        ['a length below the tag', () => Uint8Array.of(0, 0, 0, 15, ...new Uint8Array(15))],
        ['a length above 128 KiB + 16', () => Uint8Array.of(0, 2, 0, 17)],
        ['a flipped tag bit', () => { const b = good(new FrameSealer(key)); b[b.byteLength - 1] = (b[b.byteLength - 1] as number) ^ 0x80; return b }],
        ['a frame under another key', () => good(new FrameSealer(new Uint8Array(32).fill(9)))],
        ['a replayed frame', () => { const f = good(new FrameSealer(key)); return Buffer.concat([f, f]) }],
        ['a packet frame of 10 bytes (no packet)', () => badInner([0, 0, 0, 10, ...new Uint8Array(10)])],
        ['a packet frame longer than 65,545 bytes', () => badInner([0, 1, 0, 10, ...new Uint8Array(16)])]
      ]
      let malformed = 0
      for (const [name, bytes] of cases) {
        const peer = await inbound(thread, key)
        peer.write(bytes())
        malformed++
        await waitFor(() => peer.ended() === 1 && thread.drops().malformed === malformed, `${name}: the connection closed`, 5_000)
      }
      // Only the first copy of the replayed frame reached the device.
      expect(readDevice(dev)).toHaveLength(1)
      // The thread is alive: a good connection still delivers.
      const peer = await inbound(thread, key)
      peer.write(good(new FrameSealer(key), 3))
      const seen: Uint8Array[] = []
      await waitFor(() => { seen.push(...readDevice(dev)); return seen.length === 3 }, 'three packets from a good peer', 5_000)
      expect(thread.restarts).toBe(0)
    })

    it('arbitrary bytes from a peer never reach the device and never stop the thread (property)', async () => {
      const { thread, dev } = start()
      const key = new Uint8Array(32).fill(10)
      await fc.assert(fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 1, maxLength: 3000 }), { minLength: 1, maxLength: 4 }), async (chunks) => {
        const peer = await inbound(thread, key)
        for (const c of chunks) peer.write(c)
        // Either the bytes were refused (closed) or they are an incomplete frame still waiting;
        // a good frame after them from a new connection shows the thread read them.
        const check = await inbound(thread, key)
        check.write(Buffer.concat(new FrameSealer(key).seal(encodeFrames([framed(ip4('10.9.0.2', '10.9.0.1', 4))]))))
        const seen: Uint8Array[] = []
        await waitFor(() => { seen.push(...readDevice(dev)); return seen.length >= 1 }, 'the check packet', 5_000)
        expect(seen).toHaveLength(1)
        expect(seen[0]?.byteLength).toBe(24)
      }), { numRuns: 25 })
      expect(thread.restarts).toBe(0)
    })
  })
})
