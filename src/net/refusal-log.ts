import type { MeshLogger } from './mesh-logger.js'

export interface RefusalLogOptions {
  log: MeshLogger
  /** At most one line per remote host per interval (default 60 s). */
  intervalMs?: number
  /** Remote hosts remembered (default 1,024; the oldest is forgotten first). */
  maxHosts?: number
  /** Lines per interval across all hosts (default 20), so many source addresses cannot flood the log. */
  maxLinesPerInterval?: number
  now?: () => number
}

interface HostEntry { lastLineAt: number, refusedSinceLine: number }

/**
 * Refused transport handshakes, logged at info and rate-limited: a scanner or a machine with an
 * old token retrying every second must not fill the log. Each line carries how many refusals
 * from that host it stands for (since its previous line).
 */
export class RefusalLog {
  private readonly hosts = new Map<string, HostEntry>()
  private readonly intervalMs: number
  private readonly maxHosts: number
  private readonly maxLines: number
  private readonly now: () => number
  private windowStart = -Infinity
  private linesInWindow = 0

  constructor (private readonly opts: RefusalLogOptions) {
    this.intervalMs = opts.intervalMs ?? 60_000
    this.maxHosts = opts.maxHosts ?? 1_024
    this.maxLines = opts.maxLinesPerInterval ?? 20
    this.now = opts.now ?? Date.now
  }

  refused (host: string, reason: string): void {
    const t = this.now()
    const entry = this.hosts.get(host) ?? { lastLineAt: -Infinity, refusedSinceLine: 0 }
    entry.refusedSinceLine++
    this.hosts.delete(host) // re-inserted below: Map order is the least recently refused first
    this.hosts.set(host, entry)
    if (this.hosts.size > this.maxHosts) {
      const oldest = this.hosts.keys().next().value
      if (oldest !== undefined) this.hosts.delete(oldest)
    }
    if (t - entry.lastLineAt < this.intervalMs) return
    if (t - this.windowStart >= this.intervalMs) {
      this.windowStart = t
      this.linesInWindow = 0
    }
    // Over the global budget the host keeps its count for its next line.
    if (this.linesInWindow >= this.maxLines) return
    this.linesInWindow++
    this.opts.log.info({
      remote: host,
      reason,
      refusals: entry.refusedSinceLine
    }, refusalMessage(reason))
    entry.lastLineAt = t
    entry.refusedSinceLine = 0
  }
}

/**
 * What a refusal means, by reason: only a failed proof says the other side lacks the token. A
 * handshake that timed out or broke off is a peer that gave up (a faster address won, it was
 * overloaded) or a port scanner, and said as much: 30 nodes starting at once on one LAN logged
 * dozens of "does not hold this network's token" between members that all held it.
 */
export function refusalMessage (reason: string): string {
  if (reason === 'timeout' || reason === 'handshake-io') {
    return 'a transport handshake did not complete: the other side was too slow or went away (an overloaded or starting peer, a dial it gave up, a port scanner)'
  }
  return 'refused a transport handshake: the other side does not hold this network\'s token (or is not weft)'
}
