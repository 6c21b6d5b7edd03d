/**
 * What a rendezvous round asks of the DHTs. Connected, a node announces a key once (again after
 * its addresses change, after a failed announce, or after announcing while alone) and looks up
 * the neighbouring keys only near the hour's edges; alone or starting, every round does
 * everything. The property: whatever the round times (up to RENDEZVOUS_MAX_INTERVAL_MS apart)
 * and clocks (up to RENDEZVOUS_CLOCK_SKEW_MS apart), a connected looker still looks up a key
 * that a running member announced.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import {
  Rendezvous, RENDEZVOUS_CLOCK_SKEW_MS, RENDEZVOUS_MAX_INTERVAL_MS, RENDEZVOUS_NEXT_KEY_MS,
  RENDEZVOUS_PREVIOUS_KEY_MS, rendezvousCid, roundPlan
} from '../../src/net/rendezvous.js'
import { newToken, rendezvousKeys, RENDEZVOUS_EPOCH_SECONDS } from '../../src/log/token.js'
import type { WeftHost } from '../../src/net/host.js'
import type { RendezvousMode } from '../../src/net/rendezvous-pace.js'

const HOUR = RENDEZVOUS_EPOCH_SECONDS * 1000
const MIN = 60_000
const EPOCH = 493_212
const at = (minutes: number): number => EPOCH * HOUR + minutes * MIN
const log = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} } as never

describe('roundPlan', () => {
  it('alone or starting: every key looked up and an announce, whatever was announced before', () => {
    for (const mode of ['alone', 'fast'] as RendezvousMode[]) {
      for (const m of [1, 30, 59]) {
        expect(roundPlan(mode, at(m), EPOCH, EPOCH)).toEqual({ lookups: ['previous', 'current', 'next'], announce: true })
      }
    }
  })

  it('connected: the current key, the previous one early in the hour, the next one late; an announce once per key', () => {
    expect(roundPlan('connected', at(40), EPOCH, null)).toEqual({ lookups: ['current'], announce: true })
    expect(roundPlan('connected', at(40), EPOCH, EPOCH)).toEqual({ lookups: ['current'], announce: false })
    expect(roundPlan('connected', at(40), EPOCH, EPOCH - 1)).toEqual({ lookups: ['current'], announce: true })
    expect(roundPlan('connected', at(0), EPOCH, EPOCH).lookups).toEqual(['previous', 'current'])
    expect(roundPlan('connected', at(RENDEZVOUS_PREVIOUS_KEY_MS / MIN) - 1, EPOCH, EPOCH).lookups).toEqual(['previous', 'current'])
    expect(roundPlan('connected', at(RENDEZVOUS_PREVIOUS_KEY_MS / MIN), EPOCH, EPOCH).lookups).toEqual(['current'])
    expect(roundPlan('connected', at(60 - RENDEZVOUS_NEXT_KEY_MS / MIN) - 1, EPOCH, EPOCH).lookups).toEqual(['current'])
    expect(roundPlan('connected', at(60 - RENDEZVOUS_NEXT_KEY_MS / MIN), EPOCH, EPOCH).lookups).toEqual(['current', 'next'])
    expect(roundPlan('connected', at(60) - 1, EPOCH, EPOCH).lookups).toEqual(['current', 'next'])
  })

  it('property: a connected looker looks up a key that a member with rounds at most 15 min apart announced', () => {
    fc.assert(fc.property(
      fc.array(fc.integer({ min: 1, max: RENDEZVOUS_MAX_INTERVAL_MS }), { minLength: 12, maxLength: 40 }),
      fc.integer({ min: -RENDEZVOUS_CLOCK_SKEW_MS / 2, max: RENDEZVOUS_CLOCK_SKEW_MS / 2 }),
      fc.integer({ min: -RENDEZVOUS_CLOCK_SKEW_MS / 2, max: RENDEZVOUS_CLOCK_SKEW_MS / 2 }),
      fc.integer({ min: 0, max: 3 * HOUR }),
      (gaps, skewMember, skewLooker, start) => {
        // The member's rounds (real time), connected throughout, each announcing as roundPlan says.
        let t = EPOCH * HOUR + start
        let announced: number | null = null
        const keys = new Set<number>()
        for (const gap of gaps) {
          const clock = t + skewMember
          const epoch = Math.floor(clock / HOUR)
          if (roundPlan('connected', clock, epoch, announced).announce) { announced = epoch; keys.add(epoch) }
          t += gap
        }
        // The looker's round, any time up to one round interval after the member's last round,
        // and at least an hour after its first (records last 48 h, so every announce counts).
        const clock = t + skewLooker
        const epoch = Math.floor(clock / HOUR)
        const plan = roundPlan('connected', clock, epoch, epoch)
        const looked = plan.lookups.map((k) => k === 'previous' ? epoch - 1 : k === 'next' ? epoch + 1 : epoch)
        return looked.some((e) => keys.has(e))
      }
    ), { numRuns: 2_000 })
  })
})

interface Counting { host: WeftHost, provides: string[], lookups: string[], failProvide: boolean }

function countingHost (names: Map<string, string>): Counting {
  const c: Counting = { host: undefined as unknown as WeftHost, provides: [], lookups: [], failProvide: false }
  c.host = {
    peerId: { equals: () => false },
    getPeers: () => [{}],
    getConnections: () => [],
    dial: async () => { throw new Error('no dial expected') },
    contentRouting: {
      provide: async (cid: { toString: () => string }) => {
        c.provides.push(names.get(cid.toString()) ?? 'unknown')
        if (c.failProvide) throw new Error('no peer took the record')
      },
      findProviders: async function * (cid: { toString: () => string }) { c.lookups.push(names.get(cid.toString()) ?? 'unknown'); yield * [] }
    }
  } as unknown as WeftHost
  return c
}

/** Names the CIDs of the keys of the hour of `nowMs` ("previous", "current", "next"). */
async function keyNames (token: ReturnType<typeof newToken>, nowMs: number, names: Map<string, string>): Promise<void> {
  const k = rendezvousKeys(token, nowMs)
  for (const which of ['previous', 'current', 'next'] as const) names.set((await rendezvousCid(k[which])).toString(), which)
}

