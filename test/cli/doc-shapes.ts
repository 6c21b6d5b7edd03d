import { readFileSync } from 'node:fs'

/**
 * The `--json` shapes docs/cli.md documents ("`--json` prints `{a, b?, c: {d}, e: [{f}]}`"),
 * parsed so tests can hold real output against them (issue 17: docs that match the output).
 * `key?` is optional; `{...}` and `[...]` leave the inside undocumented.
 */
export type Shape = { kind: 'any' } | { kind: 'array', of: Shape } | { kind: 'object', keys: Map<string, { optional: boolean, shape: Shape }> }

const DOC = new URL('../../docs/cli.md', import.meta.url)

/** Heading command ("weft log show") → the first documented `--json` shape of its section. */
export function documentedShapes (text = readFileSync(DOC, 'utf8')): Map<string, Shape> {
  const out = new Map<string, Shape>()
  const sections = text.split(/\n(?=#{2,3} )/)
  for (const sec of sections) {
    const h = /^#{2,3} `(weft(?: [a-z][a-z-]*)*)/.exec(sec)
    if (h === null) continue
    const m = /`--json`(?: prints|:)[^`]{0,20}`(\{[^`]*\})`/.exec(sec)
    if (m === null) continue
    out.set(h[1] as string, parseShape((m[1] as string).replace(/\s+/g, ' ')))
  }
  return out
}

export function parseShape (text: string): Shape {
  let i = 0
  const ws = (): void => { while (text[i] === ' ') i++ }
  const value = (): Shape => {
    ws()
    if (text[i] === '{') return object()
    if (text[i] === '[') {
      i++
      ws()
      const of = text[i] === '{' ? object() : skipTo(']')
      ws()
      if (text[i] === ']') i++
      return { kind: 'array', of }
    }
    return skipTo(',}')
  }
  const skipTo = (stops: string): Shape => {
    let depth = 0
    let quoted = false
    while (i < text.length) {
      const c = text[i] as string
      if (c === '"') quoted = !quoted
      else if (!quoted && (c === '{' || c === '[')) depth++
      else if (!quoted && depth > 0 && (c === '}' || c === ']')) depth--
      else if (!quoted && depth === 0 && stops.includes(c)) break
      i++
    }
    return { kind: 'any' }
  }
  const object = (): Shape => {
    i++ // {
    const keys = new Map<string, { optional: boolean, shape: Shape }>()
    for (;;) {
      ws()
      if (text[i] === '}') { i++; break }
      if (text.startsWith('...', i)) { i += 3; ws(); if (text[i] === '}') i++; return { kind: 'any' } }
      const k = /^"?([A-Za-z0-9_]+)"?(\?)?/.exec(text.slice(i))
      if (k === null) throw new Error(`cannot read a key at ${JSON.stringify(text.slice(i, i + 20))} in ${text}`)
      i += k[0].length
      ws()
      let shape: Shape = { kind: 'any' }
      if (text[i] === ':') { i++; shape = value() }
      keys.set(k[1] as string, { optional: k[2] === '?', shape })
      ws()
      if (text[i] === ',') i++
    }
    return { kind: 'object', keys }
  }
  ws()
  return value()
}

/** Where `value` and the documented shape disagree: missing keys, undocumented keys, wrong kinds. */
export function shapeMismatches (shape: Shape, value: unknown, at = '$'): string[] {
  if (shape.kind === 'any') return []
  if (shape.kind === 'array') {
    if (!Array.isArray(value)) return [`${at}: documented as a list, got ${typeof value}`]
    return value.slice(0, 5).flatMap((v, n) => shapeMismatches(shape.of, v, `${at}[${n}]`))
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [`${at}: documented as an object, got ${JSON.stringify(value)?.slice(0, 40)}`]
  const v = value as Record<string, unknown>
  const out: string[] = []
  for (const [k, d] of shape.keys) {
    if (!(k in v)) { if (!d.optional) out.push(`${at}.${k}: documented, not printed`); continue }
    out.push(...shapeMismatches(d.shape, v[k], `${at}.${k}`))
  }
  for (const k of Object.keys(v)) if (!shape.keys.has(k)) out.push(`${at}.${k}: printed, not documented`)
  return out
}
