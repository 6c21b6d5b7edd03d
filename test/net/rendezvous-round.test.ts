/**
 * A rendezvous round whose DHT look-ups hang (a peer the lookup dials never answers: seen in the
 * simulated internet, where a NATted node then waited 20 s to find its network) must end at the
 * alone round limit while the node has no member, so the next round can run; connected, the
 * longer limit applies.
 */
import { describe, expect, it } from 'vitest'
import { Rendezvous } from '../../src/net/rendezvous.js'
import { newToken } from '../../src/log/token.js'
import type { WeftHost } from '../../src/net/host.js'

function hangingHost (): { host: WeftHost, lookups: number } {
  const state = { lookups: 0 }
  const untilAborted = async (signal: AbortSignal): Promise<never> => await new Promise((_resolve, reject) => {
    signal.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
  })
  const host = {
    peerId: { equals: () => false },
    getPeers: () => [{}],
    getConnections: () => [],
    dial: async () => { throw new Error('no dial expected') },
    contentRouting: {
      provide: async (_cid: unknown, o: { signal: AbortSignal }) => await untilAborted(o.signal),
      findProviders: async function * (_cid: unknown, o: { signal: AbortSignal }) { state.lookups++; await untilAborted(o.signal); yield * [] }
    }
  } as unknown as WeftHost
  return { host, get lookups () { return state.lookups } }
}

const MID_HOUR = Date.UTC(2026, 11, 6, 12, 45)
const log = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} } as never

describe('rendezvous round limit', () => {
  it('alone, a hanging round ends at the alone limit; connected, it waits for the longer one', async () => {
    const roundMs = { alone: 100, connected: 1_500 }
    for (const [alone, min, max] of [[true, 90, 1_000], [false, 1_400, 5_000]] as const) {
      const h = hangingHost()
      // Mid-hour: connected, a round then looks up the current key only (rendezvous-plan.test.ts).
      const r = new Rendezvous({ host: h.host, token: newToken(), now: () => MID_HOUR, log, alone: () => alone, roundMs })
      const t0 = performance.now()
      await r.round()
      const took = performance.now() - t0
      expect(h.lookups).toBe(alone ? 3 : 1)
      expect(took).toBeGreaterThanOrEqual(min)
      expect(took).toBeLessThan(max)
    }
  })
})
