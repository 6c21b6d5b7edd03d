import { describe, it } from 'vitest'
import fc from 'fast-check'
import { PureNode, ReplicaNode, checkConverged, closeAll, runScenario, scenarioArb, type Outcome } from './sim.js'

/**
 * Item 9: whatever the delivery (reorder, duplicates, drops, partitions, restarts), replicas
 * that finish a full exchange hold identical logs, identical frontiers and deep-equal folds.
 */
describe('convergence', () => {
  it('2-7 pure replicas, clones of one key included, converge after a full exchange', async () => {
    await fc.assert(fc.asyncProperty(scenarioArb({ restarts: true, clones: true }), async (scn) => {
      const o = await runScenario(scn, async (w) => new PureNode(w))
      await checkConverged(o)
    }), { numRuns: 150 })
  })

  it('2-5 durable replicas on memory-level, restarted from their databases, converge', async () => {
    await fc.assert(fc.asyncProperty(scenarioArb({ maxReplicas: 5, maxSteps: 40, restarts: true }), async (scn) => {
      let o: Outcome | undefined
      try {
        o = await runScenario(scn, async (w) => await ReplicaNode.create(w))
        await checkConverged(o)
        for (const n of o.nodes) {
          const r = (n as ReplicaNode).inner
          // What is on disk is what is in memory.
          const stored = new Set<string>()
          for await (const e of r.store.eventsInOrder(r.net, undefined)) stored.add(e.idHex)
          fc.pre(true)
          if (stored.size !== r.log.size) throw new Error(`store holds ${stored.size} events, log ${r.log.size}`)
          for (const e of r.log.events()) if (!stored.has(e.idHex)) throw new Error(`event ${e.idHex} not on disk`)
        }
      } finally {
        await closeAll(o)
      }
    }), { numRuns: 20 })
  })
})
