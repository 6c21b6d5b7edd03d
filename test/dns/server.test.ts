import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import dgram from 'node:dgram'
import net from 'node:net'
import { once } from 'node:events'
import { createTCPServer, createUDPServer, Packet } from 'dns2'
import {
  DEFAULT_DNS_LIMITS, networkDnsSource, startDnsServer, tableDnsSource, type DnsAnswerSource, type DnsServer
} from '../../src/adapters/dns-server.js'
import { dnsTableFromView } from '../../src/adapters/dns-source.js'
import { encodeQuery, RCODE, TYPE } from '../../src/adapters/dns-wire.js'
import { serviceAddressOf } from '../../src/projections/service-addresses.js'
import { CLUSTERSET_ZONE, deriveDns, DNS_TTL, lookupDns, VPN_CAP, type DnsMember } from '../../src/projections/dns.js'
import { networkView } from '../../src/projections/view.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import type { NetworkState } from '../../src/projections/network.js'
import { foldNetwork, join, LogBuilder, rng } from '../projections/support.js'
import { ask, decode, errorCode, exportBody, recordingLogger, resolverFor, udpPort, vpnJoin } from './support.js'

/**
 * The network behind most tests, every member with a VPN device (their addresses reach them):
 *   web1 (cluster east, cap services, 10.1.0.5, fd00:1::5), db1 (east, 10.1.0.6),
 *   web1 (cluster west, 10.1.0.7: so the short name web1.weft.internal is ambiguous, not served),
 *   east exports shop/web with a named port http/TCP/80 and an unnamed 9090.
 */
function network (): LogBuilder {
  const b = new LogBuilder(5)
  b.append(0, 'node.join', { ...join('web1', 'east'), caps: [VPN_CAP, 'services'] })
  b.setting(0, 'overlayCidr6', 'fd00:1::/64', { seesAll: true })
  b.append(1, 'node.join', vpnJoin('db1', 'east'), { seesAll: true })
  b.append(2, 'node.join', vpnJoin('web1', 'west'), { seesAll: true })
  b.append(0, 'ip.claim', { addr: '10.1.0.5' }, { seesAll: true })
  b.append(0, 'ip.claim', { addr: 'fd00:1::5' }, { seesAll: true })
  b.append(1, 'ip.claim', { addr: '10.1.0.6' }, { seesAll: true })
  b.append(2, 'ip.claim', { addr: '10.1.0.7' }, { seesAll: true })
  b.append(0, 'service.export', exportBody('east', 'shop', 'web', [{ name: 'http', protocol: 'TCP', port: 80 }, { protocol: 'TCP', port: 9090 }]), { seesAll: true })
  return b
}

const servers: DnsServer[] = []
async function start (answer: DnsAnswerSource, extra: Partial<Parameters<typeof startDnsServer>[0]> = {}): Promise<DnsServer> {
  const s = await startDnsServer({ listen: [{ host: '127.0.0.1', port: 0 }], answer, log: silentLogger, ...extra })
  servers.push(s)
  return s
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map(async (s) => { await s.close() }))
})

