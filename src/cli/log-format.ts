/**
 * `--log-format pretty`: the daemon's pino JSON lines made readable on a terminal, one line each:
 * `2026-12-05T05:01:02.003Z WARN  message  key=value …`. A tiny formatter (no pino-pretty
 * dependency); the JSON format stays the default off a terminal (journald, files, tests).
 */

export type LogFormat = 'json' | 'pretty'

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' }
/** ANSI colours per level, only on a terminal. */
const COLOURS: Record<number, string> = { 10: '90', 20: '90', 30: '32', 40: '33', 50: '31', 60: '35' }
/** Fields every line has, shown in the line's head rather than as key=value. */
const HEAD = new Set(['level', 'time', 'msg', 'pid', 'hostname'])

/** The format when --log-format is not given: pretty on a terminal, else JSON lines. */
export function defaultLogFormat (isTty: boolean | undefined): LogFormat {
  return isTty === true ? 'pretty' : 'json'
}

/** One pino JSON line as a human line (no newline). A line that is not JSON passes through. */
export function prettyLine (line: string, colour = false): string {
  let o: Record<string, unknown>
  try {
    o = JSON.parse(line) as Record<string, unknown>
  } catch {
    return line.replace(/\n$/, '')
  }
  const lvl = typeof o.level === 'number' ? o.level : 30
  const name = (LEVELS[lvl] ?? String(lvl)).padEnd(5)
  const time = typeof o.time === 'string' ? o.time : typeof o.time === 'number' ? new Date(o.time).toISOString() : ''
  const fields = Object.entries(o).filter(([k]) => !HEAD.has(k)).map(([k, v]) => `${k}=${value(v)}`)
  const head = colour ? `\u001b[${COLOURS[lvl] ?? '0'}m${name}\u001b[0m` : name
  return [time, head, typeof o.msg === 'string' ? o.msg : '', ...fields].filter((x) => x !== '').join('  ')
}

function value (v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)
  return JSON.stringify(v)
}

/** A pino destination writing pretty lines to stderr (synchronously, as the JSON one does). */
export function prettyDestination (colour: boolean): { write: (line: string) => void } {
  return {
    write (chunk: string): void {
      for (const line of chunk.split('\n')) if (line !== '') process.stderr.write(`${prettyLine(line, colour)}\n`)
    }
  }
}
