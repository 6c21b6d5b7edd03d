import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ensureApiToken, writeApiEndpoint } from '../../src/adapters/api-token.js'
import { startApiServer, type ApiServer } from '../../src/adapters/http-api.js'
import { openLevel } from '../../src/adapters/level-db.js'
import { Replica } from '../../src/adapters/replica.js'
import { authorName } from '../../src/log/author.js'
import { toHex } from '../../src/log/bytes.js'
import { compareEvents } from '../../src/log/event.js'
import { replicaReducers } from '../../src/projections/reducers.js'
import { identity, joinBody, NET } from '../support/fixtures.js'
import { assertBuilt, jsonLines, tempRoot, weft } from '../cli/helpers.js'
import { cliReplica, fakeNode, type CliReplica } from './support.js'

/**
 * The CLI against a daemon: the test process plays the daemon. It holds the data dir's LevelDB
 * store open (so the CLI cannot open it) and serves the API on a unix socket named in api.json,
 * and on TCP for --api. Every command must then go through the API.
 */

let root: { dir: string, cleanup: () => Promise<void> }
let dir: string
let replica: CliReplica
let unixServer: ApiServer
let tcpServer: ApiServer
let token: string

const env = { WEFT_API_URL: '', WEFT_API_TOKEN: '' }
const run = async (args: string[], extra: Record<string, string> = {}): ReturnType<typeof weft> =>
  await weft(args, { env: { ...env, ...extra } })

beforeAll(async () => {
  assertBuilt()
  root = await tempRoot()
  dir = join(root.dir, 'node')
  await mkdir(dir, { recursive: true, mode: 0o700 })
  await writeFile(join(dir, 'identity.key'), identity(1).exportPem(), { mode: 0o600 })
  await chmod(join(dir, 'identity.key'), 0o600)
  replica = await Replica.open({ db: await openLevel(join(dir, 'events')), net: NET, reducers: replicaReducers(), signer: identity(1) })
  const b = await cliReplica(2)
  await replica.append('node.join', joinBody('alpha'), 1000)
  await b.append('node.join', joinBody('beta'), 1000)
  await replica.ingest(b.missingFor(replica.frontier()).map((e) => e.envelope))
  await replica.append('ip.claim', { addr: '10.1.0.1' }, 1001)
  await b.close()

  token = await ensureApiToken(dir)
  const node = fakeNode(replica)
  unixServer = await startApiServer({ node, listen: { kind: 'unix', path: join(dir, 'api.sock') }, token })
  tcpServer = await startApiServer({ node, listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, token })
  await writeApiEndpoint(dir, { url: unixServer.url, pid: process.pid, peerId: identity(1).peerId, listen: [`/ip4/127.0.0.1/tcp/4001/p2p/${identity(1).peerId}`] })
})

afterAll(async () => {
  await unixServer?.close()
  await tcpServer?.close()
  await replica?.close()
  await root?.cleanup()
})

