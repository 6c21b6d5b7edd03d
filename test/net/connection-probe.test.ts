import { afterEach, describe, expect, it } from 'vitest'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import type { Connection } from '@libp2p/interface'
import { ConnectionProbe } from '../../src/net/connection-probe.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import { loopbackHost, waitFor } from './support.js'
import '../../src/net/polyfill.js'

/**
 * ConnectionProbe (connection-probe.ts) replaces libp2p's connection monitor for the connections
 * presence does not measure: one ping soon after a connection opens, a failed ping closes it.
 */

const stoppers: Array<() => Promise<void>> = []
afterEach(async () => { await Promise.all(stoppers.splice(0).map(async (s) => { await s() })) })

/** A plain libp2p node: with the ping service, without it, or with one that never answers. */
async function plainNode (pinger: 'ping' | 'none' | 'stuck'): Promise<Libp2p> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionMonitor: { enabled: false },
    services: { identify: identify(), ...(pinger === 'ping' ? { ping: ping() } : {}) }
  })
  if (pinger === 'stuck') await n.handle('/ipfs/ping/1.0.0', () => { /* reads nothing, answers nothing */ })
  stoppers.push(async () => { await n.stop() })
  return n
}

async function setup (pinger: 'ping' | 'none' | 'stuck', measured: (c: Connection) => boolean = () => false): Promise<{ conn: Connection }> {
  // A Weft host with public discovery: it connects to plain nodes (public DHT and relay nodes).
  const w = await loopbackHost(0, stoppers, () => false)
  const probe = new ConnectionProbe({ host: w, measured, firstAfterMs: 50, timeoutMs: 1_000, log: silentLogger })
  probe.start()
  stoppers.push(async () => { probe.stop() })
  const p = await plainNode(pinger)
  const conn = await w.dial(p.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(5_000) })
  return { conn }
}

describe('connection probe', () => {
  it('pings a connection presence does not measure soon after it opens: a round trip, still open', async () => {
    const { conn } = await setup('ping')
    await waitFor(() => conn.rtt !== undefined, 'a round trip on the connection', 5_000)
    expect(conn.rtt).toBeGreaterThanOrEqual(0)
    expect(conn.status).toBe('open')
  })

  it('counts a peer without the ping protocol as alive (it answered the negotiation)', async () => {
    const { conn } = await setup('none')
    await waitFor(() => conn.rtt !== undefined, 'a round trip from the negotiation', 5_000)
    expect(conn.status).toBe('open')
  })

  it('closes a connection whose ping is never answered (a stuck or dead peer)', async () => {
    const { conn } = await setup('stuck')
    await waitFor(() => conn.status !== 'open', 'the connection closed', 8_000)
    expect(conn.rtt).toBeUndefined()
  })

  it('leaves alone a connection presence measures', async () => {
    const { conn } = await setup('stuck', () => true)
    // Past the first ping's time and its timeout: neither pinged nor closed.
    const until = Date.now() + 2_000
    while (Date.now() < until) {
      expect(conn.status).toBe('open')
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    expect(conn.rtt).toBeUndefined()
  })
})
