import { describe, expect, it } from 'vitest'
import { Replica } from '../../src/adapters/replica.js'
import type { EventDb } from '../../src/log/store.js'
import type { SignedEvent } from '../../src/log/event.js'
import { members } from '../../src/projections/members.js'
import { NET, identity, joinBody, memoryDb } from '../support/fixtures.js'
import { chain, idSet } from '../crdt/helpers.js'

/** A memory-level database whose next batch write fails when asked to (a full or broken disk). */
function flakyDb (): { db: EventDb, failNext: () => void, writes: () => number } {
  const db = memoryDb()
  const real = db.batch.bind(db) as (...args: unknown[]) => Promise<void>
  let fail = false
  let writes = 0
  ;(db as unknown as { batch: (...args: unknown[]) => Promise<void> }).batch = async (...args: unknown[]) => {
    if (fail) {
      fail = false
      throw new Error('No space left on device')
    }
    writes++
    return await real(...args)
  }
  return { db, failNext: () => { fail = true }, writes: () => writes }
}

const open = async (db: EventDb): Promise<Replica<{ members: typeof members }>> =>
  await Replica.open({ db, net: NET, reducers: { members }, signer: identity(0), sync: false })

/**
 * The other half of item 5: an event is reported stored only once its batch is on disk. When
 * the write fails the call rejects, memory is rebuilt from disk (so nothing unstored is
 * visible, folded, announced or built upon), and the replica keeps working.
 */
describe('failed writes are never reported', () => {
  it('append: rejects with ERR_STORE, leaves no trace, and the feed continues', async () => {
    const { db, failNext } = flakyDb()
    const r = await open(db)
    const seen: string[] = []
    r.onChange((added) => { for (const e of added) seen.push(e.idHex) })
    const first = await r.append('node.join', joinBody('alpha'), 1)
    const before = { ids: idSet(r.log), members: [...r.states().members.active.keys()] }

    failNext()
    await expect(r.append('node.leave', { reason: 'never stored' }, 2)).rejects.toMatchObject({ code: 'ERR_STORE' })
    expect(idSet(r.log)).toEqual(before.ids)
    expect([...r.states().members.active.keys()]).toEqual(before.members)
    expect(r.frontier().get(first.authorHex)?.head).toBe(first.idHex)
    expect(seen).toEqual([first.idHex])

    const next = await r.append('ip.claim', { addr: '10.0.0.1' }, 3)
    expect(next.fields.seq).toBe(2)
    expect(next.fields.prev).toEqual(first.id)
    expect(seen).toEqual([first.idHex, next.idHex])
    // And what is on disk agrees after a restart.
    await r.close()
    await db.open()
    const again = await open(db)
    expect(idSet(again.log)).toEqual([first.idHex, next.idHex].sort())
    await again.close()
  })

  it('ingest: rejects with ERR_STORE, stores nothing of the batch, and a retry succeeds', async () => {
    const { db, failNext } = flakyDb()
    const r = await open(db)
    const feed = chain(identity(3), 6)
    await r.ingest(feed.slice(0, 2).map((e) => e.envelope))
    // A parked event (its parent is missing) is also rebuilt away: it was never stored either.
    await r.ingest([(feed[5] as SignedEvent).envelope])
    expect(r.log.pendingCount).toBe(1)

    failNext()
    await expect(r.ingest(feed.slice(2, 4).map((e) => e.envelope))).rejects.toMatchObject({ code: 'ERR_STORE' })
    expect(idSet(r.log)).toEqual(feed.slice(0, 2).map((e) => e.idHex).sort())
    expect(await r.store.count()).toBe(2)

    const res = await r.ingest(feed.map((e) => e.envelope))
    expect(res.rejected).toEqual([])
    expect(idSet(r.log)).toEqual(feed.map((e) => e.idHex).sort())
    expect(await r.store.count()).toBe(6)
    await r.close()
  })

  it('a closed replica refuses work', async () => {
    const r = await open(memoryDb())
    await r.close()
    await expect(r.append('node.leave', {}, 1)).rejects.toMatchObject({ code: 'ERR_STORE' })
    await expect(r.ingest([])).rejects.toMatchObject({ code: 'ERR_STORE' })
  })
})
