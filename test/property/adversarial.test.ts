import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { PureNode, ReplicaNode, checkConverged, closeAll, runScenario, scenarioArb, type Outcome } from './sim.js'

/**
 * Item 9: forged signatures (a flipped bit, another author's key, bytes tampered under the
 * original signature), a wrong network id and lamport inflation never enter: each is refused
 * with its own code when offered and again after every parent is present, nothing is stored,
 * a forged copy never replaces the valid original, and no honest author ends up frozen.
 */
describe('invalid events never enter', () => {
  it('pure replicas refuse them with the right code, and still converge', async () => {
    const kinds = new Map<string, number>()
    await fc.assert(fc.asyncProperty(scenarioArb({ bad: true, restarts: true, maxSteps: 60 }), async (scn) => {
      const o = await runScenario(scn, async (w) => new PureNode(w))
      await checkConverged(o)
      for (const n of o.nodes) expect(n.log.forks().size).toBe(0)
      for (const b of o.bad) kinds.set(b.kind, (kinds.get(b.kind) ?? 0) + 1)
    }), { numRuns: 60 })
    // Every kind of invalid event was actually exercised.
    expect([...kinds.keys()].sort()).toEqual(['lamport', 'net', 'otherkey', 'sig', 'tamper'])
  })

  it('durable replicas never write them to disk', async () => {
    await fc.assert(fc.asyncProperty(scenarioArb({ bad: true, restarts: true, maxReplicas: 4, maxSteps: 50 }), async (scn) => {
      let o: Outcome | undefined
      try {
        o = await runScenario(scn, async (w) => await ReplicaNode.create(w))
        await checkConverged(o)
        for (const n of o.nodes) {
          const r = (n as ReplicaNode).inner
          expect(await r.store.count()).toBe(o.truth.size)
          for (const b of o.bad) {
            const env = await r.store.getEnvelope(b.id)
            // Absent, or the valid original of a forged copy: never the bad bytes.
            if (env !== undefined) expect(Buffer.from(env).equals(Buffer.from(b.envelope))).toBe(false)
            if (env !== undefined) expect(o.truth.has(b.id)).toBe(true)
          }
        }
      } finally {
        await closeAll(o)
      }
    }), { numRuns: 40 })
  })
})
