import { createHash, randomBytes } from 'node:crypto'

/**
 * Logins to the dashboard (docs/dashboard.md). Whoever holds the API token asks for a login
 * code (`weft dashboard`); the browser trades it once, within LOGIN_LIMITS.codeTtlMs, for a
 * session, carried by an HttpOnly SameSite=Strict cookie, so the token itself never enters the
 * browser and no secret stays in the page's URL. Codes and sessions are kept as SHA-256 digests
 * only, in memory: a restart logs every browser out. Both tables are bounded (the oldest entry
 * goes first).
 */

export const LOGIN_LIMITS = {
  /** A login code is good for this long, once. */
  codeTtlMs: 60_000,
  /** Codes waiting to be used at once. */
  maxCodes: 16,
  /** A session lasts this long from its login (not extended by use). */
  sessionTtlMs: 12 * 60 * 60 * 1000,
  /** Sessions at once (browsers logged in). */
  maxSessions: 32
} as const

export interface Login { secret: string, expiresAt: number }

function digest (secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex')
}

/** A map of digest → expiry, bounded, where expired entries are dropped on every access. */
class ExpiringSet {
  private readonly entries = new Map<string, number>()
  constructor (private readonly max: number) {}

  add (key: string, expiresAt: number, now: number): void {
    this.sweep(now)
    while (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value as string)
    this.entries.set(key, expiresAt)
  }

  has (key: string, now: number): boolean {
    this.sweep(now)
    return this.entries.has(key)
  }

  delete (key: string): boolean { return this.entries.delete(key) }

  get size (): number { return this.entries.size }

  private sweep (now: number): void {
    for (const [k, exp] of this.entries) if (exp <= now) this.entries.delete(k)
  }
}

export class DashboardSessions {
  private readonly codes = new ExpiringSet(LOGIN_LIMITS.maxCodes)
  private readonly sessions = new ExpiringSet(LOGIN_LIMITS.maxSessions)

  constructor (private readonly now: () => number = Date.now) {}

  /** A new one-time login code. */
  issueCode (): Login {
    const secret = randomBytes(24).toString('base64url')
    const expiresAt = this.now() + LOGIN_LIMITS.codeTtlMs
    this.codes.add(digest(secret), expiresAt, this.now())
    return { secret, expiresAt }
  }

  /** Trade a login code for a session; undefined when the code is unknown, used or expired. */
  redeem (code: string): Login | undefined {
    const key = digest(code)
    if (!this.codes.has(key, this.now())) return undefined
    this.codes.delete(key)
    const secret = randomBytes(32).toString('base64url')
    const expiresAt = this.now() + LOGIN_LIMITS.sessionTtlMs
    this.sessions.add(digest(secret), expiresAt, this.now())
    return { secret, expiresAt }
  }

  valid (session: string): boolean {
    return this.sessions.has(digest(session), this.now())
  }

  end (session: string): void {
    this.sessions.delete(digest(session))
  }

  get counts (): { codes: number, sessions: number } {
    return { codes: this.codes.size, sessions: this.sessions.size }
  }
}

/** The value of cookie `name` in a Cookie header, if present once. */
export function cookieValue (header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  let found: string | undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue
    if (found !== undefined) return undefined // two cookies of one name: trust neither
    found = part.slice(eq + 1).trim()
  }
  return found
}
