import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join as joinPath } from 'node:path'
import { describe, expect, it } from 'vitest'
import { forwardingProblem, mdnsProblem, multicastInterface, parseIpv4Routes } from '../../src/node/host-checks.js'
import { hostnameProblem, noPeersProblem, noTunProblem } from '../../src/node/mesh-checks.js'
import { binaryFound, k3sProblems } from '../../src/node/features/k3s.js'
import { ProblemBook } from '../../src/node/problems.js'
import { chooseAddress } from '../../src/projections/ipam.js'
import { LogBuilder, foldNetwork, join } from '../projections/support.js'

// /proc/net/route as the kernel writes it (addresses little-endian hex).
const HEADER = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT'
const DEFAULT_VIA_ETH0 = `${HEADER}\neth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\neth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n`
const LAN_ONLY = `${HEADER}\neth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n`
const MULTICAST_VIA_LO = `${HEADER}\neth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\nlo\t000000E0\t00000000\t0001\t0\t0\t0\t000000F0\t0\t0\t0\n`
const UP_MULTICAST = 0x1003
const flags = new Map([['eth0', 0x1003], ['lo', 0x9]])

describe('mDNS: usable only with a multicast route out of the host', () => {
  it('parses /proc/net/route and finds the interface 224.0.0.251 leaves by', () => {
    expect(parseIpv4Routes(LAN_ONLY)).toEqual([{ iface: 'eth0', dest: 0xc0a80100, mask: 0xffffff00, flags: 1 }])
    expect(multicastInterface(parseIpv4Routes(DEFAULT_VIA_ETH0))).toBe('eth0')
    expect(multicastInterface(parseIpv4Routes(LAN_ONLY))).toBeUndefined()
    expect(multicastInterface(parseIpv4Routes(MULTICAST_VIA_LO))).toBe('lo')
  })

  it('no route for multicast, or one through loopback, a down interface or one without multicast: a problem with its fix', () => {
    expect(mdnsProblem({ mdns: true, routes: DEFAULT_VIA_ETH0, flags: new Map([['eth0', UP_MULTICAST]]) })).toBeUndefined()
    const none = mdnsProblem({ mdns: true, routes: LAN_ONLY, flags })
    expect(none).toMatchObject({ code: 'mdns-unusable', severity: 'warning', message: expect.stringMatching(/no route for multicast/) })
    expect(none?.fix).toMatch(/--peer/)
    expect(mdnsProblem({ mdns: true, routes: MULTICAST_VIA_LO, flags })?.message).toMatch(/leaves by lo, which is the loopback interface/)
    expect(mdnsProblem({ mdns: true, routes: DEFAULT_VIA_ETH0, flags: new Map([['eth0', 0x1002]]) })?.message).toMatch(/eth0, which is down/)
    expect(mdnsProblem({ mdns: true, routes: DEFAULT_VIA_ETH0, flags: new Map([['eth0', 0x3]]) })?.message).toMatch(/eth0, which has multicast off/)
  })

  it('says nothing with --no-mdns or when the routing table is unknown', () => {
    expect(mdnsProblem({ mdns: false, routes: LAN_ONLY, flags })).toBeUndefined()
    expect(mdnsProblem({ mdns: true, routes: undefined, flags })).toBeUndefined()
  })
})

describe('--advertise with forwarding off', () => {
  it('IPv4 network with ip_forward=0: an error naming the network and the sysctl to set', () => {
    const p = forwardingProblem(['192.168.60.0/24'], { v4: false, v6: true })
    expect(p).toMatchObject({ code: 'ip-forward-off', severity: 'error' })
    expect(p?.message).toMatch(/--advertise 192\.168\.60\.0\/24: .*net\.ipv4\.ip_forward=0/)
    expect(p?.fix).toMatch(/sysctl -w net\.ipv4\.ip_forward=1/)
  })

  it('only the family that is off counts; nothing advertised or forwarding on: no problem', () => {
    expect(forwardingProblem(['192.168.60.0/24'], { v4: true, v6: false })).toBeUndefined()
    expect(forwardingProblem(['fd00:1::/64', '192.168.60.0/24'], { v4: true, v6: false })?.message).toMatch(/--advertise fd00:1::\/64: .*net\.ipv6\.conf\.all\.forwarding=0/)
    expect(forwardingProblem([], { v4: false })).toBeUndefined()
    expect(forwardingProblem(['192.168.60.0/24'], {})).toBeUndefined()
  })
})

describe('no peers found for 30 s', () => {
  const base = { mdns: true, mdnsUnusable: false, peers: [], knownMembers: 0 }
  it('quiet before 30 s, then a warning that says what was tried', () => {
    expect(noPeersProblem({ ...base, aloneMs: 29_999 })).toBeUndefined()
    const p = noPeersProblem({ ...base, aloneMs: 31_000, peers: ['/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWx'], knownMembers: 2 })
    expect(p).toMatchObject({ code: 'no-peers', severity: 'warning' })
    expect(p?.message).toMatch(/^no peers found for 31 s; tried: mDNS on the LAN; --peer \/ip4\/192\.0\.2\.1\/tcp\/4001\/p2p\/12D3KooWx; the addresses of 2 members known from the log; the DHT rendezvous/)
  })

  it('names what was not tried, and an mDNS that cannot work', () => {
    expect(noPeersProblem({ ...base, aloneMs: 40_000, mdns: false })?.message).toMatch(/no mDNS \(--no-mdns\); no --peer; no member known/)
    expect(noPeersProblem({ ...base, aloneMs: 40_000, mdnsUnusable: true })?.message).toMatch(/mDNS on the LAN \(unusable here: see mdns-unusable\)/)
  })
})

