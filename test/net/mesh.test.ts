import { afterEach, describe, expect, it } from 'vitest'
import { joinBody, TEST_TOKEN } from '../support/fixtures.js'
import { rendezvousKeys } from '../../src/log/token.js'
import { rendezvousCid } from '../../src/net/rendezvous.js'
import { startNode, stopAll, waitFor, type TestNode } from './support.js'

describe('mesh on loopback', () => {
  let nodes: TestNode[] = []
  afterEach(async () => { await stopAll(nodes); nodes = [] })

  it('pushes an appended event to every node and they agree', async () => {
    const a = await startNode(0, [])
    nodes.push(a)
    for (let i = 1; i < 3; i++) nodes.push(await startNode(i, [a.addr]))
    await waitFor(() => nodes.every((t) => t.mesh.host.getPeers().length >= 1), 'connections')
    for (const t of nodes) {
      const ev = await t.replica.append('node.join', joinBody(`n${t.n}`), Date.now())
      await t.mesh.publish([ev])
    }
    await waitFor(() => nodes.every((t) => t.replica.log.size === 3), 'all events everywhere')
    const f = nodes.map((t) => [...t.replica.frontier()].sort().join())
    expect(new Set(f).size).toBe(1)
  })
})

describe('DHT rendezvous', () => {
  let nodes: TestNode[] = []
  afterEach(async () => { await stopAll(nodes); nodes = [] })

  it('a node announces itself under the current rendezvous key and others find it there', async () => {
    const a = await startNode(0, [], { rendezvousIntervalMs: 3_600_000 })
    const b = await startNode(1, [a.addr], { rendezvousIntervalMs: 3_600_000 })
    const c = await startNode(2, [a.addr], { rendezvousIntervalMs: 3_600_000 })
    nodes.push(a, b, c)
    await waitFor(() => b.mesh.host.getPeers().length >= 1 && c.mesh.host.getPeers().length >= 1, 'bootstrap connections')
    const cid = await rendezvousCid(rendezvousKeys(TEST_TOKEN, Date.now()).current)
    const providers = async (): Promise<string[]> => {
      const out: string[] = []
      for await (const p of b.mesh.host.contentRouting.findProviders(cid, { signal: AbortSignal.timeout(5_000) })) out.push(p.id.toString())
      return out
    }
    expect(await providers().catch((): string[] => [])).not.toContain(c.mesh.host.peerId.toString())
    await c.mesh.rendezvous?.round()
    await waitFor(async () => (await providers().catch((): string[] => [])).includes(c.mesh.host.peerId.toString()), 'c listed as a provider of the rendezvous key', 20_000)
  })
})
