import { describe, expect, it } from 'vitest'
import { renderStatus } from '../../src/cli/status.js'
import { NodeStatusSchema, type NodeStatus } from '../../src/adapters/api-types.js'

const A = 'a'.repeat(64)
const B = 'b'.repeat(64)

function doc (members: NodeStatus['members']): NodeStatus {
  return NodeStatusSchema.parse({
    peerId: '12D3KooWtest', author: A, networkId: '0123456789abcdef', version: '0.1.0', hostname: 'alpha', cluster: 'default',
    startedAt: 1_700_000_000_000, uptimeMs: 60_000, listen: [], api: 'http://127.0.0.1:1', events: 10, authors: 3, pending: 0,
    peers: { connected: 1, online: 1 }, self: { role: 'init', roleStable: true }, sync: { rounds: 1, eventsPulled: 3 },
    ...(members !== undefined ? { members } : {})
  })
}

describe('weft status: cluster members', () => {
  it('names the offline members and says they still count toward the majority', () => {
    const text = renderStatus(doc({
      cluster: 'default',
      total: 3,
      online: 1,
      votes: { for: 3, electorate: 3 },
      offline: [{ author: B, hostname: 'beta', role: 'agent', lastSeenMs: 3_600_000 }, { author: 'c'.repeat(64), hostname: 'gamma', role: 'server' }]
    }))
    expect(text).toMatch(/members\s+3 in cluster default, 1 online; 3 of 3 acknowledged the k3s master/)
    expect(text).toMatch(/offline\s+beta \(agent\) bbbbbbbbbbbb, last seen 1h0m ago; still counts toward the majority/)
    expect(text).toMatch(/gamma \(server\) cccccccccccc, never seen by this node/)
  })

  it('an older daemon without the field: no members rows', () => {
    expect(renderStatus(doc(undefined))).not.toMatch(/members/)
  })
})