describe('dns server: answers from the log (UDP, node resolver)', () => {
  let state: NetworkState
  let port: number
  let server: DnsServer
  beforeAll(async () => {
    state = foldNetwork(network().events)
    server = await startDnsServer({ listen: [{ host: '127.0.0.1', port: 0 }], answer: networkDnsSource(() => state), log: silentLogger })
    port = udpPort(server)
  })
  afterAll(async () => { await server.close() })

  it('node names: <host>.<cluster>.<zone> and <host>.<zone>; a taken hostname gets <host>-<6 hex>, A and AAAA, TTL 5', async () => {
    const r = resolverFor(port)
    expect(await r.resolve4('web1.east.weft.internal', { ttl: true })).toEqual([{ address: '10.1.0.5', ttl: DNS_TTL }])
    expect(await r.resolve6('web1.east.weft.internal')).toEqual(['fd00:1::5'])
    expect(await r.resolve4('db1.east.weft.internal')).toEqual(['10.1.0.6'])
    expect(await r.resolve4('db1.weft.internal')).toEqual(['10.1.0.6'])
    // web1 is in two clusters: the first to join keeps it, the second gets a distinct name.
    expect(await r.resolve4('web1.weft.internal')).toEqual(['10.1.0.5'])
    const second = `web1-${network().hex(2).slice(0, 6)}`
    expect(await r.resolve4(`${second.toUpperCase()}.West.Weft.Internal.`)).toEqual(['10.1.0.7'])
    expect(await r.resolve4(`${second}.weft.internal`)).toEqual(['10.1.0.7'])
    expect(await errorCode(r.resolve4('web1.west.weft.internal'))).toBe('ENOTFOUND')
  })

  it('service names: the service address at clusterset and zone names, per cluster, SRV at the bare name and per named port, TXT dns-version', async () => {
    const r = resolverFor(port)
    const vip = serviceAddressOf(state.services.addresses, 'shop', 'web') as string
    expect(vip).toMatch(/^127\.77\./)
    expect(await r.resolve4('web.shop.svc.clusterset.local')).toEqual([vip])
    expect(await r.resolve4('web.shop.svc.weft.internal')).toEqual([vip])
    expect(await errorCode(r.resolve6('web.shop.svc.clusterset.local'))).toBe('ENODATA')
    expect(await r.resolve4('web.shop.svc.east.weft.internal')).toEqual([serviceAddressOf(state.services.addresses, 'shop', 'web', 'east')])
    expect(await r.resolveSrv('_http._tcp.web.shop.svc.clusterset.local')).toEqual([
      { name: 'web.shop.svc.clusterset.local', port: 80, priority: 0, weight: 100 }
    ])
    expect((await r.resolveSrv('web.shop.svc.clusterset.local')).map((x) => x.port).sort()).toEqual([80, 9090])
    expect(await r.resolveTxt('dns-version.clusterset.local')).toEqual([['1.0.0']])
  })

  it('NXDOMAIN for names that do not exist, NODATA for names that exist with other types or none', async () => {
    const r = resolverFor(port)
    expect(await errorCode(r.resolve4('nobody.east.weft.internal'))).toBe('ENOTFOUND')
    expect(await errorCode(r.resolve4('other.shop.svc.clusterset.local'))).toBe('ENOTFOUND')
    expect(await errorCode(r.resolve6('db1.east.weft.internal'))).toBe('ENODATA') // A only
    expect(await errorCode(r.resolve4('east.weft.internal'))).toBe('ENODATA') // empty non-terminal
    expect(await errorCode(r.resolve4('weft.internal'))).toBe('ENODATA') // the apex
    expect(await errorCode(r.resolveMx('db1.east.weft.internal'))).toBe('ENODATA')
    expect(await errorCode(r.resolveSrv('db1.east.weft.internal'))).toBe('ENODATA')
  })

  it('sets AA on authoritative answers, puts the zone SOA in negative answers, and echoes the question', async () => {
    const a = await ask(port, 'Web1.East.weft.internal', 'A')
    expect(a.header).toMatchObject({ qr: 1, aa: 1, tc: 0, rcode: RCODE.NOERROR })
    expect(a.questions[0]?.name).toBe('Web1.East.weft.internal') // case kept (DNS 0x20)
    expect(a.answers.map((x) => [x.name, x.type, x.ttl, x.address])).toEqual([['Web1.East.weft.internal', TYPE.A, 5, '10.1.0.5']])
    expect(a.authorities).toEqual([])

    const nx = await ask(port, 'nobody.weft.internal', 'A')
    expect(nx.header).toMatchObject({ aa: 1, rcode: RCODE.NXDOMAIN })
    expect(nx.answers).toEqual([])
    expect(nx.authorities).toMatchObject([{ name: 'weft.internal', type: TYPE.SOA, ttl: DNS_TTL, primary: 'ns.dns.weft.internal', minimum: DNS_TTL }])

    const nodata = await ask(port, 'svc.clusterset.local', 'TXT')
    expect(nodata.header).toMatchObject({ aa: 1, rcode: RCODE.NOERROR })
    expect(nodata.authorities).toMatchObject([{ name: CLUSTERSET_ZONE, type: TYPE.SOA }])

    const soa = await ask(port, 'weft.internal', 'SOA')
    expect(soa.header).toMatchObject({ aa: 1, rcode: RCODE.NOERROR })
    expect(soa.answers).toMatchObject([{ type: TYPE.SOA, primary: 'ns.dns.weft.internal' }])

    const any = await ask(port, 'web1.east.weft.internal', 'ANY')
    expect(any.answers.map((x) => x.type).sort((x, y) => x - y)).toEqual([TYPE.A, TYPE.AAAA])
  })

  it('answers the same over TCP (dns2 TCP client) and with EDNS', async () => {
    const t = await ask(port, 'web.shop.svc.clusterset.local', 'A', { proto: 'tcp' })
    expect(t.header).toMatchObject({ aa: 1, rcode: RCODE.NOERROR })
    expect(t.answers.map((x) => x.address)).toEqual([serviceAddressOf(state.services.addresses, 'shop', 'web')])
    const e = await ask(port, '_http._tcp.web.shop.svc.clusterset.local', 'SRV', { edns: 4096 })
    expect(e.answers).toMatchObject([{ priority: 0, weight: 100, port: 80, target: 'web.shop.svc.clusterset.local' }])
    expect(e.additionals).toMatchObject([{ type: TYPE.OPT, class: DEFAULT_DNS_LIMITS.udpPayload }])

    const { TCPClient } = await import('dns2')
    const client = TCPClient({ dns: '127.0.0.1', port })
    const res = await client('db1.east.weft.internal', 'A') as unknown as { header: { aa: number }, answers: Array<{ address: string }> }
    expect(res.header.aa).toBe(1)
    expect(res.answers.map((x) => x.address)).toEqual(['10.1.0.6'])
  })

  it('REFUSED for names outside the zones when there is no upstream', async () => {
    const r = resolverFor(port)
    expect(await errorCode(r.resolve4('example.com'))).toBe('EREFUSED')
    const raw = await ask(port, 'example.com', 'A')
    expect(raw.header).toMatchObject({ aa: 0, ra: 0, rcode: RCODE.REFUSED })
    expect(server.stats.refused).toBeGreaterThanOrEqual(2)
  })
})

