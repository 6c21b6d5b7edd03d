import { describe, expect, it } from 'vitest'
import { RefusalLog } from '../../src/net/refusal-log.js'

describe('refused transport handshakes in the log', () => {
  it('say a token is missing only when the proof failed; a timeout or a broken-off handshake says so', () => {
    const lines: Array<{ reason: string, msg: string }> = []
    const log = { info: (o: { reason: string }, msg: string) => { lines.push({ reason: o.reason, msg }) }, debug: () => {}, warn: () => {}, error: () => {} }
    const r = new RefusalLog({ log: log as never, now: () => 0 })
    r.refused('10.0.0.1', 'bad-proof')
    r.refused('10.0.0.2', 'timeout')
    r.refused('10.0.0.3', 'handshake-io')
    expect(lines.map((l) => l.reason)).toEqual(['bad-proof', 'timeout', 'handshake-io'])
    expect(lines[0]?.msg).toMatch(/does not hold this network's token/)
    for (const l of lines.slice(1)) {
      expect(l.msg).not.toMatch(/token/)
      expect(l.msg).toMatch(/did not complete/)
    }
  })
})
