import { describe, expect, it } from 'vitest'
import { weft, assertBuilt } from '../cli/helpers.js'

describe('weft demo (npm start)', () => {
  it('starts 3 real nodes, prints the state they agree on, and exits when asked', async () => {
    assertBuilt()
    const r = await weft(['demo', '--exit-when-converged', '--json'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout) as { token: string, view: { members: Array<{ hostname: string, address?: string, dnsName?: string, role: string }> } }
    expect(out.token).toMatch(/^weft2/)
    expect(out.view.members.map((m) => m.hostname).sort()).toEqual(['node-1', 'node-2', 'node-3'])
    expect(out.view.members.every((m) => m.address !== undefined && m.dnsName !== undefined)).toBe(true)
    expect(out.view.members.filter((m) => m.role === 'init')).toHaveLength(1)
  }, 90_000)
})
