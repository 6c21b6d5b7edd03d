import { describe, expect, it } from 'vitest'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { RendezvousPace } from '../../src/net/rendezvous-pace.js'
import { Rendezvous, RENDEZVOUS_ALONE_INTERVAL_MS, RENDEZVOUS_ALONE_MAX_INTERVAL_MS, RENDEZVOUS_INTERVAL_MS, RENDEZVOUS_MAX_INTERVAL_MS } from '../../src/net/rendezvous.js'
import type { WeftHost } from '../../src/net/host.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import { TEST_TOKEN } from '../support/fixtures.js'

/**
 * Rendezvous pace (issue 16, idle traffic): in a settled network rounds find nobody new, and
 * each one costs ~40 DHT streams per node; with backoff (public discovery) the period doubles
 * after each quiet round up to a cap, and starts over when a round finds a new provider or the
 * mode changes. Without backoff (no public discovery) nothing changes.
 */

const PEERS = [
  '12D3KooWNLcssdEp8pY4abuJrUBk42ecRaAxQ6qzAuZDmYsDem97',
  '12D3KooWM9mJmvzKx4nPKRLnZSaAjytTcw5FcTPntAfMnRkvwnkh',
  '12D3KooWMgC5riQwEjDQvR1msiwVvGRYWPXdRK795xTux2Ui8oYF',
  '12D3KooWDdiNMef5HJqbbgDMn3ySBEBFy1KCVD1Zr5TW7Uf4hQBS'
].map((p) => peerIdFromString(p))
const self = PEERS[0] as PeerId

/** A host whose DHT answers with `providers()` and which is connected to `connected`. */
function fakeHost (providers: () => PeerId[], connected: Set<string>): { host: WeftHost, lookups: () => number, dials: string[] } {
  let lookups = 0
  const dials: string[] = []
  const host = {
    peerId: self,
    getPeers: () => [PEERS[1]],
    getConnections: (p?: PeerId) => p !== undefined && connected.has(p.toString()) ? [{}] : [],
    dial: async (target: unknown) => { dials.push(String(target)) },
    contentRouting: {
      provide: async () => {},
      findProviders: async function * () {
        lookups++
        for (const id of providers()) yield { id, multiaddrs: [] }
      }
    }
  }
  return { host: host as unknown as WeftHost, lookups: () => lookups, dials }
}

