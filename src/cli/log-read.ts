import { authorName } from '../log/author.js'
import { fromHex } from '../log/bytes.js'
import type { SignedEvent } from '../log/event.js'
import type { FoldEngine, ReducerMap } from '../crdt/fold.js'
import type { MergedLog } from '../crdt/merged-log.js'
import { withReplica, ownAuthor } from './data-dir.js'
import { EXIT_OK } from './errors.js'
import {
  allInOrder, CAT_HEADERS, eventJson, eventRow, parseAuthor, parseType, resolveEvent, resolvePoint, statusOf
} from './events.js'
import { out, plural, printJson, printJsonLine, printTable, shortId } from './output.js'
import { renderStates, statesJson } from './render-state.js'

/** The read-only verbs of `weft log`: ls, show, cat, state, replay, export. */

export interface DirOpts { dataDir: string, json: boolean }
export interface CatOpts extends DirOpts { from?: number, limit?: number, type?: string, author?: string }

export async function logLs (o: DirOpts): Promise<number> {
  const self = await ownAuthor(o.dataDir)
  return await withReplica(o.dataDir, async ({ replica, netHex }) => {
    const log = replica.log
    const active = replica.states().network.members.active
    const frontier = log.frontier()
    const counts = new Map<string, number>()
    for (const e of log.events()) counts.set(e.authorHex, (counts.get(e.authorHex) ?? 0) + 1)
    const feeds = log.authors().map((a) => {
      const fe = frontier.get(a)!
      const freeze = log.freezeSeq(a)
      return {
        peerId: authorName(fromHex(a)),
        author: a,
        seq: fe.seq,
        events: counts.get(a) ?? 0,
        head: fe.head,
        forkHeads: fe.forks,
        status: freeze === undefined ? 'ok' : `frozen at seq ${freeze}`,
        frozenAtSeq: freeze ?? null,
        hostname: active.get(a)?.hostname ?? null,
        self: a === self
      }
    }).sort((x, y) => (x.peerId < y.peerId ? -1 : 1))
    if (o.json) {
      printJson({ network: netHex, events: log.size, feeds })
      return EXIT_OK
    }
    if (feeds.length === 0) {
      out(`network ${netHex}: no events`)
      return EXIT_OK
    }
    printTable(['PEER ID', 'SEQ', 'HEAD', 'STATUS', 'HOST'],
      feeds.map((f) => [f.peerId, String(f.seq), shortId(f.head) + (f.forkHeads.length > 0 ? ` +${f.forkHeads.length}` : ''), f.status, (f.hostname ?? '-') + (f.self ? ' (this node)' : '')]))
    out(`network ${netHex}: ${plural(log.size, 'event')}, ${plural(feeds.length, 'feed')}, ${plural(log.forks().size, 'fork')}`)
    return EXIT_OK
  })
}

export async function logShow (ref: string, o: DirOpts): Promise<number> {
  return await withReplica(o.dataDir, async ({ replica }) => {
    const e = resolveEvent(replica.log, ref)
    const j = eventJson(e, replica.log)
    if (o.json) {
      printJson(j)
      return EXIT_OK
    }
    const f = e.fields
    const rows: Array<[string, string]> = [
      ['id', e.idHex],
      ['author', `${authorName(f.author)} (${e.authorHex})`],
      ['seq', String(f.seq)],
      ['lamport', String(f.lamport)],
      ['prev', f.prev === null ? '-' : String(j.prev)],
      ['deps', f.deps.length === 0 ? '-' : (j.deps as string[]).join('\n         ')],
      // The author's clock, as it wrote it (epoch ms in the event; --json keeps the number).
      ['time', isoTime(f.time)],
      ['type', f.type],
      ['status', statusOf(e, replica.log).frozen ?? 'folded'],
      ['size', `${e.envelope.byteLength} bytes`],
      ['body', JSON.stringify(j.body, null, 2).replace(/\n/g, '\n         ')]
    ]
    for (const [k, v] of rows) out(`${k.padEnd(8)} ${v}`)
    return EXIT_OK
  })
}

export async function logCat (o: CatOpts): Promise<number> {
  const type = o.type === undefined ? undefined : parseType(o.type)
  const author = o.author === undefined ? undefined : parseAuthor(o.author)
  return await withReplica(o.dataDir, async ({ replica }) => {
    const log = replica.log
    const picked: SignedEvent[] = []
    for (const e of allInOrder(log)) {
      if (o.from !== undefined && e.fields.lamport < o.from) continue
      if (type !== undefined && e.fields.type !== type) continue
      if (author !== undefined && e.authorHex !== author) continue
      picked.push(e)
      if (o.limit !== undefined && picked.length >= o.limit) break
    }
    if (o.json) {
      for (const e of picked) printJsonLine(eventJson(e, log, false))
    } else if (picked.length > 0) {
      printTable(CAT_HEADERS, picked.map((e) => eventRow(e, log)))
    }
    return EXIT_OK
  })
}

function pointAt<R extends ReducerMap> (replica: { log: MergedLog, fold: FoldEngine<R> }, text: string | undefined): { count: number, label: string } {
  if (text === undefined) return { count: replica.fold.length, label: 'the end of the log' }
  return resolvePoint(replica.log, replica.fold, text)
}

export async function logState (o: DirOpts & { at?: string }): Promise<number> {
  return await withReplica(o.dataDir, async ({ replica }) => {
    const { count, label } = pointAt(replica, o.at)
    const states = replica.fold.statesAfter(count) as Record<string, unknown>
    if (o.json) {
      printJson(statesJson(states))
      return EXIT_OK
    }
    out(`state after ${count} of ${plural(replica.fold.length, 'folded event')} (${label})`)
    out()
    out(renderStates(states))
    return EXIT_OK
  })
}

export async function logReplay (o: DirOpts & { until: string }): Promise<number> {
  return await withReplica(o.dataDir, async ({ replica }) => {
    const { count, label } = pointAt(replica, o.until)
    const applied = replica.fold.events().slice(0, count)
    const states = replica.fold.statesAfter(count) as Record<string, unknown>
    if (o.json) {
      printJson({ until: { point: o.until, events: count, of: replica.fold.length }, events: applied.map((e) => eventJson(e, replica.log, false)), state: statesJson(states) })
      return EXIT_OK
    }
    if (applied.length > 0) printTable(CAT_HEADERS, applied.map((e) => eventRow(e, replica.log)))
    out()
    out(`state after ${count} of ${plural(replica.fold.length, 'folded event')} (${label})`)
    out()
    out(renderStates(states))
    return EXIT_OK
  })
}

export async function logExport (o: DirOpts): Promise<number> {
  return await withReplica(o.dataDir, async ({ replica }) => {
    for (const e of allInOrder(replica.log)) {
      printJsonLine({
        id: e.idHex,
        author: authorName(e.fields.author),
        seq: e.fields.seq,
        lamport: e.fields.lamport,
        type: e.fields.type,
        envelope: Buffer.from(e.envelope).toString('base64')
      })
    }
    return EXIT_OK
  })
}


/** Epoch milliseconds as an ISO 8601 time, or the raw number when it is out of range. */
export function isoTime (ms: number): string {
  const d = new Date(ms)
  return Number.isNaN(d.getTime()) ? String(ms) : `${d.toISOString()} (${ms})`
}
