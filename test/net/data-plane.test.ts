import { afterEach, describe, expect, it } from 'vitest'
import { DataPlane, type PacketDevice } from '../../src/net/data-plane.js'
import { RouteIndex } from '../../src/projections/route-index.js'
import { LINK_LIMITS } from '../../src/net/peer-link.js'
import { identity } from '../support/fixtures.js'
import { startNode, stopAll, waitFor, type TestNode } from './support.js'

/** An in-memory device: what the TUN device would deliver and accept. */
class MemoryDevice implements PacketDevice {
  received: Uint8Array[] = []
  private fn: ((pkt: Uint8Array) => void) | undefined
  onPacket (fn: (pkt: Uint8Array) => void): void { this.fn = fn }
  write (pkt: Uint8Array): boolean { this.received.push(pkt.slice()); return true }
  emit (pkt: Uint8Array): void { this.fn?.(pkt) }
}

function ipv4 (src: string, dst: string, payload = 16): Uint8Array {
  const p = new Uint8Array(20 + payload)
  p[0] = 0x45
  p[2] = (p.byteLength >> 8) & 0xff
  p[3] = p.byteLength & 0xff
  p[8] = 64
  p[9] = 17
  p.set(src.split('.').map(Number), 12)
  p.set(dst.split('.').map(Number), 16)
  for (let i = 20; i < p.byteLength; i++) p[i] = i & 0xff
  return p
}

const PROTOCOL = '/weft/test/packets/1.0.0'
const DIRECT = '/weft/test/direct/1.0.0'