describe('rendezvous pace', () => {
  it('connected and finding nobody new: the period doubles after each round, up to the cap', async () => {
    const connected = new Set(PEERS.slice(1, 3).map(String))
    const { host, lookups } = fakeHost(() => PEERS.slice(0, 3), connected)
    // Mid-hour, so a connected round looks up the current key alone (rendezvous-plan.test.ts).
    const r = new Rendezvous({ host, token: TEST_TOKEN, now: () => Date.UTC(2026, 11, 6, 12, 45), log: silentLogger, backoff: true, alone: () => false, fast: () => false })
    expect(r.periodMs()).toBe(RENDEZVOUS_INTERVAL_MS)
    // The first round sees the two providers for the first time: not quiet.
    await r.round()
    expect(r.periodMs()).toBe(RENDEZVOUS_INTERVAL_MS)
    const periods: number[] = []
    for (let i = 0; i < 6; i++) { await r.round(); periods.push(r.periodMs()) }
    expect(periods).toEqual([2, 4, 8, RENDEZVOUS_MAX_INTERVAL_MS / RENDEZVOUS_INTERVAL_MS, RENDEZVOUS_MAX_INTERVAL_MS / RENDEZVOUS_INTERVAL_MS, RENDEZVOUS_MAX_INTERVAL_MS / RENDEZVOUS_INTERVAL_MS].map((x) => x * RENDEZVOUS_INTERVAL_MS))
    expect(lookups()).toBe(7)
    // Over an hour of a settled network: 7 rounds instead of 60.
    expect(RENDEZVOUS_INTERVAL_MS * (1 + 2 + 4 + 8) + RENDEZVOUS_MAX_INTERVAL_MS * 3).toBeGreaterThanOrEqual(60 * 60_000)
  })

  it('a round that finds a provider not seen before starts over from the base period, and it is dialled', async () => {
    const connected = new Set([PEERS[1]!.toString()])
    let found = PEERS.slice(0, 2)
    const { host, dials } = fakeHost(() => found, connected)
    const r = new Rendezvous({ host, token: TEST_TOKEN, now: () => Date.now(), log: silentLogger, backoff: true, alone: () => false, fast: () => false })
    for (let i = 0; i < 4; i++) await r.round()
    expect(r.periodMs()).toBe(8 * RENDEZVOUS_INTERVAL_MS)
    found = PEERS.slice(0, 3)
    await r.round()
    expect(r.periodMs()).toBe(RENDEZVOUS_INTERVAL_MS)
    expect(dials.some((d) => d.includes(PEERS[2]!.toString()))).toBe(true)
    // A provider seen before that is not connected (a member gone, its record still in the DHT
    // for 48 h) is dialled again, but does not keep the pace fast.
    await r.round()
    await r.round()
    expect(r.periodMs()).toBe(4 * RENDEZVOUS_INTERVAL_MS)
  })

  it('alone: every 5 s, backing off to 60 s; the fast start stays at 5 s; a change of mode starts over', async () => {
    let mode: 'fast' | 'alone' | 'connected' = 'fast'
    const { host } = fakeHost(() => [], new Set())
    const r = new Rendezvous({ host, token: TEST_TOKEN, now: () => Date.now(), log: silentLogger, backoff: true, alone: () => mode === 'alone', fast: () => mode === 'fast' })
    for (let i = 0; i < 5; i++) await r.round()
    expect(r.periodMs()).toBe(RENDEZVOUS_ALONE_INTERVAL_MS)
    mode = 'alone'
    const periods: number[] = [r.periodMs()]
    for (let i = 0; i < 6; i++) { await r.round(); periods.push(r.periodMs()) }
    expect(periods).toEqual([5_000, 10_000, 20_000, 40_000, 60_000, 60_000, 60_000])
    expect(RENDEZVOUS_ALONE_MAX_INTERVAL_MS).toBe(60_000)
    mode = 'connected'
    expect(r.periodMs()).toBe(RENDEZVOUS_INTERVAL_MS)
    await r.round()
    mode = 'alone'
    // Cut off from every member: look fast again.
    expect(r.periodMs()).toBe(RENDEZVOUS_ALONE_INTERVAL_MS)
  })

  it('without backoff (no public discovery) every round keeps the configured period', async () => {
    const { host } = fakeHost(() => PEERS.slice(0, 2), new Set([PEERS[1]!.toString()]))
    const r = new Rendezvous({ host, token: TEST_TOKEN, now: () => Date.now(), log: silentLogger })
    for (let i = 0; i < 6; i++) await r.round()
    expect(r.periodMs()).toBe(RENDEZVOUS_INTERVAL_MS)
    const custom = new Rendezvous({ host, token: TEST_TOKEN, now: () => Date.now(), log: silentLogger, intervalMs: 1_000 })
    for (let i = 0; i < 3; i++) await custom.round()
    expect(custom.periodMs()).toBe(1_000)
  })

  it('the pace on its own: quiet rounds never overflow the cap', () => {
    const p = new RendezvousPace({ intervalMs: 1_000, aloneIntervalMs: 500, backoff: true, maxIntervalMs: 10_000, aloneMaxIntervalMs: 2_000 })
    expect(p.periodMs('connected')).toBe(1_000)
    for (let i = 0; i < 1_000; i++) p.roundDone(false)
    expect(p.periodMs('connected')).toBe(10_000)
    expect(p.periodMs('fast')).toBe(500)
    expect(p.periodMs('alone')).toBe(500)
    p.roundDone(false)
    expect(p.periodMs('alone')).toBe(1_000)
  })
})
