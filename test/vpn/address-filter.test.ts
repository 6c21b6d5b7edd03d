import type { NetworkInterfaceInfo } from 'node:os'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { AddressFilter, bestConnection, parsePathRules } from '../../src/net/address-filter.js'

function iface (address: string, prefix: number): NetworkInterfaceInfo {
  const v6 = address.includes(':')
  return { address, netmask: '', family: v6 ? 'IPv6' : 'IPv4', mac: '00:00:00:00:00:00', internal: false, cidr: `${address}/${prefix}`, ...(v6 ? { scopeid: 0 } : {}) } as NetworkInterfaceInfo
}

/** A host with a LAN, Weft's own TUN, WireGuard, a CNI bridge, docker and a veth. */
const HOST: NodeJS.Dict<NetworkInterfaceInfo[]> = {
  lo: [iface('127.0.0.1', 8), iface('::1', 128)],
  eth0: [iface('192.168.1.10', 24), iface('2001:db8:1::10', 64)],
  weft0: [iface('10.1.0.5', 16)],
  wg0: [iface('10.8.0.2', 24)],
  cni0: [iface('10.42.0.1', 24)],
  'flannel.1': [iface('10.42.0.0', 32)],
  docker0: [iface('172.17.0.1', 16)],
  veth1234: [iface('169.254.9.9', 16)]
}

const filter = (opts: { include?: string[], exclude?: string[], overlay?: string[] } = {}): AddressFilter =>
  new AddressFilter({ tunName: 'weft0', interfaces: () => HOST, overlay: () => opts.overlay ?? ['10.1.0.0/16', '10.200.0.0/24'], include: opts.include, exclude: opts.exclude })

describe('address filter: which paths the mesh may use', () => {
  it('keeps LAN and loopback addresses; refuses tunnel and virtual interfaces, their subnets, and the overlay', () => {
    const f = filter()
    for (const ok of ['192.168.1.10', '192.168.1.77', '2001:db8:1::10', '127.0.0.1', '::1', '8.8.8.8']) expect(f.allowsIp(ok), ok).toBe(true)
    // wg0's own address and its peers' (same subnet), a pod on cni0, docker, veth link-local,
    // the overlay (own TUN), and a network another member advertises.
    for (const no of ['10.8.0.2', '10.8.0.9', '10.42.0.17', '172.17.0.2', '169.254.1.1', '10.1.0.5', '10.1.3.3', '10.200.0.9']) expect(f.allowsIp(no), no).toBe(false)
    expect(f.allowsMultiaddr(multiaddr('/ip4/192.168.1.20/tcp/4001'))).toBe(true)
    expect(f.allowsMultiaddr(multiaddr('/ip4/10.8.0.9/tcp/4001'))).toBe(false)
    // A relayed address is judged by the relay's address; a name is left to libp2p.
    expect(f.allowsMultiaddr(multiaddr('/ip4/10.8.0.9/tcp/4001/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp/p2p-circuit'))).toBe(false)
    expect(f.allowsMultiaddr(multiaddr('/dns4/example.org/tcp/4001'))).toBe(true)
  })

  it('expands a wildcard listen address into the allowed local addresses only', () => {
    const f = filter()
    expect(f.listenAddrs(['/ip4/0.0.0.0/tcp/4001'])).toEqual(['/ip4/127.0.0.1/tcp/4001', '/ip4/192.168.1.10/tcp/4001'])
    expect(f.listenAddrs(['/ip6/::/tcp/4001', '/ip4/192.168.1.10/tcp/5'])).toEqual(['/ip6/::1/tcp/4001', '/ip6/2001:db8:1::10/tcp/4001', '/ip4/192.168.1.10/tcp/5'])
    // No excluded interface: the wildcard stays (addresses that appear later are covered).
    const plain = new AddressFilter({ interfaces: () => ({ lo: HOST.lo, eth0: HOST.eth0 }) })
    expect(plain.listenAddrs(['/ip4/0.0.0.0/tcp/4001'])).toEqual(['/ip4/0.0.0.0/tcp/4001'])
  })

  it('--path-include takes an interface or CIDR back in; --path-exclude beats it and adds its own', () => {
    const f = filter({ include: ['wg*', '172.17.0.0/16'], exclude: ['192.168.1.128/25', 'eth9'] })
    expect(f.allowsIp('10.8.0.9')).toBe(true)
    expect(f.allowsIp('172.17.0.2')).toBe(true)
    expect(f.allowsIp('192.168.1.200')).toBe(false)
    expect(f.allowsIp('192.168.1.20')).toBe(true)
    expect(f.allowsInterface('eth9')).toBe(false)
    expect(filter({ include: ['wg0'], exclude: ['wg*'] }).allowsInterface('wg0')).toBe(false)
    // The overlay is never taken back in by an interface include.
    expect(filter({ include: ['weft0'] }).allowsIp('10.1.0.5')).toBe(false)
  })

  it('refuses a value that is neither an interface name nor a CIDR, saying what to give', () => {
    expect(() => parsePathRules(['10.0.0.1/8'], '--path-exclude')).toThrow(/--path-exclude "10.0.0.1\/8": .*host bits.*give an interface name/)
    expect(() => parsePathRules(['wg 0'], '--path-include')).toThrow(/neither an interface name .* nor a CIDR/)
    expect(parsePathRules(['wg*', '10.8.0.0/16'], 'x').cidrs).toHaveLength(1)
  })

  it('of several connections to a peer, traffic takes a direct one before a relayed one, an unlimited relay before a limited one, then the lowest RTT', () => {
    const c = (addr: string, rtt: number | undefined, extra: { status?: string, limits?: unknown } = {}): { status: string, rtt?: number, limits?: unknown, remoteAddr: string, name: string } =>
      ({ status: extra.status ?? 'open', ...(rtt !== undefined ? { rtt } : {}), ...(extra.limits !== undefined ? { limits: extra.limits } : {}), remoteAddr: addr, name: addr })
    const relayed = c('/ip4/1.2.3.4/tcp/4001/p2p/QmRelay/p2p-circuit', 1)
    const slow = c('/ip4/192.168.1.20/tcp/4001', 5)
    const fast = c('/ip4/10.0.0.20/tcp/4001', 0.4)
    const unmeasured = c('/ip4/172.20.0.20/tcp/4001', undefined)
    const closed = c('/ip4/10.0.0.21/tcp/4001', 0.1, { status: 'closed' })
    expect(bestConnection([relayed, slow, fast, unmeasured, closed])?.name).toBe(fast.name)
    expect(bestConnection([relayed, unmeasured])?.name).toBe(unmeasured.name)
    // A connection with relay limits counts as relayed, however fast.
    expect(bestConnection([c('/ip4/10.0.0.9/tcp/1', 0.1, { limits: {} }), unmeasured])?.name).toBe(unmeasured.name)
    expect(bestConnection([fast, slow], (x) => x !== fast)?.name).toBe(slow.name)
    expect(bestConnection([closed])).toBeUndefined()
    // Of two relayed ones, the unlimited one (a member relay) before a faster limited one (a
    // public relay's, which refuses the network's streams).
    const limited = c('/ip4/198.18.0.1/tcp/4001/p2p/QmPublic/p2p-circuit', 0.2, { limits: { seconds: 120 } })
    expect(bestConnection([limited, relayed])?.name).toBe(relayed.name)
    expect(bestConnection([relayed, limited])?.name).toBe(relayed.name)
  })
})
