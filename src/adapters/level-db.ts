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

/** Opens the LevelDB event database of a data dir. LevelDB allows one process per directory. */
export async function openLevel (path: string): Promise<EventDb> {
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