describe('dns server: follows the log', () => {
  it('a member that joins and claims an address is answered at once, without a restart', async () => {
    const b = network()
    let state = foldNetwork(b.events)
    const source = networkDnsSource(() => state)
    const s = await start(source)
    const r = resolverFor(udpPort(s))
    expect(await errorCode(r.resolve4('cache1.east.weft.internal'))).toBe('ENOTFOUND')
    const serial0 = source.serial?.()

    b.append(3, 'node.join', vpnJoin('cache1', 'east'), { seesAll: true })
    b.append(3, 'ip.claim', { addr: '10.1.0.9' }, { seesAll: true })
    state = foldNetwork(b.events)
    source.invalidate() // what the daemon does on replica.onChange

    expect(await r.resolve4('cache1.east.weft.internal')).toEqual(['10.1.0.9'])
    expect(await r.resolve4('cache1.weft.internal')).toEqual(['10.1.0.9'])
    expect(source.serial?.()).toBeGreaterThan(serial0 as number)

    // It leaves: its names go with it.
    b.append(3, 'node.leave', {}, { seesAll: true })
    state = foldNetwork(b.events)
    source.invalidate()
    expect(await errorCode(r.resolve4('cache1.east.weft.internal'))).toBe('ENOTFOUND')
  })

  it('dnsTableFromView answers every query exactly as deriveDns would', () => {
    const state = foldNetwork(network().events)
    const view = networkView(state)
    const table = dnsTableFromView(view.dns)
    const names = [...table.names, 'nobody.weft.internal', 'x.east.weft.internal', 'example.com', 'svc.clusterset.local']
    // The reference: deriveDns over the same members, as view.ts builds them.
    const members: DnsMember[] = view.members.map((m, i) => ({ author: m.author, hostname: m.hostname, cluster: m.cluster, joinedOrder: i, v4: m.address, v6: m.address6, caps: m.caps }))
    const ref = deriveDns({ zone: view.dns.zone, members, imports: view.services.imports })
    expect([...table.names].sort()).toEqual([...ref.names].sort())
    expect(table.zones).toEqual(ref.zones)
    for (const n of names) {
      for (const t of ['A', 'AAAA', 'SRV', 'TXT'] as const) expect(lookupDns(table, n, t)).toEqual(lookupDns(ref, n, t))
    }
  })
})

