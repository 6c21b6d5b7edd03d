import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { isBuiltin } from 'node:module'
import { dirname, join, relative } from 'node:path'
import { promisify } from 'node:util'
import { beforeAll, describe, expect, it } from 'vitest'
import { assertBuilt, CLI } from './helpers.js'

/**
 * The `weft` executable is one bundle (scripts/bundle.mjs): it and its chunks import only one
 * another, Node.js' own modules and the packages left outside on purpose, never tsc's module
 * tree, which is what a start spent ~0.9 s loading (docs/operations.md, "One bundle").
 * What each output imports is esbuild's own account of the build (its metafile).
 */
const run = promisify(execFile)
const DIR = dirname(CLI)
const ROOT = join(DIR, '..', '..')
const OUTSIDE = new Set(['koffi', 'classic-level', '@automerge/automerge', '@kubernetes/client-node', 'pino', 'yaml', 'prom-client'])

interface Meta { outputs: Record<string, { imports: Array<{ path: string, kind: string, external?: boolean }>, entryPoint?: string }> }
let meta: Meta

beforeAll(() => {
  assertBuilt()
  const file = join(DIR, 'bundle-meta.json')
  if (!existsSync(file)) throw new Error(`${file} is missing: run "npm run build" (tsc, then scripts/bundle.mjs)`)
  meta = JSON.parse(readFileSync(file, 'utf8')) as Meta
})

const outputsOf = (): string[] => Object.keys(meta.outputs).filter((o) => o.endsWith('.js'))

describe('the weft executable', () => {
  it('is one bundle: its files import one another, Node.js modules and the packages left outside, nothing else', () => {
    const outputs = outputsOf()
    const names = new Set(outputs.map((o) => join(ROOT, o)))
    expect(names.has(CLI)).toBe(true)
    expect(names.has(join(DIR, 'packet-thread-worker.js'))).toBe(true)
    expect(outputs.length).toBeGreaterThan(10) // the lazily loaded parts are chunks of their own
    const foreign: string[] = []
    for (const o of outputs) {
      for (const i of meta.outputs[o]?.imports ?? []) {
        const ok = i.external === true ? isBuiltin(i.path) || OUTSIDE.has(i.path) : names.has(join(ROOT, i.path)) && dirname(join(ROOT, i.path)) === DIR
        if (!ok) foreign.push(`${relative(DIR, join(ROOT, o))} imports ${i.path} (${i.kind})`)
      }
    }
    expect(foreign).toEqual([])
  })

  it('is what dist/cli/main.js holds: the sh line, then the bundle\'s imports of its chunks', () => {
    const text = readFileSync(CLI, 'utf8')
    expect(text.startsWith('#!/bin/sh\n//bin/true; case "$1" in up|bridge)')).toBe(true)
    // tsc's entry imports its siblings by name (./errors.js); the bundle imports chunks.
    expect(text).not.toMatch(/from\s*["']\.\/errors\.js["']/)
    expect(text).toMatch(/from\s*["']\.\/chunk-[A-Z0-9]+\.js["']/)
  })

  it('keeps tsc\'s entry as main-modules.js, the same program module by module', async () => {
    const bundled = await run(process.execPath, [CLI, '--version'])
    const modules = await run(process.execPath, [join(DIR, 'main-modules.js'), '--version'])
    expect(bundled.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/)
    expect(modules.stdout).toBe(bundled.stdout)
    expect(readFileSync(join(DIR, 'main-modules.js'), 'utf8')).toMatch(/from\s*["']\.\/errors\.js["']/)
  })
})
