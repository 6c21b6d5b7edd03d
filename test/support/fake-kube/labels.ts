/**
 * Label selectors and label/name validation as k8s.io/apimachinery does them
 * (pkg/labels/selector.go, pkg/util/validation), for the fake API server.
 *
 * Syntax: requirements separated by commas, each one of
 *   key | !key | key=value | key==value | key!=value | key in (v1,v2) | key notin (v1,v2)
 *   | key>int | key<int
 * with optional blanks around tokens. `!=` and `notin` also match objects without the key.
 */

export type Operator = 'exists' | '!' | '=' | '!=' | 'in' | 'notin' | 'gt' | 'lt'

export interface Requirement {
  key: string
  op: Operator
  values: string[]
}

export class SelectorError extends Error {}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/
const QUALIFIED_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/

export function isDns1123Label(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s)
}

export function isDns1123Subdomain(s: string): boolean {
  return s.length <= 253 && DNS1123_SUBDOMAIN.test(s)
}

export function isDns1035Label(s: string): boolean {
  return s.length <= 63 && DNS1035_LABEL.test(s)
}

/** A label or annotation key: `[prefix/]name`, prefix a DNS subdomain, name ≤ 63 characters. */
export function isQualifiedName(s: string): boolean {
  const parts = s.split('/')
  if (parts.length > 2) return false
  const name = parts[parts.length - 1] ?? ''
  if (parts.length === 2 && !isDns1123Subdomain(parts[0] ?? '')) return false
  return name.length > 0 && name.length <= 63 && QUALIFIED_NAME_PART.test(name)
}

export function isLabelValue(s: string): boolean {
  return s.length <= 63 && LABEL_VALUE.test(s)
}

type Token =
  | { t: 'id'; v: string }
  | { t: '!' | '=' | '==' | '!=' | '>' | '<' | ',' | '(' | ')' }

const SPECIAL = new Set(['!', '=', '>', '<', ',', '(', ')'])

function lex(input: string): Token[] {
  const out: Token[] = []
  let i = 0
  while (i < input.length) {
    const c = input[i] as string
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++
      continue
    }
    if (c === '=' && input[i + 1] === '=') {
      out.push({ t: '==' })
      i += 2
    } else if (c === '!' && input[i + 1] === '=') {
      out.push({ t: '!=' })
      i += 2
    } else if (SPECIAL.has(c)) {
      out.push({ t: c as '!' | '=' | '>' | '<' | ',' | '(' | ')' })
      i++
    } else {
      let j = i
      while (j < input.length && !SPECIAL.has(input[j] as string) && !/\s/.test(input[j] as string)) j++
      out.push({ t: 'id', v: input.slice(i, j) })
      i = j
    }
  }
  return out
}

function validKey(key: string): string {
  if (!isQualifiedName(key)) throw new SelectorError(`invalid label key ${JSON.stringify(key)}`)
  return key
}

function validValue(v: string): string {
  if (!isLabelValue(v)) throw new SelectorError(`invalid label value ${JSON.stringify(v)}`)
  return v
}

/** Parses a selector; throws SelectorError on a malformed one. The empty selector matches everything. */
export function parseSelector(input: string): Requirement[] {
  const toks = lex(input)
  const reqs: Requirement[] = []
  let i = 0
  const peek = (): Token | undefined => toks[i]
  const next = (): Token | undefined => toks[i++]
  const expectId = (what: string): string => {
    const t = next()
    if (t?.t !== 'id') throw new SelectorError(`unable to parse requirement: expected ${what}`)
    return t.v
  }
  if (toks.length === 0) return reqs
  for (;;) {
    const t = next()
    if (t === undefined) throw new SelectorError('unable to parse requirement: found end, expected a key')
    if (t.t === '!') {
      reqs.push({ key: validKey(expectId('a key after !')), op: '!', values: [] })
    } else if (t.t === 'id') {
      const key = validKey(t.v)
      const op = peek()
      if (op === undefined || op.t === ',') {
        reqs.push({ key, op: 'exists', values: [] })
      } else if (op.t === '=' || op.t === '==' || op.t === '!=') {
        next()
        // A missing value means the empty value (`a=` selects a="").
        const v = peek()?.t === 'id' ? (next() as { v: string }).v : ''
        reqs.push({ key, op: op.t === '!=' ? '!=' : '=', values: [validValue(v)] })
      } else if (op.t === '>' || op.t === '<') {
        next()
        const v = expectId('an integer')
        if (!/^-?\d+$/.test(v)) throw new SelectorError(`invalid value ${JSON.stringify(v)} for ${op.t}: not an integer`)
        reqs.push({ key, op: op.t === '>' ? 'gt' : 'lt', values: [v] })
      } else if (op.t === 'id' && (op.v === 'in' || op.v === 'notin')) {
        next()
        if (next()?.t !== '(') throw new SelectorError(`unable to parse requirement: expected ( after ${op.v}`)
        const values: string[] = []
        for (;;) {
          const v = peek()
          if (v?.t === 'id') {
            values.push(validValue(v.v))
            next()
          } else {
            values.push('') // an empty element, e.g. `in (a,)`
          }
          const sep = next()
          if (sep?.t === ')') break
          if (sep?.t !== ',') throw new SelectorError('unable to parse requirement: expected , or ) in a value set')
        }
        reqs.push({ key, op: op.v, values })
      } else {
        throw new SelectorError(`unable to parse requirement: unexpected ${op.t === 'id' ? JSON.stringify(op.v) : op.t} after key ${key}`)
      }
    } else {
      throw new SelectorError(`unable to parse requirement: unexpected ${t.t}`)
    }
    const sep = next()
    if (sep === undefined) break
    if (sep.t !== ',') throw new SelectorError('unable to parse requirement: expected ,')
    if (peek() === undefined) throw new SelectorError('unable to parse requirement: found end after ,')
  }
  return reqs
}

export function matches(reqs: readonly Requirement[], labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {}
  for (const r of reqs) {
    const has = Object.prototype.hasOwnProperty.call(l, r.key)
    const v = l[r.key]
    switch (r.op) {
      case 'exists': if (!has) return false; break
      case '!': if (has) return false; break
      case '=': if (!has || v !== r.values[0]) return false; break
      case '!=': if (has && v === r.values[0]) return false; break
      case 'in': if (!has || !r.values.includes(v as string)) return false; break
      case 'notin': if (has && r.values.includes(v as string)) return false; break
      case 'gt':
      case 'lt': {
        if (!has || !/^-?\d+$/.test(v as string)) return false
        const n = Number(v)
        const bound = Number(r.values[0])
        if (r.op === 'gt' ? !(n > bound) : !(n < bound)) return false
        break
      }
    }
  }
  return true
}