describe('dns server: forwarding', () => {
  const upstreams: Array<{ close: () => unknown }> = []
  afterEach(() => { for (const u of upstreams.splice(0)) u.close() })

  /** A tiny upstream (dns2's UDP server): example.test → 192.0.2.1, anything else NXDOMAIN. */
  async function upstream (opts: { rcode?: number, tc?: boolean, answer?: string } = {}): Promise<{ port: number, queries: () => number }> {
    let n = 0
    const handler = (req: InstanceType<typeof Packet>, send: (p: InstanceType<typeof Packet>) => void): void => {
      n++
      const res = Packet.createResponseFromRequest(req)
      const q = req.questions[0] as { name: string }
      res.header.ra = 1
      if (opts.rcode !== undefined) {
        res.header.rcode = opts.rcode
      } else if (opts.tc === true) {
        res.header.tc = 1
      } else if (q.name.toLowerCase() === 'example.test') {
        res.answers.push({ name: q.name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl: 60, address: opts.answer ?? '192.0.2.1' } as never)
      } else {
        res.header.rcode = RCODE.NXDOMAIN
      }
      send(res)
    }
    const udp = createUDPServer(handler as never)
    await udp.listen(0, '127.0.0.1')
    const port = udp.address().port
    upstreams.push({ close: () => udp.close() })
    return { port, queries: () => n }
  }

  /** A UDP port that swallows queries: an upstream that is down. */
  async function blackhole (): Promise<number> {
    const s = dgram.createSocket('udp4')
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve))
    upstreams.push({ close: () => s.close() })
    return s.address().port
  }

  it('relays the upstream answer (not authoritative) for names outside the zones; zone names never leave', async () => {
    const up = await upstream()
    const s = await start(tableDnsSource(() => deriveDns({ zone: 'weft.internal', members: [], imports: [] })), { upstreams: [`127.0.0.1:${up.port}`] })
    const r = resolverFor(udpPort(s))
    expect(await r.resolve4('example.test', { ttl: true })).toEqual([{ address: '192.0.2.1', ttl: 60 }])
    expect(await errorCode(r.resolve4('missing.test'))).toBe('ENOTFOUND')
    const raw = await ask(udpPort(s), 'Example.Test', 'A')
    expect(raw.header).toMatchObject({ aa: 0, ra: 1, rcode: RCODE.NOERROR })
    expect(raw.questions[0]?.name).toBe('Example.Test')
    const tcp = await ask(udpPort(s), 'example.test', 'A', { proto: 'tcp' })
    expect(tcp.answers.map((a) => a.address)).toEqual(['192.0.2.1'])
    const before = up.queries()
    expect(await errorCode(r.resolve4('nobody.weft.internal'))).toBe('ENOTFOUND')
    expect(up.queries()).toBe(before)
    expect(s.stats.forwarded).toBe(4)
  })

  it('asks the next upstream when one times out or refuses, then prefers the one that answered', async () => {
    const dead = await blackhole()
    const refusing = await upstream({ rcode: RCODE.REFUSED })
    const good = await upstream({ answer: '192.0.2.7' })
    const s = await start(tableDnsSource(() => deriveDns({ zone: 'weft.internal', members: [], imports: [] })), {
      upstreams: [`127.0.0.1:${dead}`, `127.0.0.1:${refusing.port}`, `127.0.0.1:${good.port}`],
      limits: { forwardTimeoutMs: 200 }
    })
    const t0 = Date.now()
    const a = await ask(udpPort(s), 'example.test', 'A')
    expect(a.answers.map((x) => x.address)).toEqual(['192.0.2.7'])
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190)
    expect(refusing.queries()).toBe(1)
    // The next query goes straight to the upstream that answered.
    const t1 = Date.now()
    await ask(udpPort(s), 'example.test', 'A')
    expect(Date.now() - t1).toBeLessThan(190)
    expect(refusing.queries()).toBe(1)
  })

  it('SERVFAIL when no upstream answers; the upstream REFUSED is relayed when all refuse', async () => {
    const dead = await blackhole()
    const s = await start(tableDnsSource(() => deriveDns({ zone: 'weft.internal', members: [], imports: [] })), { upstreams: [`127.0.0.1:${dead}`], limits: { forwardTimeoutMs: 100 } })
    expect((await ask(udpPort(s), 'example.test', 'A')).header).toMatchObject({ rcode: RCODE.SERVFAIL, ra: 1 })
    expect(s.stats.forwardFailed).toBe(1)

    const refusing = await upstream({ rcode: RCODE.REFUSED })
    const s2 = await start(tableDnsSource(() => deriveDns({ zone: 'weft.internal', members: [], imports: [] })), { upstreams: [`127.0.0.1:${refusing.port}`] })
    expect((await ask(udpPort(s2), 'example.test', 'A')).header.rcode).toBe(RCODE.REFUSED)
  })

  it('a truncated upstream answer to a TCP client is fetched again over TCP', async () => {
    // UDP says "truncated"; TCP on the same port has the answer.
    const udp = await upstream({ tc: true })
    const tcp = createTCPServer(((req: InstanceType<typeof Packet>, send: (p: InstanceType<typeof Packet>) => void) => {
      const res = Packet.createResponseFromRequest(req)
      res.answers.push({ name: (req.questions[0] as { name: string }).name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl: 60, address: '192.0.2.9' } as never)
      send(res)
    }) as never)
    tcp.listen(udp.port, '127.0.0.1')
    await once(tcp, 'listening')
    upstreams.push({ close: () => tcp.close() })
    const s = await start(tableDnsSource(() => deriveDns({ zone: 'weft.internal', members: [], imports: [] })), { upstreams: [`127.0.0.1:${udp.port}`] })
    const overUdp = await ask(udpPort(s), 'big.test', 'A')
    expect(overUdp.header.tc).toBe(1)
    const overTcp = await ask(udpPort(s), 'big.test', 'A', { proto: 'tcp' })
    expect(overTcp.header.tc).toBe(0)
    expect(overTcp.answers.map((a) => a.address)).toEqual(['192.0.2.9'])
  })

  it('SERVFAIL at once past maxInflightForwards', async () => {
    const dead = await blackhole()
    const s = await start(tableDnsSource(() => deriveDns({ zone: 'weft.internal', members: [], imports: [] })), { upstreams: [`127.0.0.1:${dead}`], limits: { maxInflightForwards: 2, forwardTimeoutMs: 500 } })
    const port = udpPort(s)
    const slow = [ask(port, 'a.test'), ask(port, 'b.test')]
    await new Promise((resolve) => setTimeout(resolve, 50))
    const t0 = Date.now()
    expect((await ask(port, 'c.test')).header.rcode).toBe(RCODE.SERVFAIL)
    expect(Date.now() - t0).toBeLessThan(400)
    expect(s.stats.forwardBusy).toBe(1)
    await Promise.all(slow)
  })

  it('leaves out an upstream that is the server itself', async () => {
    const log = recordingLogger()
    const probe = dgram.createSocket('udp4')
    await new Promise<void>((resolve) => probe.bind(0, '127.0.0.1', resolve))
    const port = probe.address().port
    probe.close()
    const s = await start(tableDnsSource(() => deriveDns({ zone: 'weft.internal', members: [], imports: [] })), { listen: [{ host: '127.0.0.1', port }], upstreams: [`127.0.0.1:${port}`], log })
    expect(log.lines.some((l) => l.msg.includes('upstream is this server itself'))).toBe(true)
    expect((await ask(udpPort(s), 'example.test')).header.rcode).toBe(RCODE.REFUSED)
  })
})

