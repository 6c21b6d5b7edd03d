import { toHex } from '../log/bytes.js'

/**
 * Output helpers shared by every command: stdout for results (tables for people, JSON with
 * `--json`), stderr for errors and progress. Nothing here knows about a particular noun.
 */

/** Maps → objects, Sets → arrays, bytes → hex, bigint → string, undefined dropped. */
export function plain (value: unknown): unknown {
  if (value instanceof Uint8Array) return toHex(value)
  if (value instanceof Map) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of value) out[typeof k === 'string' ? k : String(plain(k))] = plain(v)
    return out
  }
  if (value instanceof Set) return [...value].map(plain)
  if (Array.isArray(value)) return value.map(plain)
  if (typeof value === 'bigint') return value.toString()
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = plain(v)
    return out
  }
  return value
}

/** JSON with object keys sorted at every level: equal values give equal strings. */
export function stableStringify (value: unknown): string {
  return JSON.stringify(sortKeys(plain(value)))
}

function sortKeys (v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys)
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(v).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k])
    return out
  }
  return v
}

let pending: string[] = []
let pendingBytes = 0

/** Buffered stdout: many small lines cost one write per 64 KiB. Call `flush()` before exiting. */
export function out (line = ''): void {
  pending.push(line, '\n')
  pendingBytes += line.length + 1
  if (pendingBytes >= 65536) flush()
}

export function flush (): void {
  if (pending.length === 0) return
  process.stdout.write(pending.join(''))
  pending = []
  pendingBytes = 0
}

/** Pretty JSON document on stdout. */
export function printJson (value: unknown): void {
  out(JSON.stringify(plain(value), null, 2))
}

/** One compact JSON value per line (JSON Lines). */
export function printJsonLine (value: unknown): void {
  out(JSON.stringify(plain(value)))
}

/** A plain text table: columns padded to their widest cell, two spaces apart, no trailing blanks. */
export function table (headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd()
  return [line(headers), ...rows.map(line)].join('\n')
}

export function printTable (headers: readonly string[], rows: ReadonlyArray<readonly string[]>): void {
  out(table(headers, rows))
}

/** Short form of a peer id for tables: `12D3KooW…` + last 6 characters. */
export function shortPeer (peerId: string): string {
  return peerId.length <= 16 ? peerId : `${peerId.slice(0, 8)}…${peerId.slice(-6)}`
}

export function shortId (idHex: string): string {
  return idHex.slice(0, 12)
}

export function plural (n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`
}

export interface Progress {
  tick (done: number, total?: number): void
  done (): void
}

/**
 * Progress on stderr, only when stderr is a terminal (never in pipes, files or tests), at most
 * five updates a second.
 */
export function progress (label: string): Progress {
  if (process.stderr.isTTY !== true) return { tick () {}, done () {} }
  let last = 0
  let shown = false
  return {
    tick (done, total) {
      const now = Date.now()
      if (now - last < 200) return
      last = now
      shown = true
      process.stderr.write(`\r${label} ${done}${total === undefined ? '' : `/${total}`}\u001b[K`)
    },
    done () {
      if (shown) process.stderr.write('\r\u001b[K')
    }
  }
}
