import { afterEach, describe, expect, it } from 'vitest'
import { networkDnsSource, startDnsServer, type DnsServer } from '../../src/adapters/dns-server.js'
import { dnsTableFromView } from '../../src/adapters/dns-source.js'
import { RCODE, TYPE } from '../../src/adapters/dns-wire.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import { deriveDns, DNS_TTL, lookupDns, type DnsMember } from '../../src/projections/dns.js'
import { serviceAddressOf } from '../../src/projections/service-addresses.js'
import { networkView } from '../../src/projections/view.js'
import { foldNetwork, join, LogBuilder } from '../projections/support.js'
import { ask, errorCode, exportBody, resolverFor, udpPort, vpnJoin } from './support.js'

/**
 * Issue 17: a member whose join announces no VPN device (--no-tun, or no TUN available) holds an
 * overlay address that reaches nothing. Its DNS name is reserved (NODATA: the name exists, nobody
 * else gets it) but answers no A/AAAA, so nobody connects into the void; a later join with a
 * VPN device (a restart with TUN) makes it answer. Service names do not depend on it: they
 * resolve to service addresses carried over the mesh's tunnels, which need no TUN device.
 *
 *   a: web1 (east, VPN, 10.1.0.5)   b: cache1 (east, no VPN, 10.1.0.9)
 */
function network (): LogBuilder {
  const b = new LogBuilder(4)
  b.append(0, 'node.join', vpnJoin('web1', 'east'))
  b.append(1, 'node.join', join('cache1', 'east'), { seesAll: true }) // caps: [] (--no-tun)
  b.append(0, 'ip.claim', { addr: '10.1.0.5' }, { seesAll: true })
  b.append(1, 'ip.claim', { addr: '10.1.0.9' }, { seesAll: true })
  return b
}

const servers: DnsServer[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map(async (s) => { await s.close() }))
})

async function serve (b: LogBuilder): Promise<{ port: number, source: ReturnType<typeof networkDnsSource>, update: () => void }> {
  let state = foldNetwork(b.events)
  const source = networkDnsSource(() => state)
  const s = await startDnsServer({ listen: [{ host: '127.0.0.1', port: 0 }], answer: source, log: silentLogger })
  servers.push(s)
  // What the daemon does on replica.onChange.
  return { port: udpPort(s), source, update: () => { state = foldNetwork(b.events); source.invalidate() } }
}

