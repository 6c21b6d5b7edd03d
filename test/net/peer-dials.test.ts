import { describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { LAN_REDIAL_MS, PeerDials } from '../../src/net/peer-dials.js'
import type { WeftHost } from '../../src/net/host.js'

const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} }

async function peer (): Promise<PeerId> { return peerIdFromPrivateKey(await generateKeyPair('Ed25519')) }

/** A host that records dials and has the connections the test gives it. */
function fakeHost (self: PeerId, connected: Set<string>): { host: WeftHost, dials: string[] } {
  const dials: string[] = []
  const host = {
    peerId: self,
    getConnections: (p?: PeerId) => [...connected].filter((id) => p === undefined || p.toString() === id).map((id) => ({ remotePeer: { toString: () => id } })),
    dial: async (p: PeerId) => { dials.push(p.toString()); throw new Error('refused (test)') }
  }
  return { host: host as unknown as WeftHost, dials }
}

describe('peers seen on the LAN', () => {
  it('are dialled again on a later mDNS answer when the first dial failed, at most every LAN_REDIAL_MS', async () => {
    const [self, a, b] = [await peer(), await peer(), await peer()]
    const connected = new Set<string>()
    const { host, dials } = fakeHost(self, connected)
    let now = 1_000_000
    const d = new PeerDials({ host, peers: [], log: quiet as never, stopped: () => false, now: () => now })
    d.seenOnLan(a.toString())
    expect(dials).toEqual([a.toString()])
    // Answers every second: no dial until the pace allows one.
    for (let i = 0; i < 9; i++) { now += 1_000; d.seenOnLan(a.toString()) }
    expect(dials).toHaveLength(1)
    now += LAN_REDIAL_MS
    d.seenOnLan(a.toString())
    expect(dials).toEqual([a.toString(), a.toString()])
    // Connected: never dialled for an answer; itself: never; a malformed id: ignored.
    connected.add(b.toString())
    now += LAN_REDIAL_MS
    d.seenOnLan(b.toString())
    d.seenOnLan(self.toString())
    d.seenOnLan('not a peer id')
    expect(dials).toHaveLength(2)
  })

  it('a flood of answers from made-up peers costs one dial each and a bounded memory of them', async () => {
    const self = await peer()
    const { host, dials } = fakeHost(self, new Set())
    const d = new PeerDials({ host, peers: [], log: quiet as never, stopped: () => false, now: () => 0 })
    const ids = await Promise.all(Array.from({ length: 1_100 }, async () => (await peer()).toString()))
    for (const id of ids) { d.seenOnLan(id); d.seenOnLan(id) }
    expect(dials).toHaveLength(1_100)
    expect((d as unknown as { lanDials: Map<string, number> }).lanDials.size).toBe(1_024)
  })
})