describe('weft status / peers against a running daemon', () => {
  it('status --json prints the API status document', async () => {
    const r = await run(['status', '--json', '--data-dir', dir])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const s = JSON.parse(r.stdout) as Record<string, any>
    expect(s).toMatchObject({ peerId: identity(1).peerId, hostname: 'alpha', events: replica.log.size, authors: 2, pending: 0, api: unixServer.url, self: { address: '10.1.0.1' } })
  })

  it('status prints the node table and the peer table', async () => {
    const r = await run(['status', '--data-dir', dir])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^FIELD\s+VALUE/)
    for (const text of ['alpha', identity(1).peerId, '1 connected, 1 online', 'from 2 authors', '10.1.0.1', 'alpha.default.weft.internal', '7 rounds, 42 events pulled, last 2s ago', 'up 1m30s']) {
      expect(r.stdout, text).toContain(text)
    }
    expect(r.stdout).toMatch(/\nPEER ID\s+HOST\s+OVERLAY\s+CONNECTED\s+ONLINE\s+LAST SEEN\s+RTT\s+PATH\s+ADDRESSES\n/)
    expect(r.stdout).toMatch(/beta\s+-\s+yes\s+yes\s+1s ago\s+3\.4 ms\s+-\s+\/ip4\/10\.0\.0\.2\/tcp\/4001/)
  })

  it('peers ls --json', async () => {
    const r = await run(['peers', 'ls', '--json', '--data-dir', dir])
    expect(r.code).toBe(0)
    const j = JSON.parse(r.stdout) as { peers: Array<{ hostname?: string, connected: boolean }> }
    expect(j.peers).toHaveLength(2)
    expect(j.peers[0]).toMatchObject({ hostname: 'beta', connected: true })
  })

  it('--api with a token from --api-token-file or WEFT_API_TOKEN; a wrong token is refused', async () => {
    const tokenFile = join(root.dir, 'token')
    await writeFile(tokenFile, `${token}\n`, { mode: 0o600 })
    const nowhere = join(root.dir, 'nowhere')
    const byFile = await run(['status', '--json', '--api', tcpServer.url, '--api-token-file', tokenFile, '--data-dir', nowhere])
    expect(byFile.stderr).toBe('')
    expect((JSON.parse(byFile.stdout) as { peerId: string }).peerId).toBe(identity(1).peerId)
    const byEnv = await run(['status', '--json', '--data-dir', nowhere], { WEFT_API_URL: tcpServer.url, WEFT_API_TOKEN: token })
    expect(byEnv.code).toBe(0)

    const wrong = await run(['status', '--api', tcpServer.url, '--data-dir', nowhere], { WEFT_API_TOKEN: 'wrong-token-wrong-token' })
    expect(wrong.code).toBe(2)
    expect(wrong.stderr).toMatch(/^weft: the API at http:\/\/127\.0\.0\.1:\d+ refused the token/)
    const none = await run(['status', '--api', tcpServer.url, '--data-dir', nowhere])
    expect(none.code).toBe(2)
    expect(none.stderr).toContain('give --api-token-file <file> or set WEFT_API_TOKEN')
    const badUrl = await run(['status', '--api', 'ftp://x', '--data-dir', nowhere], { WEFT_API_TOKEN: token })
    expect(badUrl.code).toBe(2)
    expect(badUrl.stderr).toContain('is not an API URL')
  })

  it('no daemon: no api.json, or one whose daemon is gone', async () => {
    const empty = join(root.dir, 'empty')
    await mkdir(empty)
    const r = await run(['status', '--data-dir', empty])
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`weft: no running daemon found for ${empty}: ${join(empty, 'api.json')} is missing (start one with "weft up", or give --api <url>)\n`)

    const dead = join(root.dir, 'dead')
    await ensureApiToken(dead)
    await writeApiEndpoint(dead, { url: `unix:${join(dead, 'api.sock')}`, pid: 2 ** 22 + 1, peerId: 'x', listen: [] })
    const gone = await run(['status', '--data-dir', dead])
    expect(gone.code).toBe(2)
    expect(gone.stderr).toContain(`weft: cannot reach the weft API at unix:${join(dead, 'api.sock')}: the socket does not exist; the daemon (pid ${2 ** 22 + 1}) named in ${join(dead, 'api.json')} is not running`)
  })
})

