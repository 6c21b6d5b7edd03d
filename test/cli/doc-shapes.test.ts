import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { documentedShapes, parseShape, shapeMismatches } from './doc-shapes.js'
import { makeFixture, tempRoot, weft, type Fixture } from './helpers.js'

/** Commands whose `--json` shape is checked against a real daemon in ops.test.ts. */
const CHECKED_ELSEWHERE = ['weft peers ls', 'weft ping', 'weft node ls', 'weft node leave']

describe('docs/cli.md --json shapes (parser)', () => {
  it('reads keys, optional keys, nested objects and lists; reports what differs both ways', () => {
    const s = parseShape('{a, b?, c: {d}, e: [{f, g?}], h: [...], "i": "<16 hex>"}')
    expect(shapeMismatches(s, { a: 1, c: { d: 2 }, e: [{ f: 1 }], h: [1], i: 'x' })).toEqual([])
    expect(shapeMismatches(s, { c: { d: 2, z: 1 }, e: [{ g: 1 }], h: 1, i: 'x', extra: true })).toEqual([
      '$.a: documented, not printed', '$.c.z: printed, not documented', '$.e[0].f: documented, not printed',
      '$.h: documented as a list, got number', '$.extra: printed, not documented'
    ])
  })
})

describe('docs/cli.md --json shapes match what the commands print', () => {
  let root: { dir: string, cleanup: () => Promise<void> }
  let fx: Fixture
  const shapes = documentedShapes()
  beforeAll(async () => {
    root = await tempRoot()
    fx = await makeFixture(join(root.dir, 'a'))
  }, 60_000)
  afterAll(async () => { await root.cleanup() })

  const json = async (args: string[], line = false): Promise<unknown> => {
    const r = await weft(args)
    if (r.code !== 0 && r.code !== 1) throw new Error(`weft ${args.join(' ')}: exit ${String(r.code)}: ${r.stderr}`)
    return JSON.parse(line ? r.stdout.split('\n')[0] as string : r.stdout)
  }

  it('every documented shape is checked (here or against a daemon)', () => {
    const here = ['weft token new', 'weft token inspect', 'weft log ls', 'weft log show', 'weft log cat', 'weft log verify', 'weft log state',
      'weft log replay', 'weft log import', 'weft log diff', 'weft settings get']
    const known = new Set([...here, ...CHECKED_ELSEWHERE])
    const unchecked = [...shapes.keys()].filter((k) => !known.has(k))
    // A new documented shape needs a check: add it to a list above, with a run below.
    expect(unchecked.filter((k) => !['weft demo', 'weft dns coredns-snippet', 'weft dns query', 'weft settings set', 'weft dashboard'].includes(k))).toEqual([])
    for (const k of here) expect(shapes.has(k), k).toBe(true)
  })

  it('token, log and settings commands', async () => {
    const d = fx.dir
    const token = (await json(['token', 'new', '--json'])) as { token: string }
    const runs: Array<[string, string[], boolean?]> = [
      ['weft token inspect', ['token', 'inspect', token.token, '--json']],
      ['weft log ls', ['log', 'ls', '--json', '--data-dir', d]],
      ['weft log show', ['log', 'show', fx.ev.c1!.idHex, '--json', '--data-dir', d]],
      ['weft log cat', ['log', 'cat', '--json', '--data-dir', d], true],
      ['weft log verify', ['log', 'verify', '--json', '--data-dir', d]],
      ['weft log state', ['log', 'state', '--json', '--data-dir', d]],
      ['weft log replay', ['log', 'replay', '--until', '2', '--json', '--data-dir', d]],
      ['weft log diff', ['log', 'diff', d, d, '--json']],
      ['weft settings get', ['settings', 'get', '--json', '--data-dir', d]]
    ]
    const problems: string[] = shapeMismatches(shapes.get('weft token new')!, token).map((p) => `weft token new ${p}`)
    for (const [cmd, args, line] of runs) {
      problems.push(...shapeMismatches(shapes.get(cmd)!, await json(args, line)).map((p) => `${cmd} ${p}`))
    }
    const exported = await weft(['log', 'export', '--data-dir', d])
    const { writeFile } = await import('node:fs/promises')
    const file = join(root.dir, 'export.jsonl')
    await writeFile(file, exported.stdout)
    problems.push(...shapeMismatches(shapes.get('weft log import')!, await json(['log', 'import', file, '--json', '--data-dir', join(root.dir, 'restore')])).map((p) => `weft log import ${p}`))
    expect(problems).toEqual([])
  }, 120_000)
})
