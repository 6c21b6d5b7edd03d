import { describe, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Connection } from '@libp2p/interface'
import { memberDhtPeerInfo } from '../../src/net/member-dht-addresses.js'
import { HOP_PROTOCOL, MemberRelays } from '../../src/net/member-relay.js'
import { treatAsPublic } from '../../src/net/public-ranges.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import type { WeftHost } from '../../src/net/host.js'

/**
 * Circuit addresses through relays at private addresses (issue 16, idle traffic): on a LAN every
 * member serves circuit relay hop, so libp2p's relay slots and member relays landed on LAN
 * members and every member announced several circuit addresses that reach nobody a direct
 * address does not; each private DHT answer carried them all.
 */

const US = '12D3KooWMgC5riQwEjDQvR1msiwVvGRYWPXdRK795xTux2Ui8oYF'
const RELAY = '12D3KooWDdiNMef5HJqbbgDMn3ySBEBFy1KCVD1Zr5TW7Uf4hQBS'
const circuit = (ip: string): string => `/ip4/${ip}/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${US}`

describe('member addresses in the private DHT (public discovery)', () => {
  it('drops circuit addresses through relays at private or loopback addresses, keeps direct ones and public relays', () => {
    const addrs = ['/ip4/192.168.1.7/tcp/4001', '/ip4/127.0.0.1/tcp/4001', circuit('192.168.1.9'), circuit('127.0.0.1'), circuit('10.0.0.1'), circuit('1.2.3.4')]
    const out = memberDhtPeerInfo({ id: peerIdFromString(US), multiaddrs: addrs.map((a) => multiaddr(a)) })
    expect(out.multiaddrs.map(String)).toEqual(['/ip4/192.168.1.7/tcp/4001', '/ip4/127.0.0.1/tcp/4001', circuit('1.2.3.4')])
  })

  it('keeps circuit addresses through relays in ranges made public with --public-ranges', () => {
    treatAsPublic(['198.18.0.0/15'])
    const out = memberDhtPeerInfo({ id: peerIdFromString(US), multiaddrs: [multiaddr(circuit('198.18.0.16')), multiaddr(circuit('192.168.0.2'))] })
    expect(out.multiaddrs.map(String)).toEqual([circuit('198.18.0.16')])
  })
})

describe('member relay slots', () => {
  function relays (): { r: MemberRelays, listened: string[] } {
    const listened: string[] = []
    const host = { components: { transportManager: { listen: async (mas: unknown[]) => { listened.push(...mas.map(String)) } } } }
    return { r: new MemberRelays({ host: host as unknown as WeftHost, isMember: () => true, log: silentLogger, now: () => Date.now() }), listened }
  }
  const conn = (addr: string): Connection => ({ direction: 'outbound', remoteAddr: multiaddr(addr), limits: undefined, status: 'open' }) as unknown as Connection

  it('are taken on a member reached at a public address, not on one reached at a private address', async () => {
    const { r, listened } = relays()
    await r.reserve(peerIdFromString(RELAY), conn('/ip4/192.168.1.9/tcp/4001'), [HOP_PROTOCOL])
    await r.reserve(peerIdFromString(RELAY), conn('/ip4/127.0.0.1/tcp/4001'), [HOP_PROTOCOL])
    expect(listened).toEqual([])
    await r.reserve(peerIdFromString(RELAY), conn('/ip4/1.2.3.4/tcp/4001'), [HOP_PROTOCOL])
    expect(listened).toEqual(['/ip4/1.2.3.4/tcp/4001/p2p-circuit'])
  })
})
