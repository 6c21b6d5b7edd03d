import { describe, expect, it } from 'vitest'
import type * as AM from '@automerge/automerge'
import { automerge } from '../../src/projections/automerge.js'
import { FoldEngine } from '../../src/crdt/fold.js'
import { networkReducer } from '../../src/projections/network.js'
import { DEFAULT_SETTINGS, applySettings, cloneSettings, initialSettings, makeSettingsChange, parseSettingValue, settingSchemas, type SettingsState } from '../../src/projections/settings.js'
import { LogBuilder, foldNetwork, join, ordered } from './support.js'
import type { SignedEvent } from '../../src/log/event.js'

// The projection's own instance: a document of another copy of the library cannot be read by it.
const A = automerge()

/** The document's content; a state that never applied a change has no document. */
function js (doc: AM.Doc<Record<string, unknown>> | null): Record<string, unknown> {
  return doc === null ? {} : A.toJS(doc)
}

/** An Automerge change made by hand (any value, any actor), on top of `s`'s document. */
function rawChange (s: SettingsState, actor: string, fn: (d: Record<string, unknown>) => void): Uint8Array {
  const doc = A.change(s.doc === null ? A.init<Record<string, unknown>>({ actor }) : A.clone(s.doc, { actor }), fn)
  return A.getLastLocalChange(doc) as Uint8Array
}

