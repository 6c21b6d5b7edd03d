import { describe, expect, it } from 'vitest'
import { decodeForkProof, describeForkProof, encodeForkProof, makeForkProof } from '../../src/crdt/fork-proof.js'
import { canonicalEncode } from '../../src/log/cbor.js'
import { decodeFrontier, encodeFrontier } from '../../src/crdt/frontier.js'
import type { SignedEvent } from '../../src/log/event.js'
import { networkIdBytes } from '../../src/log/token.js'
import { IDS, NET, chain, envelopes, freshFold, frontierHex, idSet, joinBody, mk, newLog, rng, shuffle, stateJson, syncPair, verifier } from './helpers.js'

const [A, B, E] = IDS as [typeof IDS[0], typeof IDS[0], typeof IDS[0]]

/** E's feed: a shared base of `base` events, then two branches of `lenA` and `lenB` events. */
function forkedFeed (base: number, lenA: number, lenB: number): { base: SignedEvent[], a: SignedEvent[], b: SignedEvent[] } {
  const b0 = chain(E, base)
  const tip = b0[b0.length - 1] ?? null
  return { base: b0, a: chain(E, lenA, tip, 'a'), b: chain(E, lenB, tip, 'bb') }
}

describe('fork proofs', () => {
  it('two events with one (author, seq) yield a ForkProof and freeze the author there', () => {
    const { base, a, b } = forkedFeed(2, 3, 2)
    const log = newLog()
    expect(log.ingest(envelopes([...base, ...a])).forks).toEqual([])
    const res = log.ingest(envelopes(b))
    expect(res.added).toHaveLength(2)
    expect(res.forks).toHaveLength(1)
    const p = res.forks[0]!
    expect(p.seq).toBe(3)
    expect(p.authorHex).toBe(E.authorHex)
    expect(p.a.idHex < p.b.idHex).toBe(true)
    expect([p.a.idHex, p.b.idHex].sort()).toEqual([a[0]!.idHex, b[0]!.idHex].sort())
    expect(log.freezeSeq(E.authorHex)).toBe(3)
    expect(log.forks().get(E.authorHex)).toBe(p)
    // Both branches are kept; the frontier shows the second tip as a fork head.
    expect(log.size).toBe(7)
    const entry = log.frontier().get(E.authorHex)!
    expect(entry.seq).toBe(5)
    expect(entry.head).toBe(a[2]!.idHex)
    expect(entry.forks).toEqual([b[1]!.idHex])
    expect(describeForkProof(p)).toContain('seq 3')
  })

  it('encodes and decodes a fork proof, and refuses anything that is not one', () => {
    const { a, b, base } = forkedFeed(1, 1, 1)
    const p = makeForkProof(b[0]!, a[0]!)
    const q = decodeForkProof(encodeForkProof(p), NET, verifier)
    expect([q.a.idHex, q.b.idHex, q.seq, q.authorHex]).toEqual([p.a.idHex, p.b.idHex, p.seq, p.authorHex])
    expect(encodeForkProof(makeForkProof(a[0]!, b[0]!))).toEqual(encodeForkProof(p))

    const code = (fn: () => unknown): string | undefined => {
      try { fn() } catch (err) { return (err as { code?: string }).code }
      return undefined
    }
    expect(code(() => makeForkProof(a[0]!, a[0]!))).toBe('ERR_BAD_FORK_PROOF')
    expect(code(() => makeForkProof(a[0]!, base[0]!))).toBe('ERR_BAD_FORK_PROOF') // different seq
    expect(code(() => makeForkProof(a[0]!, mk(B, { seq: 2, prev: mk(B, {}) })))).toBe('ERR_BAD_FORK_PROOF') // different author
    expect(code(() => decodeForkProof(canonicalEncode([a[0]!.envelope]), NET, verifier))).toBe('ERR_BAD_FORK_PROOF')
    expect(code(() => decodeForkProof(canonicalEncode([a[0]!.envelope, a[0]!.envelope]), NET, verifier))).toBe('ERR_BAD_FORK_PROOF')
    // A forged half does not make a proof.
    const forged = new Uint8Array(b[0]!.envelope)
    forged[forged.length - 1] = (forged[forged.length - 1] ?? 0) ^ 1
    expect(code(() => decodeForkProof(canonicalEncode([a[0]!.envelope, forged]), NET, verifier))).toBe('ERR_BAD_SIGNATURE')
    const otherNet = networkIdBytes({ secret: new Uint8Array(32).fill(9) })
    expect(code(() => decodeForkProof(encodeForkProof(p), otherNet, verifier))).toBe('ERR_WRONG_NETWORK')
  })

  it('the freeze point is the lowest fork seq, whichever fork is seen first', () => {
    // Branch a forks from b at seq 3; branch c forks from a at seq 5.
    const { base, a, b } = forkedFeed(2, 4, 2)
    const c = chain(E, 2, a[1]!, 'ccc')
    const all = [...base, ...a, ...b, ...c]
    const results = new Set<string>()
    for (const order of [[...base, ...a, ...c, ...b], [...base, ...a, ...b, ...c], ...[1, 2, 3, 4].map((s) => shuffle(all, rng(s)))]) {
      const log = newLog()
      const seen = order.flatMap((e) => log.ingest([e.envelope]).forks)
      expect(log.freezeSeq(E.authorHex)).toBe(3)
      expect(seen.length).toBeGreaterThanOrEqual(1)
      expect(seen[seen.length - 1]!.seq).toBe(3)
      const p = log.forks().get(E.authorHex)!
      results.add(`${p.seq}:${p.a.idHex}:${p.b.idHex}:${frontierHex(log)}`)
    }
    expect(results.size).toBe(1)
  })

  it('three events at one seq: the proof is the two lowest ids, in any arrival order', () => {
    const base = chain(E, 1)
    const twins = [chain(E, 1, base[0]!, 'x')[0]!, chain(E, 1, base[0]!, 'yy')[0]!, chain(E, 1, base[0]!, 'zzz')[0]!]
    const lowest = twins.map((t) => t.idHex).sort().slice(0, 2)
    for (const perm of [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]) {
      const log = newLog()
      log.ingest(envelopes(base))
      for (const i of perm) log.ingest([twins[i]!.envelope])
      const p = log.forks().get(E.authorHex)!
      expect([p.a.idHex, p.b.idHex]).toEqual(lowest)
    }
  })

  it('a frozen author\'s events at and after the fork point leave the fold', () => {
    const j1 = mk(E, { type: 'node.join', body: joinBody('eve') })
    const leave = mk(E, { prev: j1, type: 'node.leave', body: { reason: 'branch a' } })
    const claim = mk(E, { prev: j1, type: 'role.claim', body: { cluster: 'default', role: 'master' } })
    const afterClaim = mk(E, { prev: claim, type: 'node.join', body: joinBody('eve-renamed') })
    const a1 = mk(A, { deps: [j1], type: 'node.join', body: joinBody('alice') })
    const log = newLog()
    log.ingest(envelopes([j1, claim, afterClaim, a1]))
    expect(freshFold(log).members.active.get(E.authorHex)?.hostname).toBe('eve-renamed')
    log.ingest([leave.envelope])
    expect(log.freezeSeq(E.authorHex)).toBe(2)
    for (const e of [claim, afterClaim, leave]) expect(log.isVisible(e)).toBe(false)
    expect(log.isVisible(j1)).toBe(true)
    expect(log.isVisible(a1)).toBe(true)
    const s = freshFold(log)
    expect(s.members.active.get(E.authorHex)).toMatchObject({ hostname: 'eve', role: 'auto' })
    expect(s.members.departed.size).toBe(0)
    expect(s.trace.seen).toHaveLength(2)
    // A fork at seq 1 takes the author out of the fold entirely.
    const twin = mk(E, { type: 'node.join', body: joinBody('evil-twin') })
    log.ingest([twin.envelope])
    expect(log.freezeSeq(E.authorHex)).toBe(1)
    expect([...freshFold(log).members.active.keys()]).toEqual([A.authorHex])
  })

  it('missingFor exchanges a forked feed so both replicas end with both branches', () => {
    for (const [base, lenA, lenB, forkWindow] of [[2, 3, 2, 64], [1, 5, 1, 64], [3, 90, 80, 64], [5, 30, 40, 4], [0, 3, 3, 64]] as const) {
      const { base: b0, a, b } = forkedFeed(base, lenA, lenB)
      const r1 = newLog()
      const r2 = newLog()
      r1.ingest(envelopes([...b0, ...a]))
      r2.ingest(envelopes([...b0, ...b]))
      // Frontier exchange only first, as anti-entropy does; deeper history by wantedParents.
      let rounds = 0
      for (;;) {
        let moved = 0
        for (const [from, to] of [[r1, r2], [r2, r1]] as const) {
          const res = to.ingest(envelopes(from.missingFor(to.frontier(), Number.POSITIVE_INFINITY, forkWindow)))
          moved += res.added.length + res.parked
          const want = to.wantedParents()
          if (want.length > 0) {
            const pulled = to.ingest(envelopes(from.getWithAncestors(want, 8)))
            moved += pulled.added.length + pulled.parked
          }
        }
        if (moved === 0) break
        expect(++rounds).toBeLessThan(40)
      }
      const all = [...b0, ...a, ...b].map((e) => e.idHex).sort()
      expect(idSet(r1)).toEqual(all)
      expect(idSet(r2)).toEqual(all)
      expect(r1.pendingCount + r2.pendingCount).toBe(0)
      expect(frontierHex(r1)).toBe(frontierHex(r2))
      expect(r1.freezeSeq(E.authorHex)).toBe(base + 1)
      expect(r2.freezeSeq(E.authorHex)).toBe(base + 1)
      const p1 = r1.forks().get(E.authorHex)!
      const p2 = r2.forks().get(E.authorHex)!
      expect([p1.a.idHex, p1.b.idHex]).toEqual([p2.a.idHex, p2.b.idHex])
      expect(stateJson(freshFold(r1))).toBe(stateJson(freshFold(r2)))
      // In sync now: nothing to send either way.
      expect(r1.missingFor(r2.frontier())).toEqual([])
      expect(r2.missingFor(r1.frontier())).toEqual([])
    }
  })

  it('a third replica that saw neither branch learns both through syncPair', () => {
    const { base, a, b } = forkedFeed(4, 10, 12)
    const r1 = newLog()
    const r2 = newLog()
    const r3 = newLog()
    r1.ingest(envelopes([...base, ...a]))
    r2.ingest(envelopes([...base, ...b]))
    r3.ingest(envelopes(base.slice(0, 2)))
    syncPair(r3, r1)
    syncPair(r3, r2)
    syncPair(r1, r3)
    for (const r of [r1, r2, r3]) expect(r.size).toBe(26)
    for (const r of [r1, r2, r3]) expect(r.freezeSeq(E.authorHex)).toBe(5)
    expect(new Set([r1, r2, r3].map(frontierHex)).size).toBe(1)
  })

  it('an author with more fork heads than a frontier may list still encodes, decodes and converges', () => {
    // 70 different seq-1 events by one key: 70 tips, more than the 64 fork heads a frontier carries.
    const twins = Array.from({ length: 70 }, (_, i) => mk(E, { body: { addr: `10.7.${Math.floor(i / 200)}.${i % 200}` } }))
    const tail = chain(E, 3, twins[0]!, 'tail')
    const r1 = newLog()
    const r2 = newLog()
    r1.ingest(envelopes([...twins.slice(0, 45), ...tail]))
    r2.ingest(envelopes(twins.slice(30)))
    const wire = (l: typeof r1): ReturnType<typeof decodeFrontier> => decodeFrontier(encodeFrontier(l.frontier()))
    expect(() => wire(r1)).not.toThrow()
    expect(wire(r1).get(E.authorHex)?.forks).toHaveLength(44)
    for (let round = 0; round < 10; round++) {
      r2.ingest(envelopes(r1.missingFor(wire(r2))))
      r1.ingest(envelopes(r2.missingFor(wire(r1))))
    }
    expect(wire(r1).get(E.authorHex)?.forks).toHaveLength(64)
    expect(idSet(r1)).toHaveLength(73)
    expect(idSet(r2)).toEqual(idSet(r1))
    expect(r1.freezeSeq(E.authorHex)).toBe(1)
    expect(r2.forks().get(E.authorHex)?.a.idHex).toBe(r1.forks().get(E.authorHex)?.a.idHex)
  })
})
