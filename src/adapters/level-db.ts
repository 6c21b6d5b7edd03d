import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { ClassicLevel } from 'classic-level'
import { WeftError } from '../log/errors.js'
import type { EventDb } from '../log/store.js'

/**
 * LevelDB's block cache: 1 MiB, not its 8 MiB default. After a flood the default cache is full
 * (~9 MB of native memory that stays), and it saves nothing measurable here: reading all
 * 100,000 envelopes of a flooded store (33 MB) took 250–440 ms with either size, because the
 * blocks come from the kernel's page cache (docs/operations.md, "Memory of an idle node").
 */
export const LEVEL_CACHE_BYTES = 1024 * 1024

/** Whether LevelDB reads its table files with pread(2) in this process, or why it maps them. */
export type TableReads = { mapped: false } | { mapped: true, reason: string }

let tableReads: TableReads | undefined

/**
 * LevelDB maps up to 1,000 table files into memory (on 64-bit) and reads them from the mapping.
 * Every page it touches then counts in the node's RSS until the file is closed, and a node that
 * serves a large log to its peers touches them all: 38 MB of a 200 MB RSS with 100,000 events.
 * Read with pread(2), the same pages stay in the kernel's page cache, shared and reclaimable,
 * but out of the process (docs/operations.md, "Memory of an idle node"). Random reads of single
 * envelopes cost ~10 µs instead of ~4 µs.
 *
 * LevelDB 1.20 has no option for it; the limit is a static its own test helper sets, exported
 * by classic-level's binding and read when the first database of the process opens. So this runs
 * before the first open, once; `WEFT_LEVEL_MMAP=on` keeps LevelDB's mapping.
 */
export function readTablesWithoutMmap (env: NodeJS.ProcessEnv = process.env): TableReads {
  if (tableReads !== undefined) return tableReads
  tableReads = chooseTableReads(env)
  return tableReads
}

function chooseTableReads (env: NodeJS.ProcessEnv): TableReads {
  if (env.WEFT_LEVEL_MMAP === 'on') return { mapped: true, reason: 'WEFT_LEVEL_MMAP=on' }
  if (process.platform !== 'linux') return { mapped: true, reason: 'not Linux' }
  // The binding classic-level loaded (a prebuild or a local build): dlopen of the same file
  // returns the same library.
  let binding: string | undefined
  try {
    binding = readFileSync('/proc/self/maps', 'utf8').split('\n').map((l) => l.slice(l.indexOf('/'))).find((f) => /\/classic-level[^/]*\.node$/.test(f))
  } catch {}
  if (binding === undefined) return { mapped: true, reason: 'classic-level\'s binding is not in /proc/self/maps' }
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi')
    const set = koffi.load(binding).func('_ZN7leveldb18EnvPosixTestHelper20SetReadOnlyMMapLimitEi', 'void', ['int']) as (limit: number) => void
    set(0)
    return { mapped: false }
  } catch (err) {
    return { mapped: true, reason: `LevelDB's mmap limit cannot be set (${(err as Error).message})` }
  }
}

/** Opens the LevelDB event database of a data dir. LevelDB allows one process per directory. */
export async function openLevel (path: string): Promise<EventDb> {
  readTablesWithoutMmap()
  const db = new ClassicLevel<string, Uint8Array>(path, { keyEncoding: 'utf8', valueEncoding: 'view', cacheSize: LEVEL_CACHE_BYTES })
  try {
    await db.open()
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause
    if (cause?.code === 'LEVEL_LOCKED' || /lock/i.test(String((err as Error).message) + String((cause as Error | undefined)?.message))) {
      throw new WeftError('ERR_STORE_LOCKED', `the event store in ${path} is in use by another process (a running "weft up"?); stop it, or query it through its API`, { cause: err })
    }
    throw new WeftError('ERR_STORE', `cannot open the event store in ${path}: ${(err as Error).message}`, { cause: err })
  }
  return db as unknown as EventDb
}
