import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { IDS } from '../crdt/helpers.js'
import { PureNode, ReplicaNode, checkConverged, closeAll, expectedForks, forkSummary, runScenario, scenarioArb, type Outcome } from './sim.js'

const E = (IDS[7] as typeof IDS[0]).authorHex

/**
 * Item 9: an equivocating author (two or three branches of one feed, delivered piecemeal, in
 * different orders, to different replicas, while honest authors keep appending on top of
 * whatever they saw) ends frozen identically everywhere, at the lowest fork seq, with equal
 * folds.
 */
describe('equivocating authors', () => {
  it('end frozen identically on every pure replica', async () => {
    await fc.assert(fc.asyncProperty(scenarioArb({ equivocator: true, restarts: true, clones: true }), async (scn) => {
      const o = await runScenario(scn, async (w) => new PureNode(w))
      await checkConverged(o)
      const want = expectedForks(o.truth).get(E)
      expect(want).toBeDefined()
      for (const n of o.nodes) {
        expect(forkSummary(n.log).get(E)).toBe(want)
        // Nothing of E at or after the fork point is in the fold.
        const freeze = n.log.freezeSeq(E) as number
        for (const e of n.log.events()) if (e.authorHex === E) expect(n.log.isVisible(e)).toBe(e.fields.seq < freeze)
      }
    }), { numRuns: 60 })
  })

  it('end frozen identically on every durable replica, across restarts', async () => {
    await fc.assert(fc.asyncProperty(scenarioArb({ equivocator: true, restarts: true, maxReplicas: 4, maxSteps: 50 }), async (scn) => {
      let o: Outcome | undefined
      try {
        o = await runScenario(scn, async (w) => await ReplicaNode.create(w))
        await checkConverged(o)
        for (const n of o.nodes) {
          expect(forkSummary(n.log).get(E)).toBe(expectedForks(o.truth).get(E))
          // After one more restart the freeze is rebuilt from disk alone.
          await n.restart()
          expect(forkSummary(n.log).get(E)).toBe(expectedForks(o.truth).get(E))
        }
      } finally {
        await closeAll(o)
      }
    }), { numRuns: 40 })
  })
})
