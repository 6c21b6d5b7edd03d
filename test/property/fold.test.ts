import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { FoldEngine } from '../../src/crdt/fold.js'
import { compareEvents, type SignedEvent } from '../../src/log/event.js'
import { IDS, foldReducers, joinBody, mk, stateJson } from '../crdt/helpers.js'

/**
 * Item 7: the fold engine's incremental path (appends, inserts earlier in the order, removals,
 * checkpoints and their thinning, statesAfter) always equals a fresh fold of the same events.
 * The events are signed once; the engine does not validate, so any lamport is fine.
 */
const POOL: SignedEvent[] = []
for (let i = 0; i < 80; i++) {
  const who = IDS[i % 5] as typeof IDS[0]
  const lamport = 1 + ((i * 37) % 50)
  const target = IDS[(i * 7) % 5] as typeof IDS[0]
  const k = i % 7
  POOL.push(
    k < 3
      ? mk(who, { lamport, type: 'node.join', body: joinBody(`h${i}`, k === 0 ? 'default' : 'edge', k === 2 ? 'master' : 'auto'), time: i })
      : k === 3
        ? mk(who, { lamport, type: 'node.leave', body: {}, time: i })
        : k === 4
          ? mk(who, { lamport, type: 'role.claim', body: { cluster: 'edge', role: 'worker' }, time: i })
          : mk(who, { lamport, type: 'node.evict', body: { peer: target.publicKey, reason: 'x' }, time: i })
  )
}

type Op =
  | { k: 'insert', picks: number[] }
  | { k: 'remove', author: number, above: number }
  | { k: 'at', n: number }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ k: fc.constant('insert' as const), picks: fc.array(fc.nat(POOL.length - 1), { minLength: 1, maxLength: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('remove' as const), author: fc.nat(4), above: fc.nat(50) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('at' as const), n: fc.nat(POOL.length) }) }
)

function fresh (evs: readonly SignedEvent[]): string {
  const f = new FoldEngine(foldReducers)
  f.insert(evs)
  return stateJson(f.states())
}

describe('FoldEngine (property)', () => {
  it('any sequence of inserts, removals and statesAfter equals a fresh fold', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 6 }), fc.array(opArb, { minLength: 1, maxLength: 30, size: 'max' }),
      (every, maxCheckpoints, ops) => {
        const f = new FoldEngine(foldReducers, { checkpointEvery: every, maxCheckpoints })
        const inView = new Map<string, SignedEvent>()
        for (const op of ops) {
          if (op.k === 'insert') {
            const batch = [...new Set(op.picks)].map((i) => POOL[i] as SignedEvent).filter((e) => !inView.has(e.idHex))
            f.insert(batch)
            for (const e of batch) inView.set(e.idHex, e)
          } else if (op.k === 'remove') {
            const who = (IDS[op.author] as typeof IDS[0]).authorHex
            const drop = (e: SignedEvent): boolean => e.authorHex === who && e.fields.lamport > op.above
            const expected = [...inView.values()].filter(drop).length
            expect(f.remove(drop)).toBe(expected)
            for (const [id, e] of inView) if (drop(e)) inView.delete(id)
          } else {
            const sorted = [...inView.values()].sort(compareEvents)
            expect(stateJson(f.statesAfter(op.n))).toBe(fresh(sorted.slice(0, op.n)))
          }
          expect(f.events().map((e) => e.idHex)).toEqual([...inView.values()].sort(compareEvents).map((e) => e.idHex))
          expect(stateJson(f.states())).toBe(fresh([...inView.values()]))
          expect(f.stats.checkpoints).toBeLessThanOrEqual(maxCheckpoints)
        }
      }
    ), { numRuns: 150 })
  })
})