describe('settings', () => {
  it('starts from the defaults', () => {
    const s = foldNetwork([]).settings
    expect(s.values).toEqual(DEFAULT_SETTINGS)
    expect(s.origin).toEqual({})
    expect(s.problems).toEqual([])
  })

  it('applies a change made with makeSettingsChange and carried by a signed settings.change event', () => {
    const b = new LogBuilder(2)
    b.append(0, 'node.join', join('a'))
    const ev = b.setting(0, 'minNodes', 3)
    const ev2 = b.setting(0, 'zone', 'corp.example')
    const s = foldNetwork(b.events).settings
    expect(s.values.minNodes).toBe(3)
    expect(s.values.zone).toBe('corp.example')
    expect(s.origin.minNodes).toEqual({ author: b.hex(0), event: ev.idHex, lamport: ev.fields.lamport })
    expect(s.origin.zone?.event).toBe(ev2.idHex)
    expect(s.origin.mtu).toBeUndefined()
    expect(s.problems).toEqual([])
    // The projection's document holds exactly what the change said.
    expect(js(s.doc)).toEqual({ minNodes: 3, zone: 'corp.example' })
  })

  it('accepts values given as command-line text', () => {
    const b = new LogBuilder(1)
    b.setting(0, 'dynamicRoles', 'true')
    b.setting(0, 'overlayCidr6', 'fd00:1::/64')
    b.setting(0, 'serverCount', '3')
    const v = foldNetwork(b.events).settings.values
    expect(v.dynamicRoles).toBe(true)
    expect(v.overlayCidr6).toBe('fd00:1::/64')
    expect(v.serverCount).toBe(3)
    b.setting(0, 'overlayCidr6', null)
    expect(foldNetwork(b.events).settings.values.overlayCidr6).toBeNull()
  })

  it('makeSettingsChange refuses invalid values and unknown keys before anything is signed', () => {
    const s = initialSettings()
    expect(() => makeSettingsChange(s, 'aa'.repeat(32), 'minNodes', 0)).toThrow(/invalid value for minNodes/)
    expect(() => makeSettingsChange(s, 'aa'.repeat(32), 'colour', 'blue')).toThrow(/unknown setting "colour"/)
    expect(() => makeSettingsChange(s, 'aa'.repeat(32), 'overlayCidr', '10.1.2.3/16')).toThrow(/overlayCidr/)
  })

  it('makeSettingsChange refuses a change that would not change anything', () => {
    const b = new LogBuilder(1)
    b.setting(0, 'minNodes', 3)
    expect(() => b.setting(0, 'minNodes', 3)).toThrow(/already has that value/)
    expect(() => makeSettingsChange(initialSettings(), b.hex(0), 'minNodes', 1)).not.toThrow() // default, but not in the document
  })

  it('ignores an invalid value with a reason and keeps the previous one', () => {
    const b = new LogBuilder(1)
    b.setting(0, 'minNodes', 2)
    const bad = rawChange(b.stateOf(0).settings, b.hex(0), (d) => { d.minNodes = 0; d.mtu = 100_000; d.overlayCidr = '10.1.2.3/16'; d.zone = 'Not A Zone!' })
    const ev = b.append(0, 'settings.change', { change: bad })
    const s = foldNetwork(b.events).settings
    expect(s.values.minNodes).toBe(2)
    expect(s.values.mtu).toBe(DEFAULT_SETTINGS.mtu)
    expect(s.values.overlayCidr).toBe(DEFAULT_SETTINGS.overlayCidr)
    expect(s.values.zone).toBe(DEFAULT_SETTINGS.zone)
    const keys = s.problems.filter((p) => p.event === ev.idHex).map((p) => p.key).sort()
    expect(keys).toEqual(['minNodes', 'mtu', 'overlayCidr', 'zone'])
    expect(s.problems.find((p) => p.key === 'minNodes')?.reason).toMatch(/invalid value for minNodes.*keeping 2/)
    // A later valid change of that key is taken.
    b.setting(0, 'minNodes', 4)
    expect(foldNetwork(b.events).settings.values.minNodes).toBe(4)
  })

  it('reports an unknown key and ignores it', () => {
    const b = new LogBuilder(1)
    const ev = b.append(0, 'settings.change', { change: rawChange(initialSettings(), b.hex(0), (d) => { d.colour = 'blue'; d.minNodes = 2 }) })
    const s = foldNetwork(b.events).settings
    expect(s.values.minNodes).toBe(2)
    expect(s.values).not.toHaveProperty('colour')
    expect(s.problems).toEqual([{ event: ev.idHex, key: 'colour', reason: 'unknown setting "colour" is ignored' }])
  })

  it('refuses a change whose Automerge actor is not the event author', () => {
    const b = new LogBuilder(2)
    // Node 1 signs a change made under node 0's actor id.
    const forged = rawChange(initialSettings(), b.hex(0), (d) => { d.minNodes = 7 })
    const ev = b.append(1, 'settings.change', { change: forged })
    const s = foldNetwork(b.events).settings
    expect(s.values.minNodes).toBe(1)
    expect(s.doc).toBeNull() // nothing applied: not even an empty document (Automerge need not load)
    expect(s.problems).toEqual([{ event: ev.idHex, key: undefined, reason: 'the Automerge actor of the change is not the event author' }])
    // Node 0's own later change is not blocked by the forgery (it was never applied).
    b.setting(0, 'minNodes', 2, { seesAll: true })
    expect(foldNetwork(b.events).settings.values.minNodes).toBe(2)
  })

  it('reports bytes that are not an Automerge change', () => {
    const b = new LogBuilder(1)
    b.append(0, 'settings.change', { change: new Uint8Array([1, 2, 3]) })
    const s = foldNetwork(b.events).settings
    expect(s.values).toEqual(DEFAULT_SETTINGS)
    expect(s.problems[0]?.reason).toMatch(/not an Automerge change/)
  })

  it('reports a change that depends on Automerge changes the log does not hold', () => {
    const b = new LogBuilder(1)
    // Two local changes; only the second travels in the log.
    const doc1 = A.change(A.init<Record<string, unknown>>({ actor: b.hex(0) }), (d) => { d.minNodes = 2 })
    const doc2 = A.change(doc1, (d) => { d.mtu = 1400 })
    const ev = b.append(0, 'settings.change', { change: A.getLastLocalChange(doc2) as Uint8Array })
    const s = foldNetwork(b.events).settings
    expect(s.values).toEqual(DEFAULT_SETTINGS)
    expect(s.problems.map((p) => p.event)).toEqual([ev.idHex])
    expect(s.problems[0]?.reason).toMatch(/missing|not in the log/)
  })

  it('deleting a key restores its default', () => {
    const b = new LogBuilder(1)
    b.setting(0, 'mtu', 1300)
    const del = rawChange(b.stateOf(0).settings, b.hex(0), (d) => { delete d.mtu })
    const ev = b.append(0, 'settings.change', { change: del })
    const s = foldNetwork(b.events).settings
    expect(s.values.mtu).toBe(DEFAULT_SETTINGS.mtu)
    expect(s.origin.mtu?.event).toBe(ev.idHex)
  })

  it('replaying the same change bytes in a second event changes nothing', () => {
    const b = new LogBuilder(1)
    const ev = b.setting(0, 'mtu', 1300)
    b.append(0, 'settings.change', { change: ev.fields.type === 'settings.change' ? ev.fields.body.change : new Uint8Array() })
    const s = foldNetwork(b.events).settings
    expect(s.values.mtu).toBe(1300)
    expect(s.origin.mtu?.event).toBe(ev.idHex)
    expect(s.problems).toEqual([])
  })

  describe('two nodes editing at once converge', () => {
    /**
     * Both nodes make their change on the same base (neither has seen the other's); the replicas
     * receive the two events in either order. `extra` gives node 1 earlier events so the total
     * order puts it second or first.
     */
    function scenario (extra: number): { events: SignedEvent[], a: SignedEvent, b: SignedEvent } {
      const b = new LogBuilder(2)
      b.append(0, 'node.join', join('n0'))
      b.append(1, 'node.join', join('n1'), { seesAll: true })
      b.sync(0, 1)
      for (let i = 0; i < extra; i++) b.append(1, 'route.advertise', { cidr: `192.168.${i}.0/24` })
      const ea = b.setting(0, 'minNodes', 3)
      b.setting(0, 'zone', 'a.example')
      const eb = b.setting(1, 'minNodes', 5)
      b.setting(1, 'mtu', 1300)
      expect(b.hasSeen(0, eb) || b.hasSeen(1, ea)).toBe(false)
      return { events: b.events, a: ea, b: eb }
    }

    for (const extra of [0, 3]) {
      it(`same values on every replica whatever the arrival order (node 1 ${extra === 0 ? 'without' : 'with'} a head start)`, () => {
        const { events, a, b } = scenario(extra)
        const fromA = events.filter((e) => e.authorHex === a.authorHex)
        const fromB = events.filter((e) => e.authorHex === b.authorHex)
        const r1 = new FoldEngine({ network: networkReducer() }, { checkpointEvery: 2 })
        r1.insert(fromA); r1.insert(fromB)
        const r2 = new FoldEngine({ network: networkReducer() }, { checkpointEvery: 2 })
        r2.insert(fromB); r2.insert(fromA)
        const r3 = new FoldEngine({ network: networkReducer() })
        for (const e of ordered(events).reverse()) r3.insert([e])
        const s1 = r1.states().network.settings
        const s2 = r2.states().network.settings
        const s3 = r3.states().network.settings
        expect(s1.values).toEqual(s2.values)
        expect(s1.values).toEqual(s3.values)
        expect(s1.origin).toEqual(s2.origin)
        expect(js(s1.doc)).toEqual(js(s2.doc))
        // Both edits of different keys survive; the clashing key follows Automerge's rule.
        expect(s1.values.zone).toBe('a.example')
        expect(s1.values.mtu).toBe(1300)
        expect([3, 5]).toContain(s1.values.minNodes)
        expect(s1.values.minNodes).toBe((js(s1.doc) as { minNodes: number }).minNodes)
        // Automerge's own merge of the two documents agrees.
        const d0 = A.applyChanges(A.init<Record<string, unknown>>(), fromA.filter((e) => e.fields.type === 'settings.change').map((e) => (e.fields.body as { change: Uint8Array }).change))[0]
        const d1 = A.applyChanges(A.init<Record<string, unknown>>(), fromB.filter((e) => e.fields.type === 'settings.change').map((e) => (e.fields.body as { change: Uint8Array }).change))[0]
        expect(A.toJS(A.merge(d0, d1)).minNodes).toBe(s1.values.minNodes)
        expect(s1.problems).toEqual([])
      })
    }

    it('a later edit on top of both concurrent ones wins on every replica', () => {
      const b = new LogBuilder(2)
      b.append(0, 'node.join', join('n0'))
      b.append(1, 'node.join', join('n1'))
      b.setting(0, 'minNodes', 3)
      b.setting(1, 'minNodes', 5)
      const last = b.setting(1, 'minNodes', 4, { seesAll: true })
      const change = last.fields.type === 'settings.change' ? last.fields.body.change : new Uint8Array()
      expect(A.decodeChange(change).deps.length).toBe(2) // it saw both concurrent edits
      const r1 = foldNetwork(b.events)
      const r2 = foldNetwork([...b.events].reverse(), { checkpointEvery: 1 })
      expect(r1.settings.values.minNodes).toBe(4)
      expect(r2.settings.values).toEqual(r1.settings.values)
      expect(r2.settings.origin.minNodes?.event).toBe(last.idHex)
    })
  })

  it('cloned states (checkpoints) are independent of the live document', () => {
    const b = new LogBuilder(1)
    const e1 = b.setting(0, 'mtu', 1300)
    const s = initialSettings()
    applySettings(s, e1)
    const copy = cloneSettings(s)
    const e2 = b.setting(0, 'mtu', 1200)
    applySettings(s, e2)
    expect(copy.values.mtu).toBe(1300)
    expect(js(copy.doc)).toEqual({ mtu: 1300 })
    applySettings(copy, e2)
    expect(copy.values).toEqual(s.values)
  })
})

