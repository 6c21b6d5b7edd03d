import { describe, expect, it } from 'vitest'
import { findMember } from '../../src/node/features/ping.js'
import { renderPing } from '../../src/cli/ping.js'
import { prettyLine, defaultLogFormat } from '../../src/cli/log-format.js'
import { nodeEntries, renderNodes } from '../../src/cli/node.js'
import type { MemberView } from '../../src/projections/view.js'
import { NodeStatusSchema, type NodeStatus, type StateResponse } from '../../src/adapters/api-types.js'
import { renderStatus } from '../../src/cli/status.js'

const member = (hostname: string, n: number, extra: Partial<MemberView> = {}): MemberView => ({
  author: String(n).repeat(64).slice(0, 64), peerId: `12D3KooW${hostname}`, hostname, cluster: 'default', requestedRole: 'auto', role: 'agent', roleStable: true,
  address: `10.1.0.${n}`, dnsName: `${hostname}.default.weft.internal`, vpn: true, addrs: [], caps: ['vpn'], ...extra
})

describe('weft ping: which member a name means', () => {
  const ms = [member('web', 1), member('Web.example.com', 2, { dnsName: 'web-222222.default.weft.internal' }), member('db', 3)]
  it('by peer id, author prefix, overlay address, DNS name, host name; ambiguous names list the candidates', () => {
    expect(findMember(ms, '12D3KooWdb')).toBe(ms[2])
    expect(findMember(ms, '33333333')).toBe(ms[2])
    expect(findMember(ms, '10.1.0.2')).toBe(ms[1])
    expect(findMember(ms, 'web-222222.default.weft.internal.')).toBe(ms[1])
    expect(findMember(ms, 'web.example.com')).toBe(ms[1])
    expect(findMember(ms, 'db')).toBe(ms[2])
    // "web" is one host name exactly (the first), though two share the label.
    expect(findMember(ms, 'web')).toBe(ms[0])
    expect(findMember([member('a', 4, { hostname: 'x.one' }), member('b', 5, { hostname: 'x.two' })], 'x')).toHaveLength(2)
    expect(findMember(ms, 'nobody')).toBeUndefined()
    // Too short to be an author prefix.
    expect(findMember(ms, '3333')).toBeUndefined()
  })

  it('prints the path, each reply and a summary; no answer says why', () => {
    expect(renderPing({ peerId: '12D3KooWx', hostname: 'db', address: '10.1.0.3', path: { addr: '/ip4/192.0.2.3/tcp/4001/p2p/12D3KooWx', direct: false }, rttMs: [1.25, 12.4], lost: 1 }))
      .toBe('PING db (10.1.0.3) 12D3KooWx: relayed via /ip4/192.0.2.3/tcp/4001\nreply 1: rtt 1.3 ms\nreply 2: rtt 12 ms\n3 sent, 2 answered; rtt min/avg/max 1.3 ms / 6.8 ms / 12 ms')
    expect(renderPing({ peerId: '12D3KooWx', rttMs: [], lost: 2, error: 'dial timeout' })).toBe('PING 12D3KooWx 12D3KooWx: no connection\n2 sent, 0 answered: no answer (dial timeout)')
  })
})

describe('weft node ls', () => {
  it('every member with this node, online and offline ones, and "(no VPN)" for a --no-tun member', () => {
    const ms = [member('web', 1), member('db', 3, { caps: [] }), member('old', 5)]
    const state = { at: { events: 1, folded: 1, lamport: 1 }, view: { members: ms }, marks: { roles: {}, leases: {} } } as unknown as StateResponse
    const peers = [{ peerId: ms[1]!.peerId, author: ms[1]!.author, connected: true, online: true, lastSeenMs: 2000, addrs: [] }, { peerId: ms[2]!.peerId, author: ms[2]!.author, connected: false, online: false, lastSeenMs: 7_200_000, addrs: [] }]
    const nodes = nodeEntries(state, peers, ms[0]!.author)
    expect(nodes.map((n) => [n.hostname, n.self, n.online, n.vpn])).toEqual([['db', false, true, false], ['old', false, false, true], ['web', true, true, true]])
    const text = renderNodes(nodes)
    expect(text).toMatch(/db\s+default\s+agent\s+10\.1\.0\.3 \(no VPN\)\s+db\.default\.weft\.internal\s+online\s+2s ago/)
    expect(text).toMatch(/old\s+default\s+agent\s+10\.1\.0\.5\s+old\.default\.weft\.internal\s+offline\s+2h0m ago/)
    expect(text).toMatch(/web\s+.*this node\s+-/)
  })
})

