import { isWeftError } from '../log/errors.js'
import { flush } from './output.js'

/**
 * Exit codes of every `weft` command:
 *   0  ok
 *   1  a check ran and failed (verify found a bad event, import found an invalid line,
 *      diff found a difference)
 *   2  the command could not run: usage error, bad input (token, id, flag value), no store,
 *      store locked, damaged store, or any other failure
 */
export const EXIT_OK = 0
export const EXIT_CHECK_FAILED = 1
export const EXIT_USAGE = 2

/** An error meant for the user: printed as `weft: <message>`, exits with `exitCode`. */
export class CliError extends Error {
  constructor (message: string, readonly exitCode: number = EXIT_USAGE) {
    super(message)
    this.name = 'CliError'
  }
}

/** One line, no stack trace (set WEFT_DEBUG=1 for the stack of an unexpected error). */
export function reportError (err: unknown): number {
  let message: string
  let code = EXIT_USAGE
  if (err instanceof CliError) {
    message = err.message
    code = err.exitCode
  } else if (isWeftError(err)) {
    message = err.message
  } else if (err instanceof Error) {
    message = err.message
    if (process.env.WEFT_DEBUG !== undefined && process.env.WEFT_DEBUG !== '') process.stderr.write(`${err.stack ?? ''}\n`)
  } else {
    message = String(err)
  }
  process.stderr.write(`weft: ${oneLine(message)}\n`)
  return code
}

export function oneLine (text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim()
}

/**
 * Runs one command body: its return value is the exit code; a thrown error becomes one
 * `weft: <message>` line on stderr. Buffered stdout is flushed first, so partial output and the
 * error keep their order.
 */
export async function run (fn: () => Promise<number> | number): Promise<void> {
  let code: number
  try {
    code = await fn()
  } catch (err) {
    flush()
    code = reportError(err)
  }
  flush()
  process.exitCode = code
}
