import { MergedLog } from '../crdt/merged-log.js'
import { describeForkProof } from '../crdt/fork-proof.js'
import { toHex } from '../log/bytes.js'
import { isWeftError } from '../log/errors.js'
import { openEnvelope, type SignedEvent } from '../log/event.js'
import { Ed25519Verifier } from '../log/identity.js'
import { headerMismatch } from '../log/stored-event.js'
import { openStore } from './data-dir.js'
import type { EventStore } from '../log/store.js'
import { loadIndexSnapshot } from '../adapters/index-snapshot-load.js'
import { EXIT_CHECK_FAILED, EXIT_OK } from './errors.js'
import { out, plural, printJson, progress, shortId, table } from './output.js'

export interface Problem {
  /** The event concerned (full hex id), or null for store-wide problems. */
  id: string | null
  /** For a fork: the other event at the same (author, seq). */
  otherId?: string
  code: string
  message: string
}

/**
 * `weft log verify`: trusts nothing the store says. Every envelope named by the order index is
 * re-opened with full validation (canonical CBOR, header, network, body schema, signature), its
 * hash must equal the id it is stored under, and the index entry must match the event. Then all
 * valid events are re-ingested into a fresh MergedLog, which applies the chain and lamport rules
 * and detects forks. Finally the stored frontier is compared with the recomputed one.
 */
export async function logVerify (o: { dataDir: string, json: boolean }): Promise<number> {
  const s = await openStore(o.dataDir)
  const problems: Problem[] = []
  const verifier = new Ed25519Verifier()
  const opened: SignedEvent[] = []
  let indexed = 0
  let stored = 0
  const p = progress('verifying')
  try {
    stored = await s.store.count()
    const seen = new Set<string>()
    const authors = new Set<string>()
    for await (const entry of s.store.orderIndex()) {
      indexed++
      p.tick(indexed, stored)
      if (entry.malformed !== undefined) {
        problems.push({ id: null, code: 'ERR_STORE', message: `malformed order index key ${JSON.stringify(entry.malformed.slice(0, 120))}` })
        continue
      }
      const { id, envelope } = entry
      if (seen.has(id)) {
        problems.push({ id, code: 'ERR_STORE', message: 'the order index names this event twice' })
        continue
      }
      seen.add(id)
      authors.add(entry.author)
      if (envelope === undefined) {
        problems.push({ id, code: 'ERR_STORE', message: 'the order index names this event but its envelope is missing' })
        continue
      }
      let e: SignedEvent
      try {
        e = openEnvelope(envelope, s.net, verifier)
      } catch (err) {
        problems.push({ id, code: isWeftError(err) ? err.code : 'ERR_BAD_ENVELOPE', message: (err as Error).message })
        continue
      }
      if (e.idHex !== id) {
        problems.push({ id, code: 'ERR_BAD_ID', message: `stored under id ${shortId(id)} but its bytes hash to ${shortId(e.idHex)}` })
        continue
      }
      if (e.authorHex !== entry.author || e.fields.seq !== entry.seq || e.fields.lamport !== entry.lamport) {
        problems.push({ id, code: 'ERR_STORE', message: 'the order index entry does not match the event (author, seq or lamport)' })
        continue
      }
      const wrong = entry.header === 'none' ? undefined : entry.header === 'unreadable' ? 'header (unreadable)' : headerMismatch(e.fields, { ...entry.header, author: e.fields.author, seq: entry.seq, lamport: entry.lamport })
      if (wrong !== undefined) {
        problems.push({ id, code: 'ERR_STORE', message: `the order index entry's ${wrong} does not match the event` })
        continue
      }
      opened.push(e)
    }
    if (stored !== seen.size) {
      problems.push({ id: null, code: 'ERR_STORE', message: `${stored} envelopes are stored but the order index names ${seen.size}` })
    }

    // Chain, lamport and fork rules: exactly what a replica applies on ingest.
    const log = new MergedLog({ net: s.net, verifier, maxPending: Number.MAX_SAFE_INTEGER })
    const res = log.ingest(opened)
    const rejected = new Set<string>()
    for (const r of res.rejected) {
      const rid = r.id ?? opened[r.index]?.idHex ?? null
      if (rid !== null) rejected.add(rid)
      problems.push({ id: rid, code: r.code, message: r.message })
    }
    for (const e of opened) {
      if (log.has(e.idHex) || rejected.has(e.idHex)) continue
      const missing = [e.fields.prev, ...e.fields.deps].filter((x): x is Uint8Array => x !== null).map(toHex).filter((x) => !log.has(x))
      problems.push({ id: e.idHex, code: 'ERR_MISSING_PARENT', message: `parent ${missing.map(shortId).join(', ') || '?'} is missing or invalid` })
    }
    for (const proof of log.forks().values()) {
      problems.push({ id: proof.a.idHex, otherId: proof.b.idHex, code: 'ERR_FORK', message: `${describeForkProof(proof)}; the author is frozen from seq ${proof.seq}` })
    }

    // The stored frontier is derived data: compare it only when the events themselves are sound.
    if (problems.length === 0) problems.push(...compareFrontiers(await s.store.frontier(), log))
    problems.push(...await snapshotProblems(s.store, s.net, opened))

    p.done()
    const summary = { ok: problems.length === 0, network: s.netHex, events: indexed, valid: log.size, authors: authors.size, forks: log.forks().size, problems }
    if (o.json) {
      printJson(summary)
    } else {
      if (problems.length > 0) {
        out(table(['EVENT', 'CODE', 'PROBLEM'], problems.map((q) => [q.id ?? '-', q.code, q.message])))
        out()
      }
      out(`${problems.length === 0 ? 'ok' : 'FAILED'}: ${plural(indexed, 'event')} checked, ${log.size} valid, ${plural(summary.authors, 'author')}, forks: ${summary.forks}, ${plural(problems.length, 'problem')}`)
    }
    return problems.length === 0 ? EXIT_OK : EXIT_CHECK_FAILED
  } finally {
    p.done()
    await s.close()
  }
}

