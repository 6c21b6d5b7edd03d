import { canonicalDecode, canonicalEncode } from '../log/cbor.js'
import { fromHex, toHex } from '../log/bytes.js'
import { WeftError } from '../log/errors.js'

/** What a replica holds of one author's feed: its highest seq, its head, and other tips if forked. */
export interface FrontierEntry {
  seq: number
  head: string
  forks: string[]
}

/** author (hex) → entry. */
export type Frontier = Map<string, FrontierEntry>

/** Most fork heads one frontier row carries (decodeFrontier refuses longer lists). */
export const MAX_FRONTIER_FORKS = 64

/**
 * Wire form: a CBOR array of [author(32), seq, head(32)] or [author, seq, head, [fork heads]]:
 * about 73 bytes per unforked author. A feed with more than MAX_FRONTIER_FORKS fork heads
 * (an equivocator signing many branches) lists only the first ones (MergedLog lists the
 * highest seqs first): the peer may then resend branches we hold, never fewer events, and one
 * author can no longer make a whole frontier undecodable.
 */
export function encodeFrontier (f: Frontier): Uint8Array {
  const rows: unknown[] = []
  for (const [author, e] of [...f].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const row: unknown[] = [fromHex(author), e.seq, fromHex(e.head)]
    if (e.forks.length > 0) row.push(e.forks.slice(0, MAX_FRONTIER_FORKS).map(fromHex))
    rows.push(row)
  }
  return canonicalEncode(rows)
}

const isKey = (v: unknown): v is Uint8Array => v instanceof Uint8Array && v.byteLength === 32

export function decodeFrontier (bytes: Uint8Array, maxAuthors = 100_000): Frontier {
  const rows = canonicalDecode(bytes)
  if (!Array.isArray(rows) || rows.length > maxAuthors) {
    throw new WeftError('ERR_BAD_INPUT', `a frontier is a CBOR array of at most ${maxAuthors} rows`)
  }
  const f: Frontier = new Map()
  for (const row of rows) {
    if (!Array.isArray(row) || (row.length !== 3 && row.length !== 4) || !isKey(row[0]) ||
        !Number.isSafeInteger(row[1]) || (row[1] as number) < 1 || !isKey(row[2])) {
      throw new WeftError('ERR_BAD_INPUT', 'malformed frontier row: expected [author, seq, head, forks?]')
    }
    const forks = row[3] ?? []
    if (!Array.isArray(forks) || forks.length > MAX_FRONTIER_FORKS || !forks.every(isKey)) {
      throw new WeftError('ERR_BAD_INPUT', 'malformed frontier fork list')
    }
    f.set(toHex(row[0]), { seq: row[1] as number, head: toHex(row[2]), forks: forks.map(toHex) })
  }
  return f
}