describe('weft settings against a running daemon', () => {
  it('get, set, get again: the value, and the event that set it', async () => {
    const before = await run(['settings', 'get', '--json', '--data-dir', dir])
    expect(before.code).toBe(0)
    expect(JSON.parse(before.stdout)).toMatchObject({ values: { mtu: 1420, zone: 'weft.internal' }, origin: {} })

    const size = replica.log.size
    const set = await run(['settings', 'set', 'mtu', '1400', '--data-dir', dir])
    expect(set.stderr).toBe('')
    expect(set.code).toBe(0)
    expect(set.stdout).toMatch(/^mtu = 1400 \(event [0-9a-f]{12};/)
    expect(replica.log.size).toBe(size + 1)
    const ev = [...replica.log.events()].find((e) => e.fields.type === 'settings.change')!

    const one = await run(['settings', 'get', 'mtu', '--json', '--data-dir', dir])
    expect(JSON.parse(one.stdout)).toEqual({ key: 'mtu', value: 1400, origin: { author: ev.authorHex, event: ev.idHex, lamport: ev.fields.lamport } })
    const human = await run(['settings', 'get', '--data-dir', dir])
    expect(human.stdout).toMatch(/^KEY\s+VALUE\s+ORIGIN/)
    expect(human.stdout).toMatch(new RegExp(`mtu\\s+1400\\s+event ${ev.idHex.slice(0, 12)} by 12D3KooW…`))
    expect(human.stdout).toMatch(/zone\s+"weft\.internal"\s+default/)

    const same = await run(['settings', 'set', 'mtu', '1400', '--data-dir', dir])
    expect(same.code).toBe(0)
    expect(same.stdout).toBe('mtu is already 1400; nothing changed\n')
    expect(replica.log.size).toBe(size + 1)
  })

  it('an unknown key or a bad value exits 2 with the reason and appends nothing', async () => {
    const size = replica.log.size
    const key = await run(['settings', 'set', 'nope', '1', '--data-dir', dir])
    expect(key.code).toBe(2)
    expect(key.stderr).toBe('weft: unknown setting "nope"; known settings: overlayCidr, overlayCidr6, zone, minNodes, serverCount, dynamicRoles, mtu\n')
    const value = await run(['settings', 'set', 'mtu', '10', '--data-dir', dir])
    expect(value.code).toBe(2)
    expect(value.stderr).toMatch(/^weft: invalid value for mtu: /)
    const get = await run(['settings', 'get', 'nope', '--data-dir', dir])
    expect(get.code).toBe(2)
    expect(replica.log.size).toBe(size)
  })

  it('get folds a stopped data dir itself; set needs a daemon', async () => {
    const stopped = join(root.dir, 'stopped')
    const r = await Replica.open({ db: await openLevel(join(stopped, 'events')), net: NET, reducers: replicaReducers(), signer: identity(3) })
    await r.append('node.join', joinBody('gamma'), 1)
    const { makeSettingsChange } = await import('../../src/projections/settings.js')
    const ev = await r.append('settings.change', { change: makeSettingsChange(r.states().network.settings, toHex(identity(3).publicKey), 'zone', 'corp.example') }, 2)
    await r.close()
    const get = await run(['settings', 'get', 'zone', '--json', '--data-dir', stopped])
    expect(get.stderr).toBe('')
    expect(JSON.parse(get.stdout)).toEqual({ key: 'zone', value: 'corp.example', origin: { author: ev.authorHex, event: ev.idHex, lamport: 2 } })
    const set = await run(['settings', 'set', 'zone', 'x.example', '--data-dir', stopped])
    expect(set.code).toBe(2)
    expect(set.stderr).toContain('"settings set" goes through the running daemon')
  })
})

describe('weft log against a running daemon (store locked, read through the API)', () => {
  it('cat --json lists every event in total order', async () => {
    const r = await run(['log', 'cat', '--json', '--data-dir', dir])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const lines = jsonLines(r.stdout)
    expect(lines.map((l) => l.id)).toEqual([...replica.log.events()].sort(compareEvents).map((e) => e.idHex))
    expect(lines[0]).toMatchObject({ visible: true })
  })

  it('state --json, ls --json and verify', async () => {
    const st = await run(['log', 'state', '--json', '--data-dir', dir])
    expect(st.code).toBe(0)
    const j = JSON.parse(st.stdout) as { network: { members: Array<{ hostname: string, address?: string }> } }
    expect(j.network.members.map((m) => m.hostname).sort()).toEqual(['alpha', 'beta'])
    expect(j.network.members.find((m) => m.hostname === 'alpha')?.address).toBe('10.1.0.1')

    const ls = await run(['log', 'ls', '--json', '--data-dir', dir])
    const feeds = (JSON.parse(ls.stdout) as { feeds: Array<{ peerId: string, self: boolean }> }).feeds
    expect(feeds.find((f) => f.peerId === identity(1).peerId)?.self).toBe(true)

    const v = await run(['log', 'verify', '--data-dir', dir])
    expect(v.code).toBe(0)
    expect(v.stdout).toContain(`ok: ${replica.log.size} events checked`)
    expect(v.stderr).toMatch(/^weft: note: the event store is in use by the running daemon; checking the \d+ events it serves at unix:/)
  })

  it('export and diff work on the copy too', async () => {
    const ex = await run(['log', 'export', '--data-dir', dir])
    expect(ex.code).toBe(0)
    expect(jsonLines(ex.stdout)).toHaveLength(replica.log.size)
    const diff = await run(['log', 'diff', dir, dir, '--json'])
    expect(diff.code).toBe(0)
    expect(JSON.parse(diff.stdout)).toMatchObject({ identical: true })
  })

  it('import sends the events to the daemon', async () => {
    const c = await cliReplica(4)
    await c.ingest([...replica.log.events()].sort(compareEvents).map((e) => e.envelope))
    const c1 = await c.append('node.join', joinBody('delta'), 5000)
    const c2 = await c.append('ip.claim', { addr: '10.1.0.4' }, 5001)
    await c.close()
    const line = (e: typeof c1): string => JSON.stringify({ id: e.idHex, author: authorName(e.fields.author), seq: e.fields.seq, lamport: e.fields.lamport, type: e.fields.type, envelope: Buffer.from(e.envelope).toString('base64') })
    const file = join(root.dir, 'import.jsonl')
    await writeFile(file, `${line(c1)}\n${line(c2)}\n{"envelope": "!!"}\n`)
    const r = await run(['log', 'import', file, '--json', '--data-dir', dir])
    expect(r.code).toBe(1) // the bad line
    const rep = JSON.parse(r.stdout) as Record<string, any>
    expect(rep).toMatchObject({ ok: false, lines: 3, stored: 2, duplicates: 0, parked: [], invalid: [{ line: 3, code: 'ERR_BAD_INPUT' }] })
    expect(rep.note).toContain('through its API at unix:')
    expect(replica.log.has(c1.idHex) && replica.log.has(c2.idHex)).toBe(true)

    const again = await run(['log', 'import', file, '--data-dir', dir])
    expect(again.stdout).toContain('import: 3 lines, 0 stored, 2 already present, 0 parked, 1 invalid')
  })
})
