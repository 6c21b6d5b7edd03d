/**
 * A small parser of Prometheus' text exposition format (version 0.0.4), enough for the scrape
 * tests: HELP and TYPE lines, samples with quoted label values (\\, \" and \n escapes).
 */
export interface PromSample { name: string, labels: Record<string, string>, value: number }
export interface PromScrape { types: Map<string, string>, help: Map<string, string>, samples: PromSample[] }

export function parsePromText (text: string): PromScrape {
  const types = new Map<string, string>()
  const help = new Map<string, string>()
  const samples: PromSample[] = []
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue
    let m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line)
    if (m !== null) {
      ;(m[1] === 'HELP' ? help : types).set(m[2] as string, m[3] as string)
      continue
    }
    if (line.startsWith('#')) continue
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line)
    if (m === null) throw new Error(`line ${i + 1} is not a sample: ${line}`)
    const labels: Record<string, string> = {}
    const body = m[3] ?? ''
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y
    let at = 0
    while (at < body.length) {
      re.lastIndex = at
      const l = re.exec(body)
      if (l === null) throw new Error(`line ${i + 1}: bad labels ${body}`)
      labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c))
      at = re.lastIndex
    }
    const v = m[4] as string
    const value = v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v)
    if (Number.isNaN(value) && v !== 'NaN') throw new Error(`line ${i + 1}: bad value ${v}`)
    samples.push({ name: m[1] as string, labels, value })
  }
  return { types, help, samples }
}

/** The value of the one sample of `name` whose labels include `labels`; throws if not exactly one. */
export function sampleValue (scrape: PromScrape, name: string, labels: Record<string, string> = {}): number {
  const found = scrape.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  if (found.length !== 1) throw new Error(`${found.length} samples of ${name}${JSON.stringify(labels)}`)
  return (found[0] as PromSample).value
}
