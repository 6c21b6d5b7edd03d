import type { Logger } from 'pino'
import type { Problem } from '../adapters/api-types.js'
import type { ProblemReport } from './feature.js'

/**
 * The node's current problems (issue 17: problems said out loud). Features and the node's own
 * checks report what is wrong now; the book remembers when each first appeared (`since`), says
 * a new one once at warn (with its fix) and a gone one once at info. Bounded: at most one entry
 * per code, and codes come from a fixed set of checks.
 */
export class ProblemBook {
  private readonly current = new Map<string, Problem>()

  constructor (private readonly log: Pick<Logger, 'warn' | 'info'>, private readonly now: () => number) {}

  /** Replace the list with what is wrong now; returns it, oldest first. */
  update (reports: readonly ProblemReport[]): Problem[] {
    const seen = new Set<string>()
    for (const r of reports) {
      if (seen.has(r.code)) continue
      seen.add(r.code)
      const had = this.current.get(r.code)
      if (had === undefined) {
        this.log.warn({ problem: r.code, fix: r.fix }, r.message)
        this.current.set(r.code, { ...r, since: this.now() })
      } else {
        // The message may say more as time goes by (what was tried); `since` stays.
        this.current.set(r.code, { ...r, since: had.since })
      }
    }
    for (const [code, p] of this.current) {
      if (seen.has(code)) continue
      this.current.delete(code)
      this.log.info({ problem: code }, `resolved: ${p.message}`)
    }
    return this.list()
  }

  list (): Problem[] {
    return [...this.current.values()].sort((a, b) => a.since - b.since || (a.code < b.code ? -1 : 1))
  }
}
