import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { assertBuilt } from '../cli/helpers.js'

const run = promisify(execFile)
const DIST_MODULE = new URL('../../dist/adapters/level-db.js', import.meta.url).href
const linux = process.platform === 'linux'
if (!linux) console.warn('skipping the LevelDB table-read test: /proc/self/maps is Linux-only')

describe('LevelDB\'s table files', () => {
  const dirs: string[] = []
  afterAll(async () => { await Promise.all(dirs.map(async (d) => { await rm(d, { recursive: true, force: true }) })) })

  it.skipIf(!linux)(`are read with pread, not mapped into the process, unless WEFT_LEVEL_MMAP=on${linux ? '' : ' (skipped: not Linux)'}`, async () => {
    assertBuilt()
    // In a child process: the choice is made once per process, before its first database opens.
    // 8 MB written, then reopened (the write-ahead log becomes table files), then every value read.
    const script = `
      import { readFileSync } from 'node:fs'
      const { openLevel, readTablesWithoutMmap } = await import(${JSON.stringify(DIST_MODULE)})
      const dir = process.argv[1]
      let db = await openLevel(dir)
      const value = new Uint8Array(4096).fill(7)
      for (let i = 0; i < 2048; i += 256) await db.batch(Array.from({ length: 256 }, (_, k) => ({ type: 'put', key: 'e!' + String(i + k).padStart(6, '0'), value })))
      await db.close()
      db = await openLevel(dir)
      let bytes = 0
      for (let i = 0; i < 2048; i++) bytes += db.getSync('e!' + String(i).padStart(6, '0')).byteLength
      const tables = readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith('.ldb')).length
      await db.close()
      const files = (await import('node:fs')).readdirSync(dir).filter((f) => f.endsWith('.ldb')).length
      process.stdout.write(JSON.stringify({ reads: readTablesWithoutMmap(), bytes, tables, files }))`
    const probe = async (env: NodeJS.ProcessEnv): Promise<{ reads: unknown, bytes: number, tables: number, files: number }> => {
      const dir = await mkdtemp(join(tmpdir(), 'weft-level-'))
      dirs.push(dir)
      return JSON.parse((await run(process.execPath, ['--input-type=module', '-e', script, dir], { env: { ...process.env, ...env } })).stdout)
    }
    const plain = await probe({ WEFT_LEVEL_MMAP: undefined })
    expect(plain.bytes).toBe(2048 * 4096)
    expect(plain.files).toBeGreaterThan(0)
    expect(plain.reads).toEqual({ mapped: false })
    expect(plain.tables).toBe(0)
    const mapped = await probe({ WEFT_LEVEL_MMAP: 'on' })
    expect(mapped.bytes).toBe(2048 * 4096)
    expect(mapped.reads).toEqual({ mapped: true, reason: 'WEFT_LEVEL_MMAP=on' })
    // LevelDB's own default: the table files it read are mapped.
    expect(mapped.tables).toBeGreaterThan(0)
  })
})
