import '../../src/net/polyfill.js'
import { afterEach, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import type { MultiaddrConnection } from '@libp2p/interface'
import { protectedEpoch, transportProtector } from '../../src/net/transport-protector.js'
import type { TransportKey, TransportKeys } from '../../src/net/transport-keys.js'
import { waitFor } from './support.js'

/**
 * The rotation hook: keys are read per connection, a responder accepts every key of its grace
 * window, and a connection gater learns which epoch a connection was made with.
 */

const k0: TransportKey = { epoch: 0, key: new Uint8Array(randomBytes(32)) }
const k1: TransportKey = { epoch: 1, key: new Uint8Array(randomBytes(32)) }
const stranger: TransportKey = { epoch: 0, key: new Uint8Array(randomBytes(32)) }

const only = (k: TransportKey): TransportKeys => ({ current: () => k, accepted: () => [k] })

const nodes: Libp2p[] = []
afterEach(async () => { await Promise.all(nodes.splice(0).map(async (n) => { await n.stop() })) })

async function node (keys: TransportKeys, gate?: (maConn: MultiaddrConnection) => boolean): Promise<Libp2p> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionProtector: transportProtector({ keys }),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    ...(gate !== undefined ? { connectionGater: { denyInboundEncryptedConnection: (_peer: unknown, maConn: MultiaddrConnection) => gate(maConn) } } : {})
  })
  nodes.push(n)
  return n
}

describe('transport key rotation hook', () => {
  it('a responder in a grace window accepts the new and the previous key, and the gater sees each epoch', async () => {
    const seen: Array<number | undefined> = []
    let window: TransportKeys = { current: () => k1, accepted: () => [k1, k0] }
    const responder = await node({ current: () => window.current(), accepted: () => window.accepted() }, (maConn) => { seen.push(protectedEpoch(maConn)); return false })
    const addr = responder.getMultiaddrs()[0] as never
    const old = await node(only(k0))
    const current = await node(only(k1))
    // The dialler's upgrade can finish before the responder's gater runs: wait for the gater.
    await old.dial(addr)
    await waitFor(() => seen.length === 1, 'the gater to see the first connection')
    await current.dial(addr)
    await waitFor(() => seen.length === 2, 'the gater to see the second connection')
    expect(seen).toEqual([0, 1])
    await expect((await node(only(stranger))).dial(addr, { signal: AbortSignal.timeout(10_000) })).rejects.toThrow()
    expect(seen).toEqual([0, 1])
    // The window closes: the next connection with the old key is refused, no restart needed.
    window = only(k1)
    await old.hangUp(responder.peerId)
    await expect(old.dial(addr, { signal: AbortSignal.timeout(10_000) })).rejects.toThrow()
    expect(seen).toEqual([0, 1])
  }, 30_000)

  it('a gater can refuse connections made with an old epoch', async () => {
    const responder = await node({ current: () => k1, accepted: () => [k1, k0] }, (maConn) => protectedEpoch(maConn) !== 1)
    const addr = responder.getMultiaddrs()[0] as never
    const old = await node(only(k0))
    // The dial may even resolve first (the responder's gater runs after the dialler's upgrade);
    // either way the connection does not stay.
    await old.dial(addr, { signal: AbortSignal.timeout(10_000) }).catch(() => undefined)
    const fresh = await node(only(k1))
    await fresh.dial(addr)
    await waitFor(() => old.getConnections(responder.peerId).length === 0, 'the old-epoch connection to be refused')
    await waitFor(() => responder.getConnections().length === 1, 'only the current-epoch connection at the responder')
    expect(responder.getConnections()[0]?.remotePeer.equals(fresh.peerId)).toBe(true)
  }, 30_000)

  it('protectedEpoch is undefined for anything this protector did not protect', () => {
    expect(protectedEpoch({})).toBeUndefined()
  })
})