describe('our DNS name taken by another member', () => {
  it('the later of two members with one host name is told its name went to the first, and what it is called instead', () => {
    const b = new LogBuilder(3)
    b.append(0, 'node.join', join('web'))
    b.append(1, 'node.join', join('web'), { seesAll: true })
    b.append(2, 'node.join', join('db'), { seesAll: true })
    for (const a of [0, 1, 2]) {
      const s = b.stateOf(a)
      b.append(a, 'ip.claim', { addr: chooseAddress(s.ipam, s.settings.values, b.hex(a)) as string }, { seesAll: true })
    }
    const s = foldNetwork(b.events)
    expect(hostnameProblem(s, b.hex(0))).toBeUndefined()
    expect(hostnameProblem(s, b.hex(2))).toBeUndefined()
    const p = hostnameProblem(s, b.hex(1))
    expect(p).toMatchObject({ code: 'hostname-taken', severity: 'warning' })
    expect(p?.message).toContain(`so this node is named web-${b.hex(1).slice(0, 6)}.default.`)
    expect(p?.fix).toMatch(/--hostname/)
  })
})

describe('a member without a VPN device', () => {
  it('holding an overlay address without a VPN is a problem; with one, or with no address, it is not', () => {
    const b = new LogBuilder(1)
    b.append(0, 'node.join', join('solo'))
    const before = foldNetwork(b.events)
    expect(noTunProblem(before, b.hex(0), false)).toBeUndefined()
    b.append(0, 'ip.claim', { addr: chooseAddress(before.ipam, before.settings.values, b.hex(0)) as string })
    const s = foldNetwork(b.events)
    expect(noTunProblem(s, b.hex(0), true)).toBeUndefined()
    expect(noTunProblem(s, b.hex(0), false)).toMatchObject({ code: 'no-vpn-address', message: expect.stringMatching(/overlay address \S+ reaches nothing/) })
  })
})

describe('k3s problems', () => {
  it('a missing binary, a k3s that exited, a refused plan; a running k3s has none', () => {
    expect(k3sProblems({ state: 'waiting', restarts: 0 }, false)).toMatchObject([{ code: 'k3s-missing', severity: 'error', fix: expect.stringMatching(/--k3s-bin/) }])
    expect(k3sProblems({ state: 'backoff', restarts: 2, lastExit: { code: 1, signal: null, at: 1 } }, true)).toMatchObject([{ code: 'k3s-failed', message: expect.stringMatching(/exited \(code 1\).*2 restarts/) }])
    expect(k3sProblems({ state: 'refused', reason: 'bootstrapped as agent', restarts: 0 }, true)).toMatchObject([{ code: 'k3s-refused', message: expect.stringMatching(/bootstrapped as agent/) }])
    expect(k3sProblems({ state: 'running', pid: 5, restarts: 0 }, true)).toEqual([])
  })

  it('finds the binary by path or on PATH, only when executable', async () => {
    const dir = await mkdtemp(joinPath(tmpdir(), 'weft-bin-'))
    try {
      const bin = joinPath(dir, 'k3s')
      await writeFile(bin, '#!/bin/sh\n')
      await chmod(bin, 0o644)
      // root may open any file, but X_OK still needs an execute bit.
      expect(binaryFound(bin)).toBe(false)
      await chmod(bin, 0o755)
      expect(binaryFound(bin)).toBe(true)
      expect(binaryFound('k3s', `/nonexistent:${dir}`)).toBe(true)
      expect(binaryFound('k3s', '/nonexistent')).toBe(false)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('the problem book', () => {
  it('logs a problem once at warn when it appears, keeps its first time, and once at info when it is gone', () => {
    const lines: Array<[string, Record<string, unknown>, string]> = []
    const log = { warn: (o: object, m: string) => { lines.push(['warn', o as Record<string, unknown>, m]) }, info: (o: object, m: string) => { lines.push(['info', o as Record<string, unknown>, m]) } }
    let t = 1000
    const book = new ProblemBook(log as never, () => t)
    const p = { code: 'no-peers', severity: 'warning' as const, message: 'no peers found for 30 s', fix: 'give --peer' }
    expect(book.update([p])).toEqual([{ ...p, since: 1000 }])
    t = 6000
    expect(book.update([{ ...p, message: 'no peers found for 35 s' }])).toEqual([{ ...p, message: 'no peers found for 35 s', since: 1000 }])
    expect(lines).toEqual([['warn', { problem: 'no-peers', fix: 'give --peer' }, 'no peers found for 30 s']])
    expect(book.update([])).toEqual([])
    expect(lines[1]).toEqual(['info', { problem: 'no-peers' }, 'resolved: no peers found for 35 s'])
    expect(book.update([p, p])).toHaveLength(1)
    expect(lines.filter((l) => l[0] === 'warn')).toHaveLength(2)
  })
})

describe('a --no-tun member is marked in the views', () => {
  it('its address shows "(no VPN)" unless its join announces the vpn capability', async () => {
    const { overlayAddress } = await import('../../src/cli/status.js')
    expect(overlayAddress({ address: '10.1.0.2', caps: ['vpn'] })).toBe('10.1.0.2')
    expect(overlayAddress({ address: '10.1.0.3', address6: 'fd00::3', caps: [] })).toBe('10.1.0.3 fd00::3 (no VPN)')
    expect(overlayAddress({ caps: [] })).toBe('-')
  })
})
