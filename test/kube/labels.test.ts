import { describe, expect, test } from 'vitest'
import { SelectorError, isQualifiedName, matches, parseSelector } from '../support/fake-kube/labels.js'

const sel = (s: string, labels: Record<string, string>): boolean => matches(parseSelector(s), labels)

describe('the fake API server\'s label selectors', () => {
  test('parses the real syntax', () => {
    expect(parseSelector('a=b, c!=d,e in (f, g),h notin (i),j,!k,l==m,n>3,o<4')).toEqual([
      { key: 'a', op: '=', values: ['b'] },
      { key: 'c', op: '!=', values: ['d'] },
      { key: 'e', op: 'in', values: ['f', 'g'] },
      { key: 'h', op: 'notin', values: ['i'] },
      { key: 'j', op: 'exists', values: [] },
      { key: 'k', op: '!', values: [] },
      { key: 'l', op: '=', values: ['m'] },
      { key: 'n', op: 'gt', values: ['3'] },
      { key: 'o', op: 'lt', values: ['4'] }
    ])
    expect(parseSelector('multicluster.kubernetes.io/service-name=web')).toEqual([
      { key: 'multicluster.kubernetes.io/service-name', op: '=', values: ['web'] }
    ])
    expect(parseSelector('')).toEqual([])
    expect(parseSelector('a=')).toEqual([{ key: 'a', op: '=', values: [''] }])
  })

  test('rejects malformed selectors', () => {
    for (const bad of ['a in b', 'a in (b', '=b', 'a=b,', ',a', 'a b', 'a>x', 'bad key=1', 'a=b c', 'a=bad!value', '!', 'a,,b']) {
      expect(() => parseSelector(bad), bad).toThrow(SelectorError)
    }
  })

  test('matches as Kubernetes does, including absent keys', () => {
    const l = { app: 'web', tier: 'front', n: '5' }
    expect(sel('app=web', l)).toBe(true)
    expect(sel('app=db', l)).toBe(false)
    expect(sel('missing!=x', l)).toBe(true)
    expect(sel('missing=x', l)).toBe(false)
    expect(sel('missing notin (x)', l)).toBe(true)
    expect(sel('missing in (x)', l)).toBe(false)
    expect(sel('app in (db,web)', l)).toBe(true)
    expect(sel('app notin (db,web)', l)).toBe(false)
    expect(sel('!app', l)).toBe(false)
    expect(sel('!missing', l)).toBe(true)
    expect(sel('n>4,n<6', l)).toBe(true)
    expect(sel('n>5', l)).toBe(false)
    expect(sel('app>1', l)).toBe(false)
    expect(sel('app=web,tier=back', l)).toBe(false)
    expect(sel('', {})).toBe(true)
  })

  test('label keys', () => {
    expect(isQualifiedName('app')).toBe(true)
    expect(isQualifiedName('example.com/app_1.x')).toBe(true)
    expect(isQualifiedName('Example.com/app')).toBe(false)
    expect(isQualifiedName('a/b/c')).toBe(false)
    expect(isQualifiedName('x'.repeat(64))).toBe(false)
    expect(isQualifiedName('-a')).toBe(false)
  })
})
