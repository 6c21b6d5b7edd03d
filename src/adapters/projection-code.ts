import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

let cached: string | undefined

/**
 * A hash of the code that folds the log (src/projections and src/crdt, as this process runs
 * them: dist/*.js or src/*.ts). A fold checkpoint records it and is used only by the same code:
 * after an upgrade that changes a reducer the log is refolded once, instead of trusting a state
 * that other code produced. Read once per process (~30 small files).
 */
export function projectionCodeId (): string {
  if (cached !== undefined) return cached
  const h = createHash('sha256')
  for (const dir of ['../projections/', '../crdt/']) {
    const path = fileURLToPath(new URL(dir, import.meta.url))
    const files = readdirSync(path).filter((f) => /\.(js|ts)$/.test(f) && !f.endsWith('.d.ts')).sort()
    for (const f of files) h.update(`${dir}${f}\0`).update(readFileSync(path + f)).update('\0')
  }
  cached = h.digest('hex')
  return cached
}
