import { afterEach, describe, expect, it } from 'vitest'
import { joinBody } from '../support/fixtures.js'
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