describe('dns: a member without a VPN device', () => {
  it('its names answer no A or AAAA: NODATA with the zone SOA (not NXDOMAIN); a member with a VPN keeps its name', async () => {
    const { port } = await serve(network())
    const r = resolverFor(port)
    for (const name of ['cache1.east.weft.internal', 'cache1.weft.internal']) {
      expect(await errorCode(r.resolve4(name))).toBe('ENODATA')
      expect(await errorCode(r.resolve6(name))).toBe('ENODATA')
      const raw = await ask(port, name, 'A')
      expect(raw.header).toMatchObject({ aa: 1, rcode: RCODE.NOERROR })
      expect(raw.answers).toEqual([])
      expect(raw.authorities).toMatchObject([{ name: 'weft.internal', type: TYPE.SOA, minimum: DNS_TTL }])
      expect((await ask(port, name, 'ANY')).answers).toEqual([])
    }
    // Its address is nowhere in the answers, the VPN member's name is untouched.
    expect(await r.resolve4('web1.east.weft.internal')).toEqual(['10.1.0.5'])
    expect(await r.resolve4('web1.weft.internal')).toEqual(['10.1.0.5'])
    // A name nobody holds is still NXDOMAIN.
    expect(await errorCode(r.resolve4('nobody.east.weft.internal'))).toBe('ENOTFOUND')
  })

  it('like any member, it has no name before it holds an address (NXDOMAIN, no dnsName)', () => {
    const b = new LogBuilder(2)
    b.append(0, 'node.join', join('cache1', 'east'))
    const view = networkView(foldNetwork(b.events))
    expect(view.dns.reserved).toEqual([])
    expect(view.members[0]).toMatchObject({ vpn: false })
    expect(view.members[0]?.dnsName).toBeUndefined()
    expect(lookupDns(dnsTableFromView(view.dns), 'cache1.east.weft.internal', 'A')).toMatchObject({ nxdomain: true })
  })

  it('the name stays reserved: a later member with the same host name gets a distinct one', async () => {
    const b = network()
    b.append(2, 'node.join', vpnJoin('cache1', 'east'), { seesAll: true })
    b.append(2, 'ip.claim', { addr: '10.1.0.10' }, { seesAll: true })
    const { port } = await serve(b)
    const r = resolverFor(port)
    expect(await errorCode(r.resolve4('cache1.east.weft.internal'))).toBe('ENODATA')
    expect(await r.resolve4(`cache1-${b.hex(2).slice(0, 6)}.east.weft.internal`)).toEqual(['10.1.0.10'])
  })

  it('a later join with a VPN device (restart with TUN) makes the name answer; a restart with --no-tun takes the address away again', async () => {
    const b = network()
    const { port, source, update } = await serve(b)
    const r = resolverFor(port)
    expect(await errorCode(r.resolve4('cache1.east.weft.internal'))).toBe('ENODATA')
    const serial0 = source.serial?.() as number

    b.append(1, 'node.join', vpnJoin('cache1', 'east'), { seesAll: true })
    update()
    expect(await r.resolve4('cache1.east.weft.internal')).toEqual(['10.1.0.9'])
    expect(await r.resolve4('cache1.weft.internal')).toEqual(['10.1.0.9'])
    expect(source.serial?.()).toBeGreaterThan(serial0)

    b.append(1, 'node.join', join('cache1', 'east'), { seesAll: true })
    update()
    expect(await errorCode(r.resolve4('cache1.east.weft.internal'))).toBe('ENODATA')
  })

  it('a member that claims an address and announces no VPN cannot get an A record through any of its names', () => {
    // Adversarial: it claims two families, an odd case of host name, and joins twice.
    const b = network()
    b.setting(0, 'overlayCidr6', 'fd00:1::/64', { seesAll: true })
    b.append(1, 'ip.claim', { addr: 'fd00:1::9' }, { seesAll: true })
    b.append(1, 'node.join', join('CACHE1.example.com', 'east'), { seesAll: true })
    const state = foldNetwork(b.events)
    const view = networkView(state)
    expect(view.dns.records.filter((x) => x.value === '10.1.0.9' || x.value === 'fd00:1::9')).toEqual([])
    expect(view.dns.reserved).toEqual(['cache1.east.weft.internal', 'cache1.weft.internal'])
    // The API and `weft node ls` say so: the address is held, the name reserved, no VPN.
    const m = view.members.find((x) => x.author === b.hex(1))
    expect(m).toMatchObject({ address: '10.1.0.9', address6: 'fd00:1::9', dnsName: 'cache1.east.weft.internal', vpn: false })
    expect(view.members.find((x) => x.author === b.hex(0))).toMatchObject({ dnsName: 'web1.east.weft.internal', vpn: true })
    // The server's table (rebuilt from the view) answers exactly as the projection.
    const table = dnsTableFromView(view.dns)
    const members: DnsMember[] = view.members.map((x, i) => ({ author: x.author, hostname: x.hostname, cluster: x.cluster, joinedOrder: i, v4: x.address, v6: x.address6, caps: x.caps }))
    const ref = deriveDns({ zone: view.dns.zone, members, imports: view.services.imports })
    expect([...table.names].sort()).toEqual([...ref.names].sort())
    for (const n of ['cache1.east.weft.internal', 'cache1.weft.internal', 'web1.weft.internal', 'east.weft.internal', 'x.weft.internal']) {
      for (const t of ['A', 'AAAA'] as const) expect(lookupDns(table, n, t)).toEqual(lookupDns(ref, n, t))
    }
  })

  it('a service it exports still resolves, to the service address the tunnels carry (no TUN needed)', async () => {
    const b = network()
    b.append(1, 'service.export', exportBody('east', 'shop', 'cache', [{ name: 'redis', protocol: 'TCP', port: 6379 }]), { seesAll: true })
    const { port } = await serve(b)
    const r = resolverFor(port)
    const state = foldNetwork(b.events)
    const vip = serviceAddressOf(state.services.addresses, 'shop', 'cache') as string
    expect(vip).toMatch(/^127\.77\./)
    expect(await r.resolve4('cache.shop.svc.clusterset.local')).toEqual([vip])
    expect(await r.resolve4('cache.shop.svc.east.weft.internal')).toEqual([serviceAddressOf(state.services.addresses, 'shop', 'cache', 'east')])
    // …while its own node name still answers no address.
    expect(await errorCode(r.resolve4('cache1.east.weft.internal'))).toBe('ENODATA')
  })
})
