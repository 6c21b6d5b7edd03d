import { afterEach, describe, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { circuitRelayServer } from '@libp2p/circuit-relay-v2'
import type { WeftHost } from '../../src/net/host.js'
import { identifiers } from '../../src/log/token.js'
import { isProtectedConnection } from '../../src/net/transport-protector.js'
import { MemberRelays } from '../../src/net/member-relay.js'
import { isDirect } from '../../src/net/address-filter.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import { TEST_TOKEN } from '../support/fixtures.js'
import { loopbackHost } from './support.js'
import '../../src/net/polyfill.js'

/**
 * Member relays (docs/mesh.md, "Beyond the LAN"): two members that met through a public relay
 * (a limited connection, which refuses the network's streams) are moved onto a member's relay:
 * an unlimited connection, protected with the token end to end, that carries sync.
 */

const stoppers: Array<() => Promise<void>> = []
afterEach(async () => { await Promise.all(stoppers.splice(0).map(async (s) => { await s() })) })
const ids = identifiers(TEST_TOKEN)
const T = (): AbortSignal => AbortSignal.timeout(10_000)

async function publicRelay (): Promise<Awaited<ReturnType<typeof createLibp2p>>> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // libp2p's default relay limits (2 min, 128 KiB), as public relays run them.
    services: { identify: identify(), ping: ping(), relay: circuitRelayServer() }
  })
  stoppers.push(async () => { await n.stop() })
  return n
}

async function member (n: number, isMember: (id: string) => boolean): Promise<WeftHost> {
  return await loopbackHost(n, stoppers, isMember)
}

const listenOn = async (h: WeftHost, relayAddr: string): Promise<void> => {
  await (h as unknown as { components: { transportManager: { listen: (a: unknown[]) => Promise<void> } } }).components.transportManager.listen([multiaddr(`${relayAddr}/p2p-circuit`)])
}

describe('member relays', () => {
  it('two members linked only through a public relay are moved onto a member relay: unlimited, protected, and sync streams open', async () => {
    const pub = await publicRelay()
    const isMember = (id: string): boolean => id !== pub.peerId.toString()
    const [m, a, b] = await Promise.all([0, 1, 2].map(async (i) => await member(i, isMember))) as [WeftHost, WeftHost, WeftHost]
    await a.handle(ids.syncProtocol, (s) => { s.send(new Uint8Array([42])); void s.close() })
    const pubAddr = pub.getMultiaddrs()[0]!.toString()
    const mAddr = m.getMultiaddrs().find((x) => !x.toString().includes('/p2p-circuit'))!.toString()

    // A behind a NAT: a slot on the public relay; B reaches it there (limited).
    await a.dial(multiaddr(pubAddr), { signal: T() })
    await listenOn(a, pubAddr)
    const limited = await b.dial(multiaddr(`${pubAddr}/p2p-circuit/p2p/${a.peerId.toString()}`), { signal: T() })
    expect(limited.limits).toBeDefined()
    await expect(b.dialProtocol(a.peerId, ids.syncProtocol, { signal: T() })).rejects.toThrow()

    // A also holds a slot on the member M, and B learns that address (identify does it in the mesh).
    await a.dial(multiaddr(mAddr), { signal: T() })
    await listenOn(a, mAddr)
    const viaMember = `${mAddr}/p2p-circuit/p2p/${a.peerId.toString()}`
    await b.peerStore.merge(a.peerId, { multiaddrs: [multiaddr(viaMember)] })

    const relays = new MemberRelays({ host: b, isMember, log: silentLogger, now: () => Date.now() })
    expect(relays.onlyLimited(a.peerId)).toBe(true)
    // Only the member's relay qualifies: the public one is not a member.
    expect((await relays.memberRelayAddrs(a.peerId)).map(String)).toEqual([viaMember])
    expect(await relays.upgrade(a.peerId)).toBe(true)
    expect(relays.onlyLimited(a.peerId)).toBe(false)
    // Through M; on loopback a direct connection (the DHT or hole punching dialling A's own
    // address) may win the race, which is as good (the lab test has no direct path at all).
    const unlimited = b.getConnections(a.peerId).find((c) => c.limits === undefined)
    expect(unlimited === undefined ? undefined : unlimited.remoteAddr.toString() === viaMember || isDirect(unlimited)).toBe(true)
    expect(unlimited !== undefined && isProtectedConnection(unlimited)).toBe(true)
    // The network's protocols now run between A and B.
    const s = await b.dialProtocol(a.peerId, ids.syncProtocol, { signal: T() })
    for await (const chunk of s) { expect(chunk.subarray()[0]).toBe(42); break }
  }, 30_000)

  it('never dials through a relay that is not a member, and leaves a member with an unlimited connection alone', async () => {
    const pub = await publicRelay()
    const isMember = (id: string): boolean => id !== pub.peerId.toString()
    const [a, b] = await Promise.all([1, 2].map(async (i) => await member(i, isMember))) as [WeftHost, WeftHost]
    const pubAddr = pub.getMultiaddrs()[0]!.toString()
    await a.dial(multiaddr(pubAddr), { signal: T() })
    await listenOn(a, pubAddr)
    await b.dial(multiaddr(`${pubAddr}/p2p-circuit/p2p/${a.peerId.toString()}`), { signal: T() })
    const relays = new MemberRelays({ host: b, isMember, log: silentLogger, now: () => Date.now() })
    expect(await relays.memberRelayAddrs(a.peerId)).toEqual([])
    expect(await relays.upgrade(a.peerId)).toBe(false)
    expect(b.getConnections(a.peerId).every((c) => c.limits !== undefined)).toBe(true)
    // Directly connected: nothing to upgrade.
    await b.dial(a.getMultiaddrs().find((x) => !x.toString().includes('/p2p-circuit'))!, { signal: T() })
    expect(relays.onlyLimited(a.peerId)).toBe(false)
    expect(await relays.upgrade(a.peerId)).toBe(false)
  }, 30_000)
})

describe('redundant relayed connections', () => {
  it('a relayed connection to a member we also reach directly is closed; one without a direct link stays', async () => {
    const isMember = (): boolean => true
    const [m, a, b] = await Promise.all([0, 1, 2].map(async (i) => await member(i, isMember))) as [WeftHost, WeftHost, WeftHost]
    const mAddr = m.getMultiaddrs().find((x) => !x.toString().includes('/p2p-circuit'))!.toString()
    await a.dial(multiaddr(mAddr), { signal: T() })
    await listenOn(a, mAddr)
    const relayed = await b.dial(multiaddr(`${mAddr}/p2p-circuit/p2p/${a.peerId.toString()}`), { signal: T() })
    expect(relayed.remoteAddr.toString()).toContain('/p2p-circuit')
    const relays = new MemberRelays({ host: b, isMember, log: silentLogger, now: () => Date.now() })
    // Only the relayed link: kept.
    expect(await relays.closeRedundant(a.peerId)).toBe(0)
    expect(relayed.status).toBe('open')
    // A direct one as well: the relayed one goes, the direct one stays.
    const direct = await b.dial(a.getMultiaddrs().find((x) => !x.toString().includes('/p2p-circuit'))!, { signal: T(), force: true })
    expect(isDirect(direct)).toBe(true)
    expect(await relays.closeRedundant(a.peerId)).toBe(1)
    expect(relayed.status).not.toBe('open')
    expect(direct.status).toBe('open')
    expect(b.getConnections(a.peerId).every((c) => !c.remoteAddr.toString().includes('/p2p-circuit'))).toBe(true)
  }, 30_000)
})
