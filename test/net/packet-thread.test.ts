/**
 * The VPN's packet thread (src/net/packet-thread.ts, packet-thread-worker.ts) with no root: the
 * "device" is a SOCK_SEQPACKET socket pair (one read is one packet, as on a TUN device), the
 * direct connections are real TCP sockets on loopback. Checked: what it carries itself and what
 * it hands back; frames a peer can open; inbound packets only from sources the peer owns;
 * tampered frames; a device fault and a thread that dies are recovered from within a second.
 */
import { readdirSync, readlinkSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { PacketThread, packetThreadUnavailable } from '../../src/net/packet-thread.js'
import { FrameDecoder, encodeFrames } from '../../src/net/packet-frames.js'
import { FrameOpener, FrameSealer } from '../../src/net/transport-frames.js'
import { RouteIndex } from '../../src/projections/route-index.js'
import { syscalls } from '../../src/net/syscalls.js'
import { waitFor } from './support.js'
import { TestResources, framed, ip4, readDevice, seqpacketPair, tcpPair } from './packet-device.js'
import type { MeshLogger } from '../../src/net/mesh-logger.js'
import { loadNativeLoop } from '../../src/net/packet-loop-native.js'

const why = packetThreadUnavailable()
if (why !== undefined) console.log(`[skip] packet thread: ${why}`)
const native = loadNativeLoop()
if (typeof native === 'string') console.log(`[skip] packet thread, native loop: ${native}`)

const silent = { debug () {}, info () {}, warn () {}, error () {} }
const SELF = 'aa'.repeat(32)
const PEER = 'bb'.repeat(32)
const routes = new RouteIndex({
  routes: [
    { cidr: '10.9.0.1/32', peer: SELF, kind: 'lease' },
    { cidr: '10.9.0.2/32', peer: PEER, kind: 'lease' },
    { cidr: '192.168.50.0/24', peer: PEER, kind: 'advertised' }
  ]
}).routes

const sys = syscalls()

// Both loops: the native one (native/packet-loop.c) where it is built, and the JavaScript one.
for (const loop of ['native', 'js'] as const) describe.skipIf(why !== undefined || (loop === 'native' && typeof native === 'string'))(`packet thread, ${loop} loop`, () => {
  const held = new TestResources()
  const { threads, servers, sockets, fds } = held
  afterEach(async () => { await held.release() })

  function start (extra: { meshBacklogBytes?: number, log?: MeshLogger } = {}): { thread: PacketThread, dev: number, toMain: Uint8Array[], faults: string[], gaveUp: string[] } {
    const [inner, dev] = seqpacketPair()
    fds.push(inner, dev)
    const toMain: Uint8Array[] = []
    const faults: string[] = []
    const gaveUp: string[] = []
    const thread = PacketThread.start({ vnetHeader: 0, self: SELF, log: silent, onPacket: (p) => { toMain.push(p) }, onDeviceFault: (c) => { faults.push(c) }, onGiveUp: (r) => { gaveUp.push(r) }, loop: loop === 'js' ? 'js' : 'auto', ...extra }) as PacketThread
    threads.push(thread)
    thread.attachDevice(inner)
    thread.setRoutes(routes)
    return { thread, dev, toMain, faults, gaveUp }
  }

  it('says which loop it runs; without the native one, the log says so once per process', async () => {
    PacketThread.forgetLoopNoticeForTest()
    const warned: string[] = []
    const log = { ...silent, warn (_o: unknown, msg?: string) { warned.push(msg ?? '') } }
    const { thread } = start({ log })
    await waitFor(() => thread.loop !== undefined, 'the loop reported', 5_000)
    expect(thread.loop?.native).toBe(loop === 'native')
    if (loop === 'js') expect(thread.loop?.reason).toMatch(/asked for/)
    const { thread: second } = start({ log })
    await waitFor(() => second.loop !== undefined, 'the second loop reported', 5_000)
    expect(warned.filter((m) => /JavaScript loop/.test(m))).toHaveLength(loop === 'js' ? 1 : 0)
  })

  it('hands back packets it has no direct connection for, and drops those with no route', async () => {
    const { thread, dev, toMain } = start()
    const pkt = ip4('10.9.0.1', '10.9.0.2')
    sys!.write(dev, pkt, pkt.byteLength)
    const stray = ip4('10.9.0.1', '10.200.0.9')
    sys!.write(dev, stray, stray.byteLength)
    await waitFor(() => toMain.length === 1 && thread.drops().no_route === 1, 'one packet handed back, one dropped', 5_000)
    expect([...(toMain[0] as Uint8Array)]).toEqual([...pkt])
    expect(thread.tunCounters().rxPackets).toBe(2)
  })

  it('sends over an adopted connection: the session id first, then frames the peer opens', async () => {
    const { thread, dev, toMain } = start()
    const { client, server } = await tcpPair(servers, sockets)
    const key = new Uint8Array(32).fill(3)
    const session = new Uint8Array(16).fill(9)
    const ch = thread.adoptOutbound(PEER, client, key, session)
    expect(ch?.kind).toBe('direct')
    expect(client.destroyed).toBe(true) // the thread has its own descriptor now
    const received: Uint8Array[] = []
    let head: Uint8Array | undefined
    const opener = new FrameOpener(key)
    const decoder = new FrameDecoder()
    server.on('data', (d: Buffer) => {
      let data: Uint8Array = d
      if (head === undefined) { head = data.subarray(0, 16); data = data.subarray(16) }
      for (const plain of opener.push(data)) received.push(...decoder.push(plain).map((f) => f.slice()))
    })
    const a = ip4('10.9.0.1', '10.9.0.2', 30)
    const b = ip4('10.9.0.1', '192.168.50.7', 1400)
    sys!.write(dev, a, a.byteLength)
    sys!.write(dev, b, b.byteLength)
    // Frames the main thread had queued go the same way, in order.
    ch?.send(encodeFrames([framed(ip4('10.9.0.1', '10.9.0.2', 5))]))
    await waitFor(() => received.length === 3, 'three frames at the peer', 5_000)
    expect([...(head as Uint8Array)]).toEqual([...session])
    expect(received.map((f) => f.byteLength).sort((x, y) => x - y)).toEqual([10 + 25, 10 + 50, 10 + 1420])
    expect(toMain).toHaveLength(0)
    expect(thread.peerCounters(PEER)?.txPackets).toBe(2)
    // The peer closing the connection is noticed, and later packets go back to the main thread.
    let closed = false
    ch?.onClose(() => { closed = true })
    server.destroy()
    await waitFor(() => closed, 'the close seen', 5_000)
    sys!.write(dev, a, a.byteLength)
    await waitFor(() => toMain.length === 1, 'the packet handed back once the connection is gone', 5_000)
  })

  it('reads an adopted connection: packets into the device only from sources the peer owns', async () => {
    const { thread, dev } = start()
    const { client, server } = await tcpPair(servers, sockets)
    const key = new Uint8Array(32).fill(5)
    const sealer = new FrameSealer(key)
    const seal = (pkts: Uint8Array[]): Uint8Array => {
      const parts = sealer.seal(encodeFrames(pkts.map(framed)))
      return Buffer.concat(parts)
    }
    const first = ip4('10.9.0.2', '10.9.0.1', 11)
    let ended = 0
    expect(thread.adoptInbound(PEER, server, key, seal([first]), () => { ended++ })).toBe(true)
    const owned = ip4('192.168.50.3', '10.9.0.1', 12)
    const spoofed = ip4('10.9.0.77', '10.9.0.1', 13)
    client.write(seal([owned, spoofed]))
    const seen: Uint8Array[] = []
    await waitFor(() => { seen.push(...readDevice(dev)); return seen.length === 2 && thread.drops().spoofed === 1 }, 'two packets in, one spoofed dropped', 5_000)
    expect(seen.map((p) => p.byteLength)).toEqual([31, 32])
    expect(thread.peerCounters(PEER)?.rxPackets).toBe(2)
    // A tampered frame ends the connection and is counted.
    const bad = seal([owned])
    bad[bad.byteLength - 1] = (bad[bad.byteLength - 1] as number) ^ 1
    client.write(bad)
    await waitFor(() => ended === 1 && thread.drops().malformed === 1, 'the connection closed for a bad frame', 5_000)
  })

  it('a failed device read is reported; a new descriptor brings traffic back', async () => {
    const { thread, dev, toMain, faults } = start()
    thread.injectDeviceFault()
    const pkt = ip4('10.9.0.1', '10.9.0.2')
    sys!.write(dev, pkt, pkt.byteLength)
    await waitFor(() => faults.length === 1, 'the fault reported', 5_000)
    expect(faults[0]).toMatch(/EIO/)
    const [inner2, dev2] = seqpacketPair()
    fds.push(inner2, dev2)
    const t = Date.now()
    thread.attachDevice(inner2)
    sys!.write(dev2, pkt, pkt.byteLength)
    await waitFor(() => toMain.length >= 1, 'traffic on the new descriptor', 5_000)
    expect(Date.now() - t).toBeLessThan(1_000)
  })

  it('a thread that dies is started again within a second; its connections are reported closed', async () => {
    const { thread, dev, toMain } = start()
    const { client } = await tcpPair(servers, sockets)
    const ch = thread.adoptOutbound(PEER, client, new Uint8Array(32).fill(1), new Uint8Array(16))
    let closed = false
    ch?.onClose(() => { closed = true })
    const t = Date.now()
    thread.crashForTest()
    await waitFor(() => thread.restarts === 1 && closed, 'the thread restarted and the connection reported closed', 5_000)
    const pkt = ip4('10.9.0.1', '10.9.0.2')
    sys!.write(dev, pkt, pkt.byteLength)
    await waitFor(() => toMain.length === 1, 'the new thread reads the device', 5_000)
    expect(Date.now() - t).toBeLessThan(1_000)
    expect(() => ch?.send(new Uint8Array(20))).toThrow(/closed/)
  })

  it('a thread that keeps dying is given up: the owner is told, no restart follows', async () => {
    const { thread, gaveUp } = start()
    for (let i = 1; i <= 5; i++) {
      thread.crashForTest()
      await waitFor(() => thread.restarts === i || gaveUp.length === 1, `death ${i}`, 5_000)
      if (i < 5) await waitFor(() => thread.runningWorkerForTest, `restart ${i}`, 5_000)
    }
    expect(gaveUp).toHaveLength(1)
    expect(gaveUp[0]).toMatch(/5 times/)
    expect(thread.running).toBe(false)
    expect(thread.restarts).toBe(4)
    expect(thread.runningWorkerForTest).toBe(false)
  })

  it('packets for the main thread beyond its backlog are dropped, not queued without bound', async () => {
    const { thread, dev, toMain } = start({ meshBacklogBytes: 1_000 })
    // The main thread is kept busy while the thread reads 50 packets of 100 bytes: it may post
    // 1,000 bytes of them, and must drop the rest.
    const pkt = ip4('10.9.0.1', '10.9.0.2', 80)
    for (let i = 0; i < 50; i++) sys!.write(dev, pkt, pkt.byteLength)
    const until = Date.now() + 500
    while (Date.now() < until) { /* busy: no message handled */ }
    await waitFor(() => toMain.length + thread.drops().queue_full === 50, 'every packet handed back or dropped', 5_000)
    expect(toMain.length).toBe(10)
    expect(thread.drops().queue_full).toBe(40)
    // Once handled, the backlog is free again.
    sys!.write(dev, pkt, pkt.byteLength)
    await waitFor(() => toMain.length === 11, 'a packet handed back after the backlog drained', 5_000)
  })

  it('a stopped thread leaves no descriptor open: its device copy, its connections, its eventfd', async () => {
    // "fd target"; the directory readdir itself opened is gone by the time of readlink: left out.
    const open = (): Set<string> => new Set(readdirSync('/proc/self/fd').flatMap((f) => { try { return [`${f} ${readlinkSync(`/proc/self/fd/${f}`)}`] } catch { return [] } }))
    const { client } = await tcpPair(servers, sockets)
    const { server: s2 } = await tcpPair(servers, sockets)
    const before = open()
    const { thread, dev } = start()
    expect(thread.adoptOutbound(PEER, client, new Uint8Array(32).fill(1), new Uint8Array(16))).toBeDefined()
    expect(thread.adoptInbound(PEER, s2, new Uint8Array(32).fill(2), new Uint8Array(0), () => {})).toBe(true)
    const during = [...open()].filter((f) => !before.has(f))
    // The thread's copies are there while it runs (at least the device's, the two connections and the eventfd).
    expect(during.length).toBeGreaterThanOrEqual(2 + 4)
    await thread.stop()
    threads.length = 0
    // Once stopped, the only descriptors that were not open before are the socket pair start()
    // made for the device: nothing the thread held is left.
    const pair = new Set([String(dev), String((fds[fds.length - 2] as number))])
    await waitFor(() => [...open()].filter((f) => !before.has(f)).every((f) => pair.has(f.split(' ')[0] as string)), 'only the socket pair left', 3_000)
  })
})
