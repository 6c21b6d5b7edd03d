import { readFile } from 'node:fs/promises'
import { CliError } from './errors.js'

/** The whole of stdin as UTF-8. */
export async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/** A file's text, or stdin for "-"; an unreadable file is a usage error. */
export async function readInput (file: string): Promise<string> {
  if (file === '-') return await readStdin()
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new CliError(`cannot read ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`)
  }
}

/** Strict base64 (standard alphabet, padded): anything Buffer would silently skip is refused. */
export function decodeBase64 (text: string): Uint8Array | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined
  const b = Buffer.from(text, 'base64')
  if (b.toString('base64') !== text) return undefined
  return new Uint8Array(b)
}