describe('data plane over real libp2p streams', () => {
  let nodes: TestNode[] = []
  const planes: DataPlane[] = []
  afterEach(async () => {
    await Promise.all(planes.map(async (p) => { await p.stop() }))
    planes.length = 0
    await stopAll(nodes)
    nodes = []
  })

  async function setup (opts: { direct?: boolean, directB?: boolean } = {}): Promise<{ a: MemoryDevice, b: MemoryDevice, pa: DataPlane, pb: DataPlane }> {
    const na = await startNode(0, [], { syncIntervalMs: 60_000 })
    const nb = await startNode(1, [na.addr], { syncIntervalMs: 60_000 })
    nodes.push(na, nb)
    const table = {
      routes: [
        { cidr: '10.1.0.1/32', peer: identity(0).authorHex, kind: 'lease' as const },
        { cidr: '10.1.0.2/32', peer: identity(1).authorHex, kind: 'lease' as const },
        { cidr: '192.168.50.0/24', peer: identity(0).authorHex, kind: 'advertised' as const }
      ],
      conflicts: [],
      invalid: []
    }
    const a = new MemoryDevice()
    const b = new MemoryDevice()
    const direct = (on: boolean | undefined): object => on === true ? { direct: { protocol: DIRECT, hosts: ['127.0.0.1'], port: 0 } } : {}
    const pa = new DataPlane({ host: na.mesh.host, protocol: PROTOCOL, device: a, self: identity(0).authorHex, log: silent, now: Date.now, ...direct(opts.direct) })
    const pb = new DataPlane({ host: nb.mesh.host, protocol: PROTOCOL, device: b, self: identity(1).authorHex, log: silent, now: Date.now, ...direct(opts.directB ?? opts.direct) })
    planes.push(pa, pb)
    await pa.start()
    await pb.start()
    pa.setRoutes(new RouteIndex(table))
    pb.setRoutes(new RouteIndex(table))
    await waitFor(() => na.mesh.host.getPeers().length > 0, 'connection')
    return { a, b, pa, pb }
  }

  it('carries packets both ways, including from an advertised subnet, byte for byte', async () => {
    const { a, b, pa, pb } = await setup()
    const p1 = ipv4('10.1.0.1', '10.1.0.2', 1000)
    const p2 = ipv4('192.168.50.7', '10.1.0.2', 64)
    a.emit(p1)
    a.emit(p2)
    await waitFor(() => b.received.length === 2, 'two packets at b')
    expect(b.received).toEqual([p1, p2])
    b.emit(ipv4('10.1.0.2', '192.168.50.7'))
    await waitFor(() => a.received.length === 1, 'reply at a')
    expect(pa.stats().peers.find((p) => p.author === identity(1).authorHex)).toMatchObject({ txPackets: 2, rxPackets: 1 })
    expect(pb.stats().peers.find((p) => p.author === identity(0).authorHex)).toMatchObject({ rxPackets: 2, rxBytes: p1.byteLength + p2.byteLength })
  })

  it('drops and counts packets from a source the sending peer does not own', async () => {
    const { a, b, pb } = await setup()
    a.emit(ipv4('10.1.0.99', '10.1.0.2'))
    a.emit(ipv4('10.1.0.2', '10.1.0.2'))
    a.emit(ipv4('10.1.0.1', '10.1.0.2'))
    await waitFor(() => b.received.length === 1 && pb.stats().drops.spoofed === 2, 'one delivered, two dropped as spoofed')
  })

  it('drops what has no route, and what overflows a bounded queue, and keeps working', async () => {
    const { a, b, pa } = await setup()
    a.emit(ipv4('10.1.0.1', '10.9.9.9'))
    a.emit(new Uint8Array([0x99, 1, 2]))
    expect(pa.stats().drops).toMatchObject({ no_route: 1, malformed: 1 })
    // More packets in one turn than the queue holds: the excess is dropped, not buffered.
    const n = LINK_LIMITS.queuePackets + 500
    for (let i = 0; i < n; i++) a.emit(ipv4('10.1.0.1', '10.1.0.2', 100))
    const dropped = pa.stats().drops.queue_full
    expect(dropped).toBeGreaterThanOrEqual(500)
    await waitFor(() => b.received.length === n - dropped, 'every queued packet delivered')
  })

  it('moves a link to the direct path once it is up, carries packets over it both ways, and falls back to the mesh when it goes', async () => {
    const { a, b, pa, pb } = await setup({ direct: true })
    expect(pa.directPort).toBeGreaterThan(0)
    const peerB = (): { path: string } | undefined => pa.stats().peers.find((p) => p.author === identity(1).authorHex)
    a.emit(ipv4('10.1.0.1', '10.1.0.2', 100))
    await waitFor(() => b.received.length === 1, 'the first packet (over the mesh stream while the direct path opens)')
    await waitFor(() => peerB()?.path === 'direct', 'the link to B on the direct path')
    const big = ipv4('10.1.0.1', '10.1.0.2', 60_000)
    for (let i = 0; i < 20; i++) a.emit(big)
    await waitFor(() => b.received.length === 21, '20 large packets at b')
    expect(b.received.slice(1).every((p) => p.byteLength === big.byteLength && p[100] === big[100])).toBe(true)
    b.emit(ipv4('10.1.0.2', '10.1.0.1'))
    await waitFor(() => a.received.length === 1, 'the reply at a')
    await waitFor(() => pb.stats().peers.find((p) => p.author === identity(0).authorHex)?.path === 'direct', 'B\'s link to A on the direct path')
    // B's direct listener goes away: A's link falls back to the mesh stream, nothing is lost for good.
    await pb.stop()
    planes.splice(planes.indexOf(pb), 1)
    await waitFor(() => peerB()?.path !== 'direct', 'A to notice the direct path is gone')
    expect(['mesh', 'none']).toContain(peerB()?.path)
  })

  it('a plane without the direct path still talks to one that has it (over the mesh)', async () => {
    const { a, b, pa } = await setup({ direct: true, directB: false })
    for (let i = 0; i < 5; i++) a.emit(ipv4('10.1.0.1', '10.1.0.2', 100))
    await waitFor(() => b.received.length === 5, 'five packets at b')
    // The offer was refused (B has no direct protocol): A stays on the mesh, and keeps sending.
    await waitFor(() => pa.stats().peers.find((p) => p.author === identity(1).authorHex)?.path === 'mesh', 'A on the mesh path')
    a.emit(ipv4('10.1.0.1', '10.1.0.2', 100))
    await waitFor(() => b.received.length === 6, 'a sixth packet at b')
  })
})

const silent = { debug () {}, info () {}, warn () {}, error () {} }
