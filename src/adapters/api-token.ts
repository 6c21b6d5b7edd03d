import { randomBytes } from 'node:crypto'
import { readFileSync, unlinkSync } from 'node:fs'
import { mkdir, readFile, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { isWeftError, WeftError } from '../log/errors.js'
import { ApiEndpointSchema, type ApiEndpoint } from './api-types.js'
import { formatZodIssues } from '../log/event.js'
import { createPrivateFile, replacePrivateFile } from './private-file.js'

/**
 * The two files through which the CLI finds a running daemon's HTTP API:
 *
 * - `<dataDir>/api.token`: the bearer token every API request needs. 32 random bytes,
 *   base64url, mode 0600, made on first use and kept across restarts. A token readable by group
 *   or others is refused, not silently fixed: it may have leaked.
 * - `<dataDir>/api.json`: where the API listens (`{url, pid, peerId, listen}`), written by the
 *   daemon once it listens and removed when it stops. Its presence does not prove the daemon is
 *   alive (a `kill -9` leaves it): clients find out when they connect.
 */
export const API_TOKEN_FILE = 'api.token'
export const API_ENDPOINT_FILE = 'api.json'

const TOKEN_BYTES = 32
const TOKEN_RE = /^[A-Za-z0-9_-]{16,512}$/

export function apiTokenPath (dataDir: string): string {
  return join(dataDir, API_TOKEN_FILE)
}

export function apiEndpointPath (dataDir: string): string {
  return join(dataDir, API_ENDPOINT_FILE)
}

/** The API token of a data dir, created (0600, atomically) if missing. */
export async function ensureApiToken (dataDir: string): Promise<string> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const path = apiTokenPath(dataDir)
  try {
    return await readTokenFile(path)
  } catch (err) {
    if (!isWeftError(err, 'ERR_NOT_FOUND')) throw err
  }
  const token = randomBytes(TOKEN_BYTES).toString('base64url')
  // Created, never replaced: a token another process created meanwhile is kept, and we use it.
  return await createPrivateFile(path, `${token}\n`) ? token : await readTokenFile(path)
}

/** The API token of a data dir; ERR_NOT_FOUND if there is none. */
export async function readApiToken (dataDir: string): Promise<string> {
  return await readTokenFile(apiTokenPath(dataDir))
}

/** Read a token file (also one given with --api-token-file): private, one token, trimmed. */
export async function readTokenFile (path: string): Promise<string> {
  let mode: number
  try {
    mode = (await stat(path)).mode
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new WeftError('ERR_NOT_FOUND', `no API token file ${path}`)
    throw new WeftError('ERR_BAD_INPUT', `cannot read the API token file ${path}: ${(err as Error).message}`)
  }
  if ((mode & 0o077) !== 0) {
    throw new WeftError('ERR_KEY_PERMISSIONS', `the API token file ${path} is readable by others (mode ${(mode & 0o777).toString(8)}); run "chmod 600 ${path}" if it has not leaked, or delete it (the daemon makes a new one when it starts)`)
  }
  const text = (await readFile(path, 'utf8')).trim()
  if (!TOKEN_RE.test(text)) {
    throw new WeftError('ERR_KEY_CONTENT', `${path} does not hold an API token (one line of base64url); delete it and restart the daemon to make a new one`)
  }
  return text
}

/** Write `<dataDir>/api.json` (mode 0600) by rename, so readers see the old file or the new one. */
export async function writeApiEndpoint (dataDir: string, info: ApiEndpoint): Promise<void> {
  const checked = ApiEndpointSchema.safeParse(info)
  if (!checked.success) throw new WeftError('ERR_BAD_INPUT', `invalid API endpoint: ${formatZodIssues(checked.error)}`)
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  await replacePrivateFile(apiEndpointPath(dataDir), `${JSON.stringify(checked.data, null, 2)}\n`)
}

/** `<dataDir>/api.json`, or undefined when there is none. A damaged file is an error. */
export async function readApiEndpoint (dataDir: string): Promise<ApiEndpoint | undefined> {
  const path = apiEndpointPath(dataDir)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new WeftError('ERR_BAD_INPUT', `cannot read ${path}: ${(err as Error).message}`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new WeftError('ERR_BAD_INPUT', `${path} is not JSON (${(err as Error).message}); delete it if no daemon runs on this data dir`)
  }
  const r = ApiEndpointSchema.safeParse(json)
  if (!r.success) throw new WeftError('ERR_BAD_INPUT', `${path} is not an API endpoint file: ${formatZodIssues(r.error)}; delete it if no daemon runs on this data dir`)
  return r.data
}

/**
 * Remove `<dataDir>/api.json`. With `pid`, only if the file names that pid: a daemon that stops
 * must not remove the file of another daemon that started since on the same data dir.
 */
export async function removeApiEndpoint (dataDir: string, pid?: number): Promise<void> {
  if (pid !== undefined) {
    let current: ApiEndpoint | undefined
    try {
      current = await readApiEndpoint(dataDir)
    } catch {
      current = undefined // a damaged file is removed
    }
    if (current !== undefined && current.pid !== pid) return
  }
  await unlink(apiEndpointPath(dataDir)).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err
  })
}

/**
 * removeApiEndpoint for a process about to exit (a second SIGTERM): synchronous, and only the
 * file of this pid. Never throws.
 */
export function removeApiEndpointSync (dataDir: string, pid: number): void {
  const path = apiEndpointPath(dataDir)
  try {
    const e = ApiEndpointSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')))
    if (e.success && e.data.pid !== pid) return
    unlinkSync(path)
  } catch {}
}
