import { describe, expect, it } from 'vitest'
import { cookieValue, DashboardSessions, LOGIN_LIMITS } from '../../src/adapters/dashboard-sessions.js'
import { dashboardUrl } from '../../src/cli/dashboard.js'

describe('DashboardSessions', () => {
  it('a code is redeemed once, within its lifetime, for a session that expires', () => {
    let now = 1_000
    const s = new DashboardSessions(() => now)
    const code = s.issueCode()
    expect(code.expiresAt).toBe(1_000 + LOGIN_LIMITS.codeTtlMs)
    const session = s.redeem(code.secret)
    expect(session).toBeDefined()
    expect(s.redeem(code.secret)).toBeUndefined()
    expect(s.valid(session?.secret as string)).toBe(true)
    expect(s.valid(code.secret)).toBe(false) // a code is no session
    const late = s.issueCode()
    now += LOGIN_LIMITS.codeTtlMs
    expect(s.redeem(late.secret)).toBeUndefined()
    now = 1_000 + LOGIN_LIMITS.sessionTtlMs
    expect(s.valid(session?.secret as string)).toBe(false)
    expect(s.counts.sessions).toBe(0)
  })

  it('holds at most maxCodes codes and maxSessions sessions, dropping the oldest', () => {
    const s = new DashboardSessions(() => 0)
    const codes = Array.from({ length: LOGIN_LIMITS.maxCodes + 3 }, () => s.issueCode().secret)
    expect(s.counts.codes).toBe(LOGIN_LIMITS.maxCodes)
    expect(s.redeem(codes[0] as string)).toBeUndefined()
    const sessions = [s.redeem(codes.at(-1) as string)?.secret as string]
    for (let i = 0; i < LOGIN_LIMITS.maxSessions + 2; i++) sessions.push(s.redeem(s.issueCode().secret)?.secret as string)
    expect(s.counts.sessions).toBe(LOGIN_LIMITS.maxSessions)
    expect(s.valid(sessions[0] as string)).toBe(false)
    expect(s.valid(sessions.at(-1) as string)).toBe(true)
  })

  it('reads one cookie by name, and trusts neither of two with the same name', () => {
    expect(cookieValue('a=1; weft_session_8080=xyz; b=2', 'weft_session_8080')).toBe('xyz')
    expect(cookieValue('weft_session_8080=xyz; weft_session_8080=abc', 'weft_session_8080')).toBeUndefined()
    expect(cookieValue('weft_session_9090=xyz', 'weft_session_8080')).toBeUndefined()
    expect(cookieValue(undefined, 'x')).toBeUndefined()
  })
})

describe('weft dashboard URL', () => {
  it('reaches a wildcard listen address on loopback, and refuses a unix socket', () => {
    expect(dashboardUrl('http://127.0.0.1:8080', '/dashboard/login?code=x')).toBe('http://127.0.0.1:8080/dashboard/login?code=x')
    expect(dashboardUrl('http://0.0.0.0:8080', '/p')).toBe('http://127.0.0.1:8080/p')
    expect(dashboardUrl('http://[::]:8080', '/p')).toBe('http://[::1]:8080/p')
    expect(() => dashboardUrl('unix:/run/weft/api.sock', '/p')).toThrow(/--api 127\.0\.0\.1:<port>/)
  })
})