describe('dns server: sizes, listening, closing', () => {
  /** 80 members, each exporting a headless service from its own cluster: 80 A records for the service name. */
  function bigTable (): ReturnType<typeof deriveDns> {
    const members: DnsMember[] = Array.from({ length: 80 }, (_, i) => ({ author: `a${i}`, hostname: `n${i}`, cluster: 'big', joinedOrder: i, v4: `10.1.1.${i + 1}`, caps: [VPN_CAP] }))
    const clusters = members.map((_, i) => `c${i}`)
    const imports = [{
      namespace: 'shop', name: 'web', type: 'Headless' as const, ports: [], sessionAffinity: 'None' as const, labels: {}, annotations: {},
      clusters, oldest: { cluster: 'c0', created: { lamport: 1, author: 'x', seq: 1, id: 'x' } }, conflicts: [],
      exporters: clusters.map((cluster, i) => ({ cluster, author: `a${i}`, address: `127.77.1.${i + 1}` }))
    }]
    return deriveDns({ zone: 'weft.internal', members, imports: imports as never })
  }

  it('sets TC when an answer does not fit the UDP size; TCP (and the node resolver) get all of it', async () => {
    const s = await start(tableDnsSource(bigTable))
    const port = udpPort(s)
    const plain = await ask(port, 'web.shop.svc.clusterset.local', 'A')
    expect(plain.header).toMatchObject({ tc: 1, aa: 1 })
    expect(plain.answers).toEqual([])
    const tcp = await ask(port, 'web.shop.svc.clusterset.local', 'A', { proto: 'tcp' })
    expect(tcp.header.tc).toBe(0)
    expect(tcp.answers).toHaveLength(80)
    expect(await resolverFor(port).resolve4('web.shop.svc.clusterset.local')).toHaveLength(80)
    expect(s.stats.truncated).toBeGreaterThanOrEqual(1)
    // With EDNS the limit is the client's size, capped at udpPayload (1232): 80 × 16 bytes does not fit either.
    expect((await ask(port, 'web.shop.svc.clusterset.local', 'A', { edns: 4096 })).header.tc).toBe(1)
    // 40 records do: a short name of one member fits in 512 bytes.
    expect((await ask(port, 'n1.weft.internal', 'A')).header.tc).toBe(0)
  })

  it('port 0 reports the real port, the same for UDP and TCP, on every listen address (IPv4 and IPv6)', async () => {
    const listen = [{ host: '127.0.0.1', port: 0 }]
    const v6 = await new Promise<boolean>((resolve) => {
      const t = net.createServer().once('error', () => { resolve(false) }).listen(0, '::1', () => { t.close(); resolve(true) })
    })
    if (v6) listen.push({ host: '::1', port: 0 })
    const s = await start(tableDnsSource(bigTable), { listen })
    const addrs = s.addresses()
    expect(addrs).toHaveLength(listen.length * 2)
    for (const host of listen.map((l) => l.host)) {
      const mine = addrs.filter((a) => a.host === host)
      expect(mine.map((a) => a.proto).sort()).toEqual(['tcp', 'udp'])
      expect(mine[0]?.port).toBeGreaterThan(0)
      expect(mine[0]?.port).toBe(mine[1]?.port)
      const a = await ask(mine[0]?.port as number, 'n1.big.weft.internal', 'A', { host })
      expect(a.answers.map((x) => x.address)).toEqual(['10.1.1.2'])
    }
  })

  it('close() frees the ports and ends open TCP connections; aborting the signal closes it too', async () => {
    const ac = new AbortController()
    const s = await startDnsServer({ listen: [{ host: '127.0.0.1', port: 0 }], answer: tableDnsSource(bigTable), log: silentLogger, signal: ac.signal })
    const port = udpPort(s)
    const idle = net.connect(port, '127.0.0.1')
    await once(idle, 'connect')
    const closed = once(idle, 'close')
    ac.abort()
    await closed
    await s.close()
    // The port can be bound again at once.
    const again = await start(tableDnsSource(bigTable), { listen: [{ host: '127.0.0.1', port }] })
    expect(udpPort(again)).toBe(port)
  })

  it('a listen address that is taken fails start-up with the error, and leaves nothing open', async () => {
    const s = await start(tableDnsSource(bigTable))
    await expect(startDnsServer({ listen: [{ host: '127.0.0.1', port: udpPort(s) }], answer: tableDnsSource(bigTable), log: silentLogger }))
      .rejects.toThrow(/EADDRINUSE/)
    await expect(startDnsServer({ listen: [{ host: 'localhost', port: 0 }], answer: tableDnsSource(bigTable), log: silentLogger }))
      .rejects.toThrow(/not an IP address/)
    await expect(startDnsServer({ listen: [], answer: tableDnsSource(bigTable), upstreams: ['dns.google'], log: silentLogger }))
      .rejects.toThrow(/not an IP address/)
  })

  it('closes TCP connections past maxTcpConnections, and idle ones after tcpIdleMs', async () => {
    const s = await start(tableDnsSource(bigTable), { limits: { maxTcpConnections: 2, tcpIdleMs: 300 } })
    const port = udpPort(s)
    const conns = await Promise.all([0, 1].map(async () => {
      const c = net.connect(port, '127.0.0.1')
      await once(c, 'connect')
      return c
    }))
    await new Promise((resolve) => setTimeout(resolve, 50))
    const third = net.connect(port, '127.0.0.1')
    await once(third, 'close')
    expect(s.stats.tcpRejected).toBeGreaterThanOrEqual(1)
    const t0 = Date.now()
    await Promise.all(conns.map(async (c) => { await once(c, 'close') }))
    expect(Date.now() - t0).toBeLessThan(2000)
    // A new connection works again.
    expect((await ask(port, 'n1.big.weft.internal', 'A', { proto: 'tcp' })).answers).toHaveLength(1)
  })
})

