import { describe, expect, it } from 'vitest'
import { toHex } from '../../src/log/bytes.js'
import { compareEvents } from '../../src/log/event.js'
import type { ApiClient } from '../../src/cli/api-client.js'
import { snapshotFromDaemon } from '../../src/cli/api-snapshot.js'
import { joinBody, NET } from '../support/fixtures.js'
import { cliReplica, type CliReplica } from './support.js'

async function sync (from: CliReplica, to: CliReplica): Promise<void> {
  await to.ingest(from.missingFor(to.frontier()).map((e) => e.envelope))
}

/** Stands in for the client: each allEnvelopes() call returns the next prepared log. */
function stubClient (passes: Uint8Array[][]): ApiClient & { calls: number } {
  const stub = {
    url: 'unix:/stub.sock',
    calls: 0,
    status: async () => ({ networkId: toHex(NET) }),
    allEnvelopes: async () => passes[Math.min(stub.calls++, passes.length - 1)] as Uint8Array[]
  }
  return stub as unknown as ApiClient & { calls: number }
}

describe('snapshotFromDaemon', () => {
  it('copies the daemon log into a memory replica with every projection folded', async () => {
    const a = await cliReplica(1)
    await a.append('node.join', joinBody('alpha'), 1)
    await a.append('ip.claim', { addr: '10.1.0.1' }, 2)
    const all = [...a.log.events()].sort(compareEvents).map((e) => e.envelope)
    const client = stubClient([all])
    const snap = await snapshotFromDaemon('/nowhere', client)
    expect(client.calls).toBe(1)
    expect(snap.netHex).toBe(toHex(NET))
    expect(snap.replica.log.size).toBe(2)
    expect(snap.replica.states().network.members.active.size).toBe(1)
    expect(await snap.store.count()).toBe(2)
    await snap.close()
    await a.close()
  })

  it('refetches once when an event that arrived between pages leaves others waiting for it', async () => {
    const a = await cliReplica(1)
    const b = await cliReplica(2)
    await a.append('node.join', joinBody('alpha'), 1)
    const late = await b.append('node.join', joinBody('beta'), 1) // lamport 1, reached the daemon late
    await sync(b, a)
    await a.append('ip.claim', { addr: '10.1.0.1' }, 2) // lamport 2, depends on it
    const all = [...a.log.events()].sort(compareEvents).map((e) => e.envelope)
    const firstPass = [...a.log.events()].sort(compareEvents).filter((e) => e.idHex !== late.idHex).map((e) => e.envelope)
    const client = stubClient([firstPass, all])
    const snap = await snapshotFromDaemon('/nowhere', client)
    expect(client.calls).toBe(2)
    expect(snap.replica.log.size).toBe(3)
    expect(snap.replica.log.pendingCount).toBe(0)
    await snap.close()
    await a.close()
    await b.close()
  })

  it('an envelope that does not decode is an error that names the API', async () => {
    await expect(snapshotFromDaemon('/nowhere', stubClient([[new Uint8Array([1, 2, 3])]]))).rejects.toThrow(/the API at unix:\/stub\.sock sent an event that does not decode/)
  })
})
