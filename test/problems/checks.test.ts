import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join as joinPath } from 'node:path'
import { describe, expect, it } from 'vitest'
import { forwardingProblem } from '../../src/node/host-checks.js'
import { hostnameProblem, noPeersProblem, noTunProblem } from '../../src/node/mesh-checks.js'
import { binaryFound, k3sProblems } from '../../src/node/features/k3s.js'
import { ProblemBook } from '../../src/node/problems.js'
import { chooseAddress } from '../../src/projections/ipam.js'
import { LogBuilder, foldNetwork, join } from '../projections/support.js'

// mDNS that cannot work is the mesh's own finding: test/net/lan-discovery.test.ts and
// test/system/netns-lan-discovery.test.ts.

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
