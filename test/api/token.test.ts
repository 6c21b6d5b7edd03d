import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  apiEndpointPath, apiTokenPath, ensureApiToken, readApiEndpoint, readApiToken, readTokenFile, removeApiEndpoint, writeApiEndpoint
} from '../../src/adapters/api-token.js'
import { isWeftError } from '../../src/log/errors.js'

let root: string
let n = 0
const dir = (): string => join(root, `d${++n}`)

beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'weft-api-token-')) })
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

const endpoint = { url: 'unix:/run/weft/api.sock', pid: 4242, peerId: '12D3KooWtest', listen: ['/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWtest'] }

describe('api.token', () => {
  it('is made once: 32 random bytes as base64url, mode 0600, the same on every later call', async () => {
    const d = dir()
    const t = await ensureApiToken(d)
    expect(t).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(Buffer.from(t, 'base64url')).toHaveLength(32)
    expect((await stat(apiTokenPath(d))).mode & 0o777).toBe(0o600)
    expect((await stat(d)).mode & 0o777).toBe(0o700)
    expect(await ensureApiToken(d)).toBe(t)
    expect(await readApiToken(d)).toBe(t)
    expect(await ensureApiToken(dir())).not.toBe(t)
    // No temporary files left behind.
    expect(await readdir(d)).toEqual(['api.token'])
  })

  it('concurrent first calls agree on one token', async () => {
    const d = dir()
    const tokens = await Promise.all([1, 2, 3, 4, 5].map(async () => await ensureApiToken(d)))
    expect(new Set(tokens).size).toBe(1)
  })

  it('a token readable by group or others is refused, not fixed', async () => {
    const d = dir()
    await ensureApiToken(d)
    await chmod(apiTokenPath(d), 0o644)
    for (const read of [ensureApiToken, readApiToken]) {
      const err = await read(d).catch((e: unknown) => e)
      expect(isWeftError(err, 'ERR_KEY_PERMISSIONS')).toBe(true)
      expect((err as Error).message).toContain('readable by others (mode 644)')
      expect((err as Error).message).toContain('chmod 600')
    }
    expect((await stat(apiTokenPath(d))).mode & 0o777).toBe(0o644)
    await chmod(apiTokenPath(d), 0o640)
    await expect(readApiToken(d)).rejects.toThrow(/mode 640/)
  })

  it('a missing token is ERR_NOT_FOUND; a file that holds no token is refused', async () => {
    const d = dir()
    const missing = await readApiToken(d).catch((e: unknown) => e)
    expect(isWeftError(missing, 'ERR_NOT_FOUND')).toBe(true)
    const f = join(root, 'bad.token')
    await writeFile(f, 'two words\n', { mode: 0o600 })
    await expect(readTokenFile(f)).rejects.toThrow(/does not hold an API token/)
    await writeFile(f, '  abcdefghijklmnopqrstuvwxyz012345  \n', { mode: 0o600 })
    expect(await readTokenFile(f)).toBe('abcdefghijklmnopqrstuvwxyz012345')
  })
})

describe('api.json', () => {
  it('is written atomically with mode 0600, read back, and removed', async () => {
    const d = dir()
    expect(await readApiEndpoint(d)).toBeUndefined()
    await writeApiEndpoint(d, endpoint)
    expect((await stat(apiEndpointPath(d))).mode & 0o777).toBe(0o600)
    expect(await readApiEndpoint(d)).toEqual(endpoint)
    await writeApiEndpoint(d, { ...endpoint, url: 'http://127.0.0.1:8080' })
    expect((await readApiEndpoint(d))?.url).toBe('http://127.0.0.1:8080')
    expect(await readdir(d)).toEqual(['api.json'])
    await removeApiEndpoint(d)
    expect(await readApiEndpoint(d)).toBeUndefined()
    await removeApiEndpoint(d) // already gone: fine
  })

  it('removeApiEndpoint(dir, pid) leaves the file of another daemon alone', async () => {
    const d = dir()
    await writeApiEndpoint(d, endpoint)
    await removeApiEndpoint(d, 1)
    expect(await readApiEndpoint(d)).toEqual(endpoint)
    await removeApiEndpoint(d, endpoint.pid)
    expect(await readApiEndpoint(d)).toBeUndefined()
  })

  it('refuses to write a bad endpoint and reports a damaged file', async () => {
    const d = dir()
    await expect(writeApiEndpoint(d, { ...endpoint, url: 'ftp://x' })).rejects.toThrow(/url/)
    await expect(writeApiEndpoint(d, { ...endpoint, url: 'unix:relative.sock' })).rejects.toThrow(/url/)
    await mkdir(d)
    await writeFile(apiEndpointPath(d), '{"url": 1')
    await expect(readApiEndpoint(d)).rejects.toThrow(/is not JSON/)
    await writeFile(apiEndpointPath(d), '{"url": "http://x:1"}')
    await expect(readApiEndpoint(d)).rejects.toThrow(/is not an API endpoint file: pid/)
    expect(JSON.parse(await readFile(apiEndpointPath(d), 'utf8'))).toEqual({ url: 'http://x:1' })
  })
})
