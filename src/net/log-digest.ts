import { createHash } from 'node:crypto'
import type { Frontier } from '../crdt/frontier.js'
import { fromHex } from '../log/bytes.js'
import type { ReplicaPort } from './replica-port.js'

/** Bytes of a digest: enough that two different logs never share one by chance in practice. */
export const LOG_DIGEST_BYTES = 8

/**
 * A short digest of a log frontier: every author's seq, head and fork heads, in author order.
 * Two replicas with the same digest hold the same events (a frontier names the heads, and every
 * event is in the closure of its feed's head), so anti-entropy between them has nothing to do.
 */
export function frontierDigest (frontier: Frontier): Uint8Array {
  const h = createHash('sha256')
  const seq = Buffer.alloc(8)
  for (const author of [...frontier.keys()].sort()) {
    const e = frontier.get(author)
    if (e === undefined) continue
    h.update(fromHex(author))
    seq.writeBigUInt64BE(BigInt(e.seq))
    h.update(seq)
    h.update(fromHex(e.head))
    // The count first, so one author's fork heads cannot read as the next author.
    seq.writeBigUInt64BE(BigInt(e.forks.length))
    h.update(seq)
    for (const f of [...e.forks].sort()) h.update(fromHex(f))
  }
  return new Uint8Array(h.digest().subarray(0, LOG_DIGEST_BYTES))
}

/** The replica's digest, computed again only after the log changed (presence sends it often). */
export class LogDigest {
  private version = 0
  private cached: { version: number, digest: Uint8Array } | undefined
  private readonly unsubscribe: () => void

  constructor (private readonly replica: Pick<ReplicaPort, 'frontier' | 'onChange'>) {
    this.unsubscribe = replica.onChange(() => { this.version++ })
  }

  current (): Uint8Array {
    if (this.cached?.version !== this.version) this.cached = { version: this.version, digest: frontierDigest(this.replica.frontier()) }
    return this.cached.digest
  }

  /** Whether a peer's digest says its log is ours. */
  same (theirs: Uint8Array | undefined): boolean {
    if (theirs === undefined) return false
    const ours = this.current()
    return theirs.length === ours.length && theirs.every((b, i) => b === ours[i])
  }

  stop (): void { this.unsubscribe() }
}