describe('parseSettingValue', () => {
  it('parses numbers, booleans and null as JSON and the rest as text', () => {
    expect(parseSettingValue('minNodes', '3')).toBe(3)
    expect(parseSettingValue('dynamicRoles', 'false')).toBe(false)
    expect(parseSettingValue('overlayCidr6', 'null')).toBeNull()
    expect(parseSettingValue('overlayCidr', '10.2.0.0/16')).toBe('10.2.0.0/16')
    expect(parseSettingValue('zone', 'corp.example')).toBe('corp.example')
  })

  it('takes text that merely looks like a number as text where the setting is text', () => {
    expect(parseSettingValue('zone', '123')).toBe('123')
  })

  it.each([
    ['minNodes', '0', /invalid value for minNodes/],
    ['minNodes', '1.5', /invalid value for minNodes/],
    ['minNodes', 'three', /invalid value for minNodes/],
    ['serverCount', '16', /invalid value for serverCount/],
    ['dynamicRoles', 'yes', /invalid value for dynamicRoles/],
    ['mtu', '100', /invalid value for mtu/],
    ['overlayCidr', '10.1.2.3/16', /invalid value for overlayCidr/],
    ['overlayCidr', '10.1.0.0/31', /at least a \/30/],
    ['overlayCidr', 'fd00::/64', /IPv4 CIDR/],
    ['overlayCidr6', '10.1.0.0/16', /IPv6 CIDR/],
    ['overlayCidr6', 'fd00::1/128', /invalid value for overlayCidr6/],
    ['zone', 'UPPER.case', /RFC 1123/],
    ['zone', '-bad.example', /RFC 1123/],
    ['colour', 'blue', /unknown setting "colour"; known settings: overlayCidr/]
  ])('%s = %j is refused', (key, text, re) => {
    expect(() => parseSettingValue(key, text)).toThrow(re)
  })

  it('knows every schema key', () => {
    for (const k of Object.keys(settingSchemas)) expect(() => parseSettingValue(k, JSON.stringify(DEFAULT_SETTINGS[k as keyof typeof DEFAULT_SETTINGS]).replace(/^"|"$/g, ''))).not.toThrow()
  })
})