describe('dns server: malformed input never crashes it', () => {
  const table = (): ReturnType<typeof deriveDns> => deriveDns({ zone: 'weft.internal', members: [{ author: 'a', hostname: 'n1', cluster: 'c', joinedOrder: 0, v4: '10.1.0.1', caps: [VPN_CAP] }], imports: [] })

  function rawHeader (id: number, flags: number, qd: number, an: number, ns: number, ar: number): Buffer {
    const b = Buffer.alloc(12)
    b.writeUInt16BE(id, 0)
    b.writeUInt16BE(flags, 2)
    b.writeUInt16BE(qd, 4)
    b.writeUInt16BE(an, 6)
    b.writeUInt16BE(ns, 8)
    b.writeUInt16BE(ar, 10)
    return b
  }

  async function udpRaw (port: number, msg: Buffer, waitMs = 300): Promise<Buffer | undefined> {
    const s = dgram.createSocket('udp4')
    try {
      const got = once(s, 'message').then(([m]) => m as Buffer)
      s.send(msg, port, '127.0.0.1')
      return await Promise.race([got, new Promise<undefined>((resolve) => setTimeout(() => { resolve(undefined) }, waitMs))])
    } finally {
      s.close()
    }
  }

  it('answers FORMERR, NOTIMP or BADVERS, or drops, for each kind of bad query', async () => {
    const s = await start(tableDnsSource(table))
    const port = udpPort(s)
    const q = encodeQuery(7, 'n1.c.weft.internal', TYPE.A)
    const rcodeOf = (b: Buffer | undefined): number | string => b === undefined ? 'dropped' : decode(b).header.rcode

    expect(rcodeOf(await udpRaw(port, Buffer.alloc(0)))).toBe('dropped')
    expect(rcodeOf(await udpRaw(port, Buffer.from([1, 2, 3, 4, 5])))).toBe('dropped')
    const response = Buffer.from(q)
    response[2] = (response[2] as number) | 0x80
    expect(rcodeOf(await udpRaw(port, response))).toBe('dropped') // a response: never answered (no loops)
    expect(rcodeOf(await udpRaw(port, rawHeader(1, 0x0100, 0, 0, 0, 0)))).toBe(RCODE.FORMERR) // no question
    expect(rcodeOf(await udpRaw(port, Buffer.concat([rawHeader(1, 0x0100, 2, 0, 0, 0), q.subarray(12), q.subarray(12)])))).toBe(RCODE.FORMERR)
    expect(rcodeOf(await udpRaw(port, q.subarray(0, q.length - 3)))).toBe(RCODE.FORMERR) // cut short
    expect(rcodeOf(await udpRaw(port, Buffer.concat([rawHeader(1, 0x0100, 1, 0, 0, 0), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])])))).toBe(RCODE.FORMERR) // pointer
    expect(rcodeOf(await udpRaw(port, Buffer.concat([rawHeader(1, 0x0100, 1, 0, 0, 0), Buffer.from([0x40, 0x61, 0, 0, 1, 0, 1])])))).toBe(RCODE.FORMERR) // reserved label type
    const long = Buffer.concat([rawHeader(1, 0x0100, 1, 0, 0, 0), ...Array.from({ length: 5 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61)])), Buffer.from([0, 0, 1, 0, 1])])
    expect(rcodeOf(await udpRaw(port, long))).toBe(RCODE.FORMERR) // 321 octets
    // Additional records: a pointer loop is skipped safely; two OPT records are FORMERR.
    const opt = Buffer.from([0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0])
    expect(rcodeOf(await udpRaw(port, Buffer.concat([rawHeader(1, 0x0100, 1, 0, 0, 2), q.subarray(12), opt, opt])))).toBe(RCODE.FORMERR)
    expect(rcodeOf(await udpRaw(port, Buffer.concat([rawHeader(1, 0x0100, 1, 0, 0, 1), q.subarray(12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 9, 1])])))).toBe(RCODE.FORMERR) // rdata past the end
    expect(rcodeOf(await udpRaw(port, Buffer.concat([rawHeader(1, 0x2100, 1, 0, 0, 0), q.subarray(12)])))).toBe(RCODE.NOTIMP) // opcode 4 (NOTIFY)
    const v1 = decode(await udpRaw(port, Buffer.concat([rawHeader(1, 0x0100, 1, 0, 0, 1), q.subarray(12), Buffer.from([0, 0, 41, 4, 0xd0, 0, 1, 0, 0, 0, 0])])) as Buffer)
    expect(v1.header.rcode).toBe(RCODE.BADVERS) // EDNS version 1 (dns2 merges the extended rcode)
    expect(rcodeOf(await udpRaw(port, Buffer.concat([q, Buffer.alloc(DEFAULT_DNS_LIMITS.maxQueryBytes)])))).toBe('dropped') // over the size limit
    // Bytes after the last record are ignored; a label with a dot in it is a name that does not exist.
    expect(rcodeOf(await udpRaw(port, Buffer.concat([q, Buffer.from('trailing')])))).toBe(RCODE.NOERROR)
    const dotted = Buffer.concat([rawHeader(1, 0x0100, 1, 0, 0, 0), Buffer.from([5]), Buffer.from('n1.c.'), Buffer.from([4]), Buffer.from('weft'), Buffer.from([8]), Buffer.from('internal'), Buffer.from([0, 0, 1, 0, 1])])
    const d = decode(await udpRaw(port, dotted) as Buffer)
    expect(d.header).toMatchObject({ rcode: RCODE.NXDOMAIN, aa: 1 })
    // A class other than IN in the zone: REFUSED; a zone transfer: REFUSED.
    const ch = Buffer.from(q)
    ch.writeUInt16BE(3, ch.length - 2)
    expect(rcodeOf(await udpRaw(port, ch))).toBe(RCODE.REFUSED)
    expect((await ask(port, 'weft.internal', 'AXFR', { proto: 'tcp' })).header.rcode).toBe(RCODE.REFUSED)
    expect(s.stats.formerr).toBeGreaterThanOrEqual(8)
    expect(s.stats.dropped).toBeGreaterThanOrEqual(4)
    // Still answering.
    expect((await ask(port, 'n1.c.weft.internal')).answers.map((a) => a.address)).toEqual(['10.1.0.1'])
  })

  it('random and mutated datagrams: every reply is a well-formed response, and it keeps answering', async () => {
    const s = await start(tableDnsSource(table))
    const port = udpPort(s)
    const r = rng(1234)
    const valid = [encodeQuery(1, 'n1.c.weft.internal', TYPE.A, { edns: 1232 }), encodeQuery(2, 'x.weft.internal', TYPE.SRV), encodeQuery(3, 'example.com', TYPE.A)]
    const sock = dgram.createSocket('udp4')
    const replies: Buffer[] = []
    sock.on('message', (m) => { replies.push(m) })
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve))
    let sent = 0
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 50; i++) {
        let msg: Buffer
        if (r() < 0.4) {
          msg = Buffer.alloc(Math.floor(r() * 600))
          for (let k = 0; k < msg.length; k++) msg[k] = Math.floor(r() * 256)
        } else {
          msg = Buffer.from(valid[Math.floor(r() * valid.length)] as Buffer)
          const flips = 1 + Math.floor(r() * 6)
          for (let k = 0; k < flips; k++) msg[Math.floor(r() * msg.length)] = Math.floor(r() * 256)
          if (r() < 0.3) msg = msg.subarray(0, Math.floor(r() * msg.length))
        }
        sock.send(msg, port, '127.0.0.1')
        sent++
      }
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    await new Promise((resolve) => setTimeout(resolve, 300))
    sock.close()
    // Loopback UDP can drop under a loaded machine; most must arrive, and many are answerable.
    expect(s.stats.queries).toBeGreaterThan(sent * 0.5)
    expect(replies.length).toBeGreaterThan(sent * 0.2)
    for (const m of replies) {
      expect(m.length).toBeGreaterThanOrEqual(12)
      expect((m[2] as number) & 0x80).toBe(0x80) // QR
      expect(() => decode(m)).not.toThrow()
    }
    expect((await ask(port, 'n1.c.weft.internal')).answers.map((a) => a.address)).toEqual(['10.1.0.1'])
  })

  it('random bytes, bad frames and half-sent messages over TCP: connections close, the server keeps answering', async () => {
    const s = await start(tableDnsSource(table))
    const port = udpPort(s)
    const r = rng(99)
    const q = encodeQuery(5, 'n1.c.weft.internal', TYPE.A)
    const frame = (m: Buffer): Buffer => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m])
    const session = async (payload: Buffer, end: boolean): Promise<Buffer> => {
      const c = net.connect(port, '127.0.0.1')
      const chunks: Buffer[] = []
      c.on('data', (d: Buffer) => { chunks.push(d) })
      c.on('error', () => {})
      await once(c, 'connect')
      c.write(payload)
      if (end) c.end()
      await Promise.race([once(c, 'close'), new Promise((resolve) => setTimeout(resolve, 1500))])
      c.destroy()
      return Buffer.concat(chunks)
    }
    const jobs: Array<Promise<Buffer>> = []
    for (let i = 0; i < 60; i++) {
      const bytes = Buffer.alloc(1 + Math.floor(r() * 3000))
      for (let k = 0; k < bytes.length; k++) bytes[k] = Math.floor(r() * 256)
      jobs.push(session(bytes, r() < 0.5))
    }
    // Frames holding random bytes, and mutated queries, pipelined on one connection.
    const frames: Buffer[] = []
    for (let i = 0; i < 200; i++) {
      const m = Buffer.from(q)
      m[Math.floor(r() * m.length)] = Math.floor(r() * 256)
      frames.push(frame(i % 3 === 0 ? Buffer.alloc(Math.floor(r() * 40)) : m))
    }
    jobs.push(session(Buffer.concat(frames), true))
    jobs.push(session(Buffer.from([0xff, 0xff, 1, 2, 3]), false)) // a length over the limit
    jobs.push(session(frame(q).subarray(0, 10), true)) // half a message, then FIN
    const results = await Promise.all(jobs)
    // Pipelined well-formed queries were answered in order, each as a length-prefixed response.
    const pipelined = results[60] as Buffer
    let off = 0
    let answers = 0
    while (off + 2 <= pipelined.length) {
      const len = pipelined.readUInt16BE(off)
      const m = pipelined.subarray(off + 2, off + 2 + len)
      expect((m[2] as number) & 0x80).toBe(0x80)
      expect(() => decode(m)).not.toThrow()
      off += 2 + len
      answers++
    }
    expect(answers).toBeGreaterThan(50)
    expect(results[61]).toHaveLength(0)
    expect(results[62]).toHaveLength(0)
    const ok = await ask(port, 'n1.c.weft.internal', 'A', { proto: 'tcp' })
    expect(ok.answers.map((a) => a.address)).toEqual(['10.1.0.1'])
    expect((await ask(port, 'n1.c.weft.internal')).answers).toHaveLength(1)
  })

  it('a query sent with FIN right after it (half-close) still gets its answer', async () => {
    const s = await start(tableDnsSource(table))
    const c = net.connect(udpPort(s), '127.0.0.1')
    const q = encodeQuery(9, 'n1.c.weft.internal', TYPE.A)
    const chunks: Buffer[] = []
    c.on('data', (d: Buffer) => { chunks.push(d) })
    await once(c, 'connect')
    c.end(Buffer.concat([Buffer.from([0, q.length]), q]))
    await once(c, 'close')
    const all = Buffer.concat(chunks)
    expect(decode(all.subarray(2)).answers.map((a) => a.address)).toEqual(['10.1.0.1'])
  })

  it('an answer source that throws gives SERVFAIL, not a crash', async () => {
    const log = recordingLogger()
    const s = await start({ zones: () => ['weft.internal'], lookup: () => { throw new Error('boom') } }, { log })
    expect((await ask(udpPort(s), 'n1.weft.internal')).header.rcode).toBe(RCODE.SERVFAIL)
    expect(s.stats.sourceErrors).toBe(1)
    expect(log.lines.some((l) => l.level === 'error')).toBe(true)
  })
})
