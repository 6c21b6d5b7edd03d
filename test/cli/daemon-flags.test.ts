import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { assertBuilt, CLI } from './helpers.js'

/**
 * `weft` run as an executable starts its daemons with a heap sized for an edge node
 * (src/cli/main.ts: the first two lines are both sh and JavaScript). A preload prints the V8
 * flags Node.js was started with and exits, before any command runs.
 */
const run = promisify(execFile)
let dir = ''
let probe = ''

beforeAll(async () => {
  assertBuilt()
  dir = await mkdtemp(join(tmpdir(), 'weft-flags-'))
  probe = join(dir, 'probe.mjs')
  await writeFile(probe, 'process.stdout.write(JSON.stringify(process.execArgv)); process.exit(0)\n')
})
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

async function execArgvOf (args: string[]): Promise<string[]> {
  const { stdout } = await run('/bin/sh', [CLI, ...args], { env: { ...process.env, NODE_OPTIONS: `--import=${probe}` } })
  return JSON.parse(stdout) as string[]
}

/** A quarter of the machine's memory in MB, between 256 and 1,024 (src/cli/main.ts). */
async function expectedOldSpace (): Promise<number> {
  const kb = Number(/^MemTotal:\s+(\d+) kB/m.exec(await readFile('/proc/meminfo', 'utf8'))?.[1])
  return Math.min(1024, Math.max(256, Math.floor(kb / 4096)))
}

describe('the weft executable', () => {
  it('starts `up` and `bridge` with a heap sized for an edge node, other commands without it', async () => {
    const oldSpace = `--max-old-space-size=${await expectedOldSpace()}`
    for (const daemon of ['up', 'bridge']) {
      const argv = await execArgvOf([daemon, '--help'])
      expect(argv).toContain('--max-semi-space-size=4')
      expect(argv).toContain(oldSpace)
    }
    const status = await execArgvOf(['status'])
    expect(status).not.toContain('--max-semi-space-size=4')
    expect(status.some((a) => a.startsWith('--max-old-space-size'))).toBe(false)
  })

  it('still runs as plain JavaScript under node, and as an executable through sh', async () => {
    const viaNode = await run(process.execPath, [CLI, '--version'])
    const viaSh = await run('/bin/sh', [CLI, '--version'])
    expect(viaNode.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/)
    expect(viaSh.stdout).toBe(viaNode.stdout)
  })
})
