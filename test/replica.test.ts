import { describe, expect, it } from 'vitest'
import { joinBody, memoryReplica } from './support/fixtures.js'

describe('Replica', () => {
  it('appends, exchanges by frontier and converges', async () => {
    const a = await memoryReplica(1)
    const b = await memoryReplica(2)
    await a.append('node.join', joinBody('alpha'), 1000)
    await b.append('node.join', joinBody('beta'), 1000)
    await a.append('ip.claim', { addr: '10.1.0.5' }, 1001)
    const toB = a.missingFor(b.frontier())
    expect(toB.length).toBe(2)
    await b.ingest(toB.map((e) => e.envelope))
    await a.ingest(b.missingFor(a.frontier()).map((e) => e.envelope))
    expect(a.missingFor(b.frontier())).toEqual([])
    expect(b.missingFor(a.frontier())).toEqual([])
    expect([...a.states().members.active.keys()].sort()).toEqual([...b.states().members.active.keys()].sort())
    expect(a.states().members.active.size).toBe(2)
    const ev = await b.append('node.leave', {}, 1002)
    expect(ev.fields.lamport).toBe(3)
    expect(ev.fields.deps.length).toBe(1)
  })
})