describe('--log-format pretty', () => {
  it('one line: ISO time, level, message, then key=value (strings quoted when needed)', () => {
    expect(prettyLine('{"level":40,"time":"2026-12-05T05:01:02.003Z","pid":7,"problem":"no-peers","fix":"give --peer x","n":3,"msg":"no peers found"}'))
      .toBe('2026-12-05T05:01:02.003Z  WARN   no peers found  problem=no-peers  fix="give --peer x"  n=3')
    expect(prettyLine('not json\n')).toBe('not json')
    expect(prettyLine('{"level":50,"time":1767225600000,"msg":"x"}', true)).toBe('2026-01-01T00:00:00.000Z  \u001b[31mERROR\u001b[0m  x')
  })

  it('pretty on a terminal, JSON lines otherwise', () => {
    expect(defaultLogFormat(true)).toBe('pretty')
    expect(defaultLogFormat(false)).toBe('json')
    expect(defaultLogFormat(undefined)).toBe('json')
  })
})

describe('weft status: a node without a VPN device (issue 17)', () => {
  const status = (self: Record<string, unknown>, vpn?: unknown): NodeStatus => NodeStatusSchema.parse({
    peerId: '12D3KooWtest', author: 'a'.repeat(64), networkId: '0123456789abcdef', version: '0.1.0', hostname: 'alpha', cluster: 'default',
    startedAt: 1_700_000_000_000, uptimeMs: 60_000, listen: [], api: 'http://127.0.0.1:1', events: 1, authors: 1, pending: 0,
    peers: { connected: 0, online: 0 }, self, sync: { rounds: 0, eventsPulled: 0 }, ...(vpn !== undefined ? { vpn } : {})
  })
  const self = { address: '10.1.0.17', dnsName: 'alpha.default.weft.internal' }

  it('marks the address as reaching nothing and the name as reserved; with a VPN, neither', () => {
    const off = renderStatus(status({ ...self, vpn: false }))
    expect(off).toMatch(/address\s+10\.1\.0\.17 \(no VPN: reaches nothing\)/)
    expect(off).toMatch(/DNS name\s+alpha\.default\.weft\.internal \(reserved: no address records without a VPN\)/)
    const on = renderStatus(status({ ...self, vpn: true }))
    expect(on).toMatch(/address\s+10\.1\.0\.17\n/)
    expect(on).toMatch(/DNS name\s+alpha\.default\.weft\.internal\n/)
    expect(on).not.toMatch(/no VPN|reserved/)
  })

  it('the vpn thread row says which packet loop runs, and why not the native one', () => {
    const vpn = (packetThread: Record<string, unknown>): Record<string, unknown> => ({
      device: 'weft0', addresses: ['10.1.0.17/16'], mtu: 1420, routes: [],
      tun: { rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txDropped: 0 }, packetThread, peers: [],
      drops: { no_route: 0, queue_full: 0, no_connection: 0, spoofed: 0, malformed: 0, device_full: 0 }
    })
    expect(renderStatus(status(self, vpn({ running: true, restarts: 0, loop: 'native' })))).toMatch(/vpn thread\s+packet thread, native loop\n/)
    expect(renderStatus(status(self, vpn({ running: true, restarts: 2, loop: 'javascript', loopReason: 'not built (no C compiler)' }))))
      .toMatch(/vpn thread\s+packet thread, JavaScript loop \(not built \(no C compiler\)\), restarted 2 times\n/)
    // An older daemon does not say which loop.
    expect(renderStatus(status(self, vpn({ running: true, restarts: 0 })))).toMatch(/vpn thread\s+packet thread\n/)
  })

  it('an older daemon without self.vpn: marked when it reports no VPN data plane', () => {
    expect(renderStatus(status(self))).toMatch(/\(no VPN: reaches nothing\)/)
  })
})