function compareFrontiers (stored: Map<string, { seq: number, head: string, forks: string[] }>, log: MergedLog): Problem[] {
  const out: Problem[] = []
  const computed = log.frontier()
  for (const [author, c] of computed) {
    const st = stored.get(author)
    if (st === undefined) {
      out.push({ id: c.head, code: 'ERR_STORE', message: `no stored frontier entry for author ${author.slice(0, 12)}` })
    } else if (st.seq !== c.seq || st.head !== c.head || [...st.forks].sort().join() !== [...c.forks].sort().join()) {
      out.push({ id: c.head, code: 'ERR_STORE', message: `stored frontier of author ${author.slice(0, 12)} (seq ${st.seq}, head ${shortId(st.head)}) differs from the events (seq ${c.seq}, head ${shortId(c.head)})` })
    }
  }
  for (const author of stored.keys()) {
    if (!computed.has(author)) out.push({ id: null, code: 'ERR_STORE', message: `stored frontier names author ${author.slice(0, 12)} which has no valid events` })
  }
  return out
}

/** Never read: the snapshot's headers are compared field by field, without bytes or bodies. */
const NO_BYTES = {
  net: new Uint8Array(0),
  envelope: (): never => { throw new Error('not read') },
  decoded: (): never => { throw new Error('not read') }
}

/**
 * The index snapshot (c!index), when one is stored, must be intact and name only events the
 * order index holds, with their headers: a start trusts its headers as it trusts the index's,
 * so a damaged or forged one is reported here. A stale one (events stored after it) is not a
 * problem. At most 20 events are listed.
 */
export async function snapshotProblems (store: EventStore, net: Uint8Array, opened: readonly SignedEvent[]): Promise<Problem[]> {
  if (await store.getIndexSnapshot() === undefined) return []
  const r = await loadIndexSnapshot(store, net, NO_BYTES)
  if ('refused' in r) return [{ id: null, code: 'ERR_STORE', message: `${r.refused}; a start reads the order index instead, and its next clean stop writes a new one` }]
  const byId = new Map(opened.map((e) => [e.idHex, e]))
  const out: Problem[] = []
  let wrong = 0
  for (const h of r.events) {
    const e = byId.get(h.idHex)
    const why = e === undefined ? 'names an event the order index does not hold (or one that is invalid)' : headerMismatch(e.fields, h)
    if (why === undefined) continue
    wrong++
    if (out.length < 20) out.push({ id: h.idHex, code: 'ERR_STORE', message: `the index snapshot ${e === undefined ? why : `holds another ${why} for this event`}` })
  }
  if (wrong > out.length) out.push({ id: null, code: 'ERR_STORE', message: `the index snapshot is wrong about ${wrong} events (${out.length} listed)` })
  return out
}
