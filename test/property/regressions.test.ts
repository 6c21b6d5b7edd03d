/**
 * Shrunk counterexamples found by the property suites, kept as named cases. Each one failed
 * before the fix named in its title.
 */
import { describe, expect, it } from 'vitest'
import type { SignedEvent } from '../../src/log/event.js'
import { IDS, chain, envelopes, frontierHex, idSet, joinBody, newLog, syncPair } from '../crdt/helpers.js'
import { PureNode, ReplicaNode, checkConverged, closeAll, runScenario, type Scenario, type SimNode } from './sim.js'

const join = { type: 'node.join' as const, body: joinBody('alpha') }

describe('regressions', () => {
  /**
   * missingFor with a limit livelocked on a fork past shared history: with the remote's head
   * unknown, every shared event was a candidate and the batch took the oldest, which the remote
   * already had. L = X1..X10, R = X1..X9 + Y10: both sides resent X1, X2 forever and neither
   * learnt of the fork. Fixed in MergedLog.missingFor (certain events first, then the newest
   * uncertain ones).
   */
  it('limited anti-entropy over a fork after shared history converges (was a livelock)', () => {
    const K = IDS[0] as typeof IDS[0]
    for (const limit of [1, 2, 5]) {
      const X = chain(K, 10, null, 'x')
      const Y = chain(K, 1, X[8] as SignedEvent, 'yy')
      const L = newLog()
      const R = newLog()
      L.ingest(envelopes(X))
      R.ingest(envelopes([...X.slice(0, 9), ...Y]))
      const first = L.missingFor(R.frontier(), limit)
      expect(first.map((e) => e.idHex)).toContain((X[9] as SignedEvent).idHex)
      expect(syncPair(L, R, { limit, maxRounds: 10 })).toBeLessThanOrEqual(3)
      expect(idSet(L)).toEqual(idSet(R))
      expect(L.size).toBe(11)
      expect(L.freezeSeq(K.authorHex)).toBe(10)
      expect(R.freezeSeq(K.authorHex)).toBe(10)
      expect(frontierHex(L)).toBe(frontierHex(R))
    }
  })

  /**
   * Shrunk by fast-check from "2-7 pure replicas, clones of one key included": five replicas
   * share key 0 (a data dir copied five times), so feed 0 has three branches from seq 1;
   * the final exchange ran in batches of 2. One replica ended without an event. Same cause
   * and fix as above.
   */
  const shrunk: Scenario = {
    replicas: 6,
    writer: [0, 0, 2, 0, 0, 0],
    steps: [
      { k: 'append', r: 0, spec: join },
      { k: 'append', r: 0, spec: join },
      { k: 'append', r: 4, spec: { type: 'route.advertise', body: { cidr: '10.0.0.0/16' } } },
      { k: 'gossip', from: 0, to: 0, seed: 0 },
      { k: 'sync', a: 0, b: 0, limit: 0 },
      { k: 'append', r: 0, spec: join },
      { k: 'gossip', from: 0, to: 0, seed: 0 },
      { k: 'restart', r: 0 },
      { k: 'append', r: 4, spec: { type: 'node.evict', body: { peer: (IDS[0] as typeof IDS[0]).publicKey, reason: '' } } },
      { k: 'append', r: 1, spec: { type: 'role.claim', body: { cluster: 'default', role: 'auto' } } },
      { k: 'append', r: 4, spec: { type: 'service.unexport', body: { cluster: 'default', namespace: 'default', name: 'web' } } },
      { k: 'gossip', from: 0, to: 0, seed: 0 },
      { k: 'gossip', from: 0, to: 0, seed: 0 }
    ],
    finalLimit: 2,
    equivocator: []
  }

  for (const [name, make] of [['pure', async (w: number): Promise<SimNode> => new PureNode(w)], ['replica', async (w: number): Promise<SimNode> => await ReplicaNode.create(w)]] as const) {
    it(`three branches of one cloned key, exchanged in batches of 2 (${name})`, async () => {
      const o = await runScenario(shrunk, make)
      try {
        await checkConverged(o)
        expect(o.truth.size).toBe(7)
        expect(o.nodes[0]?.log.freezeSeq((IDS[0] as typeof IDS[0]).authorHex)).toBe(1)
      } finally {
        await closeAll(o)
      }
    })
  }
})
