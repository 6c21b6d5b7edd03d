import { EventStore, type StoredFrontierEntry } from '../log/store.js'
import { decodeIndexSnapshot, snapshotEvents } from '../log/index-snapshot.js'
import type { EnvelopeSource, StoredEvent } from '../log/stored-event.js'
import type { Frontier } from '../crdt/frontier.js'
import { toHex } from '../log/bytes.js'
import { isWeftError, WeftError } from '../log/errors.js'

/**
 * The stored index snapshot's events (src/log/index-snapshot.ts), if it is intact, of this
 * network, and its last entry is in the order index; otherwise why it is refused. Whether it is
 * complete is checked once the order index after it is read (tipsMismatch).
 */
export async function loadIndexSnapshot (store: EventStore, net: Uint8Array, source: EnvelopeSource): Promise<{ events: StoredEvent[] } | { refused: string }> {
  const bytes = await store.getIndexSnapshot()
  if (bytes === undefined) return { refused: 'no index snapshot stored' }
  try {
    const s = decodeIndexSnapshot(bytes)
    if (s.net !== toHex(net)) throw new WeftError('ERR_CHECKPOINT', 'the index snapshot is of another network')
    const events = snapshotEvents(s, source)
    const last = events[events.length - 1]
    if (last !== undefined && !(await store.hasOrderKey(EventStore.keyOf(last).order))) {
      throw new WeftError('ERR_CHECKPOINT', 'the index snapshot names a last event the order index does not hold')
    }
    return { events }
  } catch (err) {
    if (!isWeftError(err, 'ERR_CHECKPOINT')) throw err
    return { refused: err.message }
  }
}

/**
 * Why a log loaded from a snapshot and the order index after it is not the whole store, or
 * undefined when it is. Every write stores the frontier of the authors it wrote (each author's
 * tips: events no event of theirs names as prev) in the same batch as the events. A new event
 * is a tip when it is written, so an event the load missed changes its author's stored tips:
 * every event of a feed is a tip or the prev-ancestor of one, and the log is parent-closed.
 */
export function tipsMismatch (stored: ReadonlyMap<string, StoredFrontierEntry>, loaded: Frontier): string | undefined {
  const tips = (e: { head: string, forks: string[] }): string => [e.head, ...e.forks].sort().join(',')
  if (stored.size !== loaded.size) return `the store has ${stored.size} authors, the snapshot and the index after it ${loaded.size} (events stored after the snapshot that sort inside it)`
  for (const [author, entry] of loaded) {
    const s = stored.get(author)
    if (s === undefined || s.seq !== entry.seq || tips(s) !== tips(entry)) {
      return `author ${author.slice(0, 12)}'s feed in the store differs from the snapshot and the index after it (events stored after the snapshot that sort inside it, or a stale one)`
    }
  }
  return undefined
}