describe('Rendezvous rounds', () => {
  it('connected: announces once per key, again after a kick, a failure, a round alone and in the next hour', async () => {
    const token = newToken()
    const names = new Map<string, string>()
    await keyNames(token, at(40), names)
    let now = at(40)
    let alone = false
    const c = countingHost(names)
    const r = new Rendezvous({ host: c.host, token, now: () => now, log, alone: () => alone })
    await r.round()
    expect(c.provides).toEqual(['current'])
    expect(c.lookups).toEqual(['current'])
    await r.round()
    expect(c.provides).toEqual(['current']) // nothing new to say
    expect(c.lookups).toEqual(['current', 'current'])

    await r.kick() // our addresses changed
    expect(c.provides).toEqual(['current', 'current'])
    await r.round()
    expect(c.provides).toHaveLength(2)

    c.failProvide = true
    await r.kick()
    c.failProvide = false
    await r.round() // the failed announce is made again
    await r.round()
    expect(c.provides).toEqual(['current', 'current', 'current', 'current'])

    alone = true
    await r.round()
    expect(c.lookups.slice(-3)).toEqual(['previous', 'current', 'next'])
    alone = false
    await r.round() // an announce made alone reached few peers: made again once connected
    await r.round()
    expect(c.provides).toHaveLength(6)

    now = at(100) // 40 minutes into the next hour: its current key is this one's next
    await r.round()
    expect(c.provides.at(-1)).toBe('next')
    expect(c.lookups.at(-1)).toBe('next')
    expect(c.provides).toHaveLength(7)
  })

  it('a kick while an announce runs asks for another announce after it', async () => {
    const token = newToken()
    const names = new Map<string, string>()
    await keyNames(token, at(40), names)
    const c = countingHost(names)
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => { release = resolve })
    const provide = c.host.contentRouting.provide.bind(c.host.contentRouting)
    c.host.contentRouting.provide = async (cid, o) => { await provide(cid, o); await gate }
    const r = new Rendezvous({ host: c.host, token, now: () => at(40), log, alone: () => false })
    const first = r.round()
    await expect.poll(() => c.provides.length).toBe(1)
    void r.kick() // addresses changed while the announce runs: it may carry the old ones
    release()
    await first
    await expect.poll(() => c.provides.length).toBe(2) // the kick's own round, run after the first
    await r.round()
    expect(c.provides).toHaveLength(2)
  })
})
