import { describe, expect, it } from 'vitest'
import { registerRenderer, renderStates, statesJson } from '../../src/cli/render-state.js'
import { stableStringify, table } from '../../src/cli/output.js'

describe('state rendering', () => {
  it('renders a projection without a renderer as JSON, Maps as objects and bytes as hex', () => {
    const states = { routes: { byCidr: new Map([['10.2.0.0/16', { via: new Uint8Array([0xab, 0xcd]) }]]), seen: new Set(['x']) } }
    const text = renderStates(states)
    expect(text.startsWith('routes:\n')).toBe(true)
    expect(JSON.parse(text.slice('routes:\n'.length))).toEqual({ byCidr: { '10.2.0.0/16': { via: 'abcd' } }, seen: ['x'] })
    expect(statesJson(states)).toEqual({ routes: { byCidr: { '10.2.0.0/16': { via: 'abcd' } }, seen: ['x'] } })
  })

  it('uses a registered renderer for its key, and the members renderer for members', () => {
    registerRenderer<{ n: number }>('counter', { title: 'counter', human: (s) => `count is ${s.n}` })
    const members = { active: new Map(), departed: new Map() }
    expect(renderStates({ counter: { n: 3 }, members })).toBe('counter:\ncount is 3\n\nmembers:\n(no members)')
  })

  it('stableStringify ignores key and Map insertion order', () => {
    const a = { m: new Map([['x', 1], ['y', 2]]), z: 1, a: 2 }
    const b = { a: 2, z: 1, m: new Map([['y', 2], ['x', 1]]) }
    expect(stableStringify(a)).toBe(stableStringify(b))
    expect(stableStringify(a)).not.toBe(stableStringify({ ...b, a: 3 }))
  })

  it('table pads columns and trims the last one', () => {
    expect(table(['A', 'LONG'], [['xyz', 'v'], ['q', '']])).toBe('A    LONG\nxyz  v\nq')
  })
})
