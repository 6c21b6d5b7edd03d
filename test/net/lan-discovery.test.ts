import { describe, expect, it } from 'vitest'
import { isPrivate } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { MDNS_QUIET_INTERVAL_MS, MDNS_QUIET_MAX_MS, hasMulticastRoute, lanDiscoveryProblem, addressFacing, mdnsAnswerAddrs, mdnsQueryDue, mdnsQuietInterval, multicastInterface } from '../../src/net/lan-discovery.js'
import { treatAsPublic } from '../../src/net/public-ranges.js'

const v4 = (address: string, internal = false) => ({ address, family: 'IPv4' as const, internal, netmask: '255.255.255.0', mac: '00:00:00:00:00:00', cidr: `${address}/24` })
const UP_MULTICAST = 0x1003
const LOOPBACK = 0x9

describe('the interface mDNS uses', () => {
  it('is the first up, multicast-capable, non-loopback IPv4 interface the mesh may use', () => {
    const interfaces = () => ({ lo: [v4('127.0.0.1', true)], wg0: [v4('10.9.0.1')], eth1: [v4('192.168.5.2')] })
    const flags = (n: string) => (n === 'lo' ? LOOPBACK : UP_MULTICAST)
    expect(multicastInterface({ interfaces, flags, allowsInterface: (n) => n !== 'wg0' })).toEqual({ name: 'eth1', address: '192.168.5.2' })
    // An interface that is down or has no MULTICAST flag does not count.
    expect(multicastInterface({ interfaces, flags: (n) => (n === 'eth1' ? 0x1002 : UP_MULTICAST), allowsInterface: (n) => n !== 'wg0' })).toBeUndefined()
  })

  it('says why LAN discovery cannot work, with the fix, only when mDNS is on and nothing can carry it', () => {
    const onlyLo = { interfaces: () => ({ lo: [v4('127.0.0.1', true)] }), flags: () => LOOPBACK }
    expect(lanDiscoveryProblem(true, onlyLo)).toMatch(/mDNS cannot find peers.*--peer.*--no-mdns/)
    expect(lanDiscoveryProblem(false, onlyLo)).toBeUndefined()
    expect(lanDiscoveryProblem(true, { interfaces: () => ({ eth0: [v4('10.0.0.2')] }), flags: () => UP_MULTICAST })).toBeUndefined()
  })

  it('reads a default or multicast route from /proc/net/route, and none from a LAN-only table', () => {
    const head = 'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n'
    expect(hasMulticastRoute(() => head + 'eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n')).toBe(true)
    expect(hasMulticastRoute(() => head + 'eth0\t000000E0\t00000000\t0001\t0\t0\t0\t000000F0\t0\t0\t0\n')).toBe(true)
    expect(hasMulticastRoute(() => head + 'eth0\t00004D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n')).toBe(false)
  })
})

describe('--public-ranges', () => {
  it('makes libp2p call addresses in the given ranges public, and leaves every other range alone', () => {
    expect(isPrivate(multiaddr('/ip4/198.18.0.5/tcp/1'))).toBe(true)
    treatAsPublic(['198.18.0.0/15'])
    expect(isPrivate(multiaddr('/ip4/198.18.0.5/tcp/1'))).toBe(false)
    expect(isPrivate(multiaddr('/ip4/198.19.255.1/tcp/1'))).toBe(false)
    expect(isPrivate(multiaddr('/ip4/10.0.0.1/tcp/1'))).toBe(true)
    expect(isPrivate(multiaddr('/ip4/192.168.1.1/tcp/1'))).toBe(true)
    treatAsPublic([])
    expect(isPrivate(multiaddr('/ip4/198.18.0.5/tcp/1'))).toBe(true)
  })
})

describe('mDNS queries', () => {
  it('go out every tick while the node is alone, and once a minute while it has a member', () => {
    let connected = false
    const quiet = { intervalMs: MDNS_QUIET_INTERVAL_MS, when: () => connected }
    // Ticks every 5 s for 10 minutes: alone for the first 2, connected for 6, alone again.
    let last = -Infinity
    const asked: number[] = []
    for (let t = 0; t <= 600_000; t += 5_000) {
      connected = t >= 120_000 && t < 480_000
      if (mdnsQueryDue(t, last, quiet)) { asked.push(t); last = t }
    }
    const between = (a: number, b: number): number => asked.filter((t) => t >= a && t < b).length
    expect(between(0, 120_000)).toBe(24)
    expect(between(120_000, 480_000)).toBe(6)
    // Alone again: back to every tick at once.
    expect(asked).toContain(480_000)
    expect(between(480_000, 600_001)).toBe(25)
    expect(mdnsQueryDue(1_000, 0, undefined)).toBe(true)
  })

  it('while connected, wait a minute per 10 members, at most 5 minutes: the answers a node sends stay flat as the network grows', () => {
    expect([1, 9, 10, 11, 29, 30, 45, 200].map(mdnsQuietInterval)).toEqual([60_000, 60_000, 60_000, 120_000, 180_000, 180_000, 300_000, MDNS_QUIET_MAX_MS])
    // Answers a node sends per minute: every other member asks once per interval.
    const answersPerMinute = (n: number): number => (n - 1) * 60_000 / mdnsQuietInterval(n - 1)
    expect(answersPerMinute(31)).toBeLessThanOrEqual(answersPerMinute(11))
    expect(answersPerMinute(51)).toBeLessThanOrEqual(answersPerMinute(11))
  })
})

describe('mDNS answers', () => {
  it('give only the addresses on the interface the query came in on, with the peer id', () => {
    const id = '12D3KooWGzS5vjEnvYcKqkoPKSZjNkYx8vq3oDUNgWDRkzA5Uq3Y'
    const addrs = [
      `/ip4/10.77.0.11/tcp/4001/p2p/${id}`,
      `/ip4/127.0.0.1/tcp/4001/p2p/${id}`,
      `/ip6/::1/tcp/4001/p2p/${id}`,
      `/ip4/192.168.5.2/tcp/4001/p2p/${id}`,
      `/ip4/10.77.0.11/tcp/4001/p2p/${id}/p2p-circuit/p2p/${id}`,
      '/ip4/10.77.0.11/tcp/4002'
    ].map((a) => multiaddr(a))
    expect(mdnsAnswerAddrs(addrs, '10.77.0.11')).toEqual([`dnsaddr=/ip4/10.77.0.11/tcp/4001/p2p/${id}`])
    expect(mdnsAnswerAddrs(addrs, '10.0.0.1')).toEqual([])
  })
  it('are given from the address on the querier\'s subnet when the kernel picked the interface', () => {
    const table = () => ({ lo: [v4('127.0.0.1', true)], eth0: [v4('192.168.5.2')], eth1: [v4('10.77.0.11')] })
    expect(addressFacing('10.77.0.40', table)).toBe('10.77.0.11')
    expect(addressFacing('192.168.5.99', table)).toBe('192.168.5.2')
    expect(addressFacing('172.16.0.1', table)).toBeUndefined()
    expect(addressFacing('fe80::1', table)).toBeUndefined()
  })
})
