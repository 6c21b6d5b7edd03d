import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { PureNode, ReplicaNode, checkConverged, closeAll, runScenario, scenarioArb, type Outcome, type Scenario, type SimNode } from './sim.js'

/**
 * Item 9: whatever the delivery (reorder, duplicates, drops, partitions, restarts), replicas
 * that finish a full exchange hold identical logs, identical frontiers and deep-equal folds.
 */
async function durableRun (scn: Scenario, make: (w: number) => Promise<SimNode>): Promise<void> {
  let o: Outcome | undefined
  try {
    o = await runScenario(scn, make)
    await checkConverged(o)
    for (const n of o.nodes) {
      const r = (n as ReplicaNode).inner
      // What is on disk is exactly what is in memory.
      const stored: string[] = []
      for await (const e of r.store.eventsInOrder(r.net, undefined)) stored.push(e.idHex)
      expect(stored.sort()).toEqual([...r.log.events()].map((e) => e.idHex).sort())
    }
  } finally {
    await closeAll(o)
  }
}

describe('convergence', () => {
  it('2-7 pure replicas, clones of one key included, converge after a full exchange', async () => {
    await fc.assert(fc.asyncProperty(scenarioArb({ restarts: true, clones: true }), async (scn) => {
      const o = await runScenario(scn, async (w) => new PureNode(w))
      await checkConverged(o)
    }), { numRuns: 100 })
  })

  it('2-5 durable replicas on memory-level, restarted from their databases, converge', async () => {
    await fc.assert(fc.asyncProperty(scenarioArb({ maxReplicas: 5, maxSteps: 60, restarts: true, clones: true }), async (scn) => {
      await durableRun(scn, async (w) => await ReplicaNode.create(w))
    }), { numRuns: 60 })
  })

  it('2-3 durable replicas on classic-level in tmp dirs, restarted from disk, converge', async () => {
    await fc.assert(fc.asyncProperty(scenarioArb({ maxReplicas: 3, maxSteps: 40, restarts: true }), async (scn) => {
      await durableRun(scn, async (w) => await ReplicaNode.create(w, { classic: true }))
    }), { numRuns: 6 })
  })

  it('everything at once: clones, an equivocator, invalid events, partitions and restarts', async () => {
    await fc.assert(fc.asyncProperty(scenarioArb({ restarts: true, clones: true, bad: true, equivocator: true, maxSteps: 100 }), async (scn) => {
      const o = await runScenario(scn, async (w) => new PureNode(w))
      await checkConverged(o)
    }), { numRuns: 40 })
    await fc.assert(fc.asyncProperty(scenarioArb({ restarts: true, clones: true, bad: true, equivocator: true, maxReplicas: 4, maxSteps: 80 }), async (scn) => {
      await durableRun(scn, async (w) => await ReplicaNode.create(w))
    }), { numRuns: 30 })
  })
})
