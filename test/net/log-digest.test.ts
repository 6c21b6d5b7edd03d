import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { frontierDigest, LOG_DIGEST_BYTES } from '../../src/net/log-digest.js'
import type { Frontier } from '../../src/crdt/frontier.js'
import { toHex } from '../../src/log/bytes.js'

const hex32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map(toHex)
const entry = fc.record({ seq: fc.nat({ max: 1_000_000 }), head: hex32, forks: fc.array(hex32, { maxLength: 3 }) })
const rows = fc.uniqueArray(fc.tuple(hex32, entry), { selector: (r) => r[0], maxLength: 8 })
const frontier = (r: Array<[string, { seq: number, head: string, forks: string[] }]>): Frontier => new Map(r)
const eq = (a: Uint8Array, b: Uint8Array): boolean => toHex(a) === toHex(b)

describe('log digest (presence skips sync between equal logs)', () => {
  it('is the same for the same frontier, whatever order it was built in', () => {
    fc.assert(fc.property(rows, (r) => {
      const d = frontierDigest(frontier(r))
      expect(d.byteLength).toBe(LOG_DIGEST_BYTES)
      expect(eq(d, frontierDigest(frontier([...r].reverse().map(([a, e]) => [a, { ...e, forks: [...e.forks].reverse() }]))))).toBe(true)
    }))
  })

  it('differs when any author\'s seq, head or forks differ, or an author is missing', () => {
    fc.assert(fc.property(rows.filter((r) => r.length > 0), fc.nat(), fc.constantFrom('seq', 'head', 'fork', 'drop', 'moveFork'), hex32, (r, i, what, other) => {
      const k = i % r.length
      const [author, e] = r[k]!
      const changed = [...r]
      if (what === 'seq') changed[k] = [author, { ...e, seq: e.seq + 1 }]
      if (what === 'head') changed[k] = [author, { ...e, head: other === e.head ? toHex(new Uint8Array(32)) : other }]
      if (what === 'fork') changed[k] = [author, { ...e, forks: [...e.forks, other] }]
      if (what === 'drop') changed.splice(k, 1)
      // A fork head moved to the next author reads the same bytes without the fork count.
      if (what === 'moveFork') {
        if (e.forks.length === 0 || k + 1 >= r.length) return
        const [a2, e2] = r[k + 1]!
        changed[k] = [author, { ...e, forks: e.forks.slice(0, -1) }]
        changed[k + 1] = [a2, { ...e2, forks: [...e2.forks, e.forks[e.forks.length - 1]!] }]
      }
      expect(eq(frontierDigest(frontier(r)), frontierDigest(frontier(changed)))).toBe(false)
    }))
  })
})
