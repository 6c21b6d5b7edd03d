import { authorName } from '../log/author.js'
import { fromHex } from '../log/bytes.js'
import { compareEvents, type SignedEvent } from '../log/event.js'
import type { MergedLog } from '../crdt/merged-log.js'
import { openReplica, sameDir, type OpenReplica } from './data-dir.js'
import { EXIT_CHECK_FAILED, EXIT_OK } from './errors.js'
import { out, plural, printJson, shortId, shortPeer, stableStringify, table } from './output.js'

const FIRST_IDS = 3

interface Side { seq: number, head: string, forks: string[], events: number }
interface AuthorDiff {
  peerId: string
  author: string
  a: Side | null
  b: Side | null
  onlyA: { count: number, first: string[] }
  onlyB: { count: number, first: string[] }
}

/**
 * `weft log diff <a> <b>`: per author, the frontiers and the events only one side holds (a
 * count and the first ids in total order), then whether the folded states are equal. Identical
 * means the same set of events: exit 0; otherwise exit 1.
 */
export async function logDiff (dirA: string, dirB: string, o: { json: boolean }): Promise<number> {
  const a = await openReplica(dirA)
  let b: OpenReplica | undefined
  try {
    b = sameDir(dirA, dirB) ? a : await openReplica(dirB)
    if (a.netHex !== b.netHex) {
      if (o.json) printJson({ identical: false, networkA: a.netHex, networkB: b.netHex, authors: [], statesEqual: false })
      else out(`different networks: ${dirA} holds ${a.netHex}, ${dirB} holds ${b.netHex}`)
      return EXIT_CHECK_FAILED
    }
    const byAuthorA = groupByAuthor(a.replica.log)
    const byAuthorB = groupByAuthor(b.replica.log)
    const fa = a.replica.log.frontier()
    const fb = b.replica.log.frontier()
    const authors = [...new Set([...byAuthorA.keys(), ...byAuthorB.keys()])].sort()
    const diffs: AuthorDiff[] = []
    for (const author of authors) {
      const evA = byAuthorA.get(author) ?? new Map<string, SignedEvent>()
      const evB = byAuthorB.get(author) ?? new Map<string, SignedEvent>()
      const onlyA = [...evA.values()].filter((e) => !evB.has(e.idHex)).sort(compareEvents)
      const onlyB = [...evB.values()].filter((e) => !evA.has(e.idHex)).sort(compareEvents)
      const side = (f: ReturnType<MergedLog['frontier']>, evs: Map<string, SignedEvent>): Side | null => {
        const e = f.get(author)
        return e === undefined ? null : { seq: e.seq, head: e.head, forks: e.forks, events: evs.size }
      }
      diffs.push({
        peerId: authorName(fromHex(author)),
        author,
        a: side(fa, evA),
        b: side(fb, evB),
        onlyA: { count: onlyA.length, first: onlyA.slice(0, FIRST_IDS).map((e) => e.idHex) },
        onlyB: { count: onlyB.length, first: onlyB.slice(0, FIRST_IDS).map((e) => e.idHex) }
      })
    }
    const differing = diffs.filter((d) => d.onlyA.count > 0 || d.onlyB.count > 0)
    const statesEqual = stableStringify(a.replica.states()) === stableStringify(b.replica.states())
    const identical = differing.length === 0 && statesEqual
    if (o.json) {
      printJson({ identical, network: a.netHex, events: { a: a.replica.log.size, b: b.replica.log.size }, authors: differing, statesEqual })
    } else {
      if (differing.length > 0) {
        const sideText = (s: Side | null): string => (s === null ? '-' : `${s.seq} ${shortId(s.head)}${s.forks.length > 0 ? ` +${s.forks.length}` : ''}`)
        const firstText = (x: { count: number, first: string[] }): string => (x.count === 0 ? '0' : `${x.count} (${x.first.map(shortId).join(' ')}${x.count > x.first.length ? ' …' : ''})`)
        out(table(['PEER', 'A SEQ/HEAD', 'B SEQ/HEAD', 'ONLY IN A', 'ONLY IN B'],
          differing.map((d) => [shortPeer(d.peerId), sideText(d.a), sideText(d.b), firstText(d.onlyA), firstText(d.onlyB)])))
        out()
      }
      out(`events: ${a.replica.log.size} in A, ${b.replica.log.size} in B; ${plural(differing.length, 'author differs', 'authors differ')}; folded states ${statesEqual ? 'equal' : 'differ'}`)
      out(identical ? 'identical' : 'different')
    }
    return identical ? EXIT_OK : EXIT_CHECK_FAILED
  } finally {
    if (b !== undefined && b !== a) await b.close()
    await a.close()
  }
}

function groupByAuthor (log: MergedLog): Map<string, Map<string, SignedEvent>> {
  const out = new Map<string, Map<string, SignedEvent>>()
  for (const e of log.events()) {
    let m = out.get(e.authorHex)
    if (m === undefined) { m = new Map(); out.set(e.authorHex, m) }
    m.set(e.idHex, e)
  }
  return out
}
