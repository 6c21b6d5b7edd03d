import type { MergedLog } from '../crdt/merged-log.js'
import type { FoldEngine, ReducerMap } from '../crdt/fold.js'
import { authorName, parseAuthorName } from '../log/author.js'
import { toHex } from '../log/bytes.js'
import { compareEvents, type SignedEvent } from '../log/event.js'
import { EVENT_TYPES, isEventType, type EventType } from '../log/bodies.js'
import { CliError } from './errors.js'
import { plain, shortId, shortPeer } from './output.js'

/** How the CLI shows events, and how it turns user input into authors, ids and fold positions. */

/** Body as JSON: bytes as hex; a settings.change also gets the length of its Automerge change. */
export function bodyJson (e: SignedEvent): Record<string, unknown> {
  const body = plain(e.fields.body) as Record<string, unknown>
  if (e.fields.type === 'settings.change') body.changeBytes = e.fields.body.change.byteLength
  if (e.fields.type === 'node.evict') body.peerId = authorName(e.fields.body.peer)
  return body
}

export interface EventStatus { visible: boolean, frozen?: string }

export function statusOf (e: SignedEvent, log: MergedLog): EventStatus {
  if (log.isVisible(e)) return { visible: true }
  return { visible: false, frozen: `author frozen at seq ${log.freezeSeq(e.authorHex) ?? '?'} by a fork` }
}

/** Everything about an event, for `show` and `cat --json`. */
export function eventJson (e: SignedEvent, log: MergedLog, full = true): Record<string, unknown> {
  const f = e.fields
  const base: Record<string, unknown> = {
    id: e.idHex,
    author: authorName(f.author),
    authorHex: e.authorHex,
    seq: f.seq,
    lamport: f.lamport,
    time: f.time,
    type: f.type,
    body: bodyJson(e),
    visible: log.isVisible(e)
  }
  if (!full) return base
  return {
    ...base,
    prev: f.prev === null ? null : toHex(f.prev),
    deps: f.deps.map(toHex),
    net: toHex(f.net),
    v: f.v,
    sig: toHex(e.sig),
    size: e.envelope.byteLength,
    ...(log.isVisible(e) ? {} : { frozen: statusOf(e, log).frozen })
  }
}

/** A one-line summary of a body for `cat`. */
export function bodySummary (e: SignedEvent): string {
  const f = e.fields
  switch (f.type) {
    case 'node.join': return `${f.body.hostname} cluster=${f.body.cluster} role=${f.body.role}`
    case 'node.evict': return `${shortPeer(authorName(f.body.peer))} reason=${JSON.stringify(f.body.reason)}`
    case 'settings.change': return `change ${f.body.change.byteLength} bytes`
    default: {
      const text = JSON.stringify(bodyJson(e))
      return text.length > 100 ? `${text.slice(0, 99)}…` : text
    }
  }
}

export const CAT_HEADERS = ['LAMPORT', 'ID', 'AUTHOR', 'SEQ', 'TYPE', 'BODY'] as const

export function eventRow (e: SignedEvent, log: MergedLog): string[] {
  const frozen = log.isVisible(e) ? '' : ' [frozen]'
  return [String(e.fields.lamport), shortId(e.idHex), shortPeer(authorName(e.fields.author)), String(e.fields.seq), e.fields.type, bodySummary(e) + frozen]
}

/** Every event of the log (visible or not) in total order. */
export function allInOrder (log: MergedLog): SignedEvent[] {
  return [...log.events()].sort(compareEvents)
}

/** A peer id (12D3KooW…) or 64 hex digits → author hex. */
export function parseAuthor (text: string): string {
  const t = text.trim()
  if (/^[0-9a-fA-F]{64}$/.test(t)) return t.toLowerCase()
  try {
    return toHex(parseAuthorName(t))
  } catch {
    throw new CliError(`"${t}" is not an author: give a peer id (12D3KooW…) or 64 hex digits`)
  }
}

export function parseType (text: string): EventType {
  if (!isEventType(text)) throw new CliError(`unknown event type "${text}"; one of: ${EVENT_TYPES.join(', ')}`)
  return text
}

/** Events whose id starts with `prefix` (at least 4 hex digits). */
export function findByIdPrefix (log: MergedLog, text: string): SignedEvent[] {
  const prefix = text.trim().toLowerCase()
  if (!/^[0-9a-f]{4,64}$/.test(prefix)) {
    throw new CliError(`"${text}" is not an event id: give 4 to 64 hex digits of it`)
  }
  if (prefix.length === 64) {
    const e = log.get(prefix)
    return e === undefined ? [] : [e]
  }
  return allInOrder(log).filter((e) => e.idHex.startsWith(prefix))
}

export function ambiguous (text: string, matches: readonly SignedEvent[]): CliError {
  const list = matches.slice(0, 5).map((e) => shortId(e.idHex)).join(', ')
  return new CliError(`"${text}" matches ${matches.length} events (${list}${matches.length > 5 ? ', …' : ''}); give more of the id`)
}

/** `<id or unique prefix>` or `<peer id | author hex>:<seq>` → exactly one event. */
export function resolveEvent (log: MergedLog, text: string): SignedEvent {
  const colon = text.lastIndexOf(':')
  let matches: SignedEvent[]
  if (colon > 0) {
    const author = parseAuthor(text.slice(0, colon))
    const seqText = text.slice(colon + 1)
    if (!/^\d{1,15}$/.test(seqText) || Number(seqText) < 1) throw new CliError(`"${seqText}" is not a seq (a whole number from 1)`)
    matches = log.eventsOf(author, Number(seqText))
    if (matches.length > 1) {
      throw new CliError(`${shortPeer(authorName(matches[0]!.fields.author))} has ${matches.length} events at seq ${seqText} (a fork): ${matches.map((e) => e.idHex).join(', ')}; show them by id`)
    }
  } else {
    matches = findByIdPrefix(log, text)
    if (matches.length > 1) throw ambiguous(text, matches)
  }
  const e = matches[0]
  if (e === undefined) throw new CliError(`no event ${text} in this store`)
  return e
}

export interface FoldPoint { count: number, label: string }

/**
 * `--at`/`--until`: a whole number is a lamport (the state after every event with that lamport
 * or lower); anything else is an event id or unique id prefix (the state just after it).
 */
export function resolvePoint<R extends ReducerMap> (log: MergedLog, fold: FoldEngine<R>, text: string): FoldPoint {
  const t = text.trim()
  if (/^\d{1,15}$/.test(t)) {
    const lamport = Number(t)
    return { count: fold.countAtLamport(lamport), label: `lamport ${lamport}` }
  }
  const matches = findByIdPrefix(log, t)
  if (matches.length > 1) throw ambiguous(t, matches)
  const e = matches[0]
  if (e === undefined) throw new CliError(`no event ${t} in this store`)
  const count = fold.countThrough(e.idHex)
  if (count < 0) throw new CliError(`event ${shortId(e.idHex)} is not folded: ${statusOf(e, log).frozen ?? 'not in the view'}`)
  return { count, label: `event ${shortId(e.idHex)}` }
}
