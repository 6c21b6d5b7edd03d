import { lstat, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { spawn } from 'node:child_process'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startApiServer, type ApiListen, type ApiServer } from '../../src/adapters/http-api.js'
import { MAX_BODY_BYTES } from '../../src/adapters/api-types.js'
import { toHex } from '../../src/log/bytes.js'
import { isWeftError } from '../../src/log/errors.js'
import { compareEvents, openEnvelope, type SignedEvent } from '../../src/log/event.js'
import { Ed25519Verifier } from '../../src/log/identity.js'
import { SETTING_KEYS } from '../../src/projections/settings.js'
import { ApiClient } from '../../src/cli/api-client.js'
import { CliError } from '../../src/cli/errors.js'
import { KEYS_HELP } from '../../src/cli/settings.js'
import { identity, joinBody, NET } from '../support/fixtures.js'
import { cliReplica, fakeNode, raw, STARTED_AT, type CliReplica, type FakeNode } from './support.js'

const TOKEN = 'test-token-0123456789abcdefghijklmnopqrstuvw'
let tmp: string
let sockets = 0

beforeAll(async () => { tmp = await mkdtemp(join(tmpdir(), 'weft-api-')) })
afterAll(async () => { await rm(tmp, { recursive: true, force: true }) })

async function sync (from: CliReplica, to: CliReplica): Promise<void> {
  const res = await to.ingest(from.missingFor(to.frontier()).map((e) => e.envelope))
  if (res.rejected.length > 0 || res.parked > 0) throw new Error('exchange failed')
}

interface Setup {
  a: CliReplica
  b: CliReplica
  node: FakeNode
  server: ApiServer
  warnings: Array<{ obj: object, msg: string }>
  close: () => Promise<void>
}

/**
 * Node A (identity 1) is served. Four nodes join at lamport 1 (one lamport group of 4 events),
 * then A claims an address (lamport 2) and B, after syncing, claims one too (lamport 3).
 */
async function setup (kind: 'tcp' | 'unix'): Promise<Setup> {
  const a = await cliReplica(1)
  const b = await cliReplica(2)
  const others = [await cliReplica(3), await cliReplica(4)]
  await a.append('node.join', joinBody('alpha'), 1000)
  await b.append('node.join', joinBody('beta'), 1000)
  await others[0]!.append('node.join', joinBody('gamma'), 1000)
  await others[1]!.append('node.join', joinBody('delta'), 1000)
  for (const r of [b, ...others]) await sync(r, a)
  await a.append('ip.claim', { addr: '10.1.0.1' }, 1001)
  await sync(a, b)
  await b.append('ip.claim', { addr: '10.1.0.2' }, 1002)
  await sync(b, a)
  for (const r of others) await r.close()

  const node = fakeNode(a)
  const warnings: Setup['warnings'] = []
  const listen: ApiListen = kind === 'tcp' ? { kind: 'tcp', host: '127.0.0.1', port: 0 } : { kind: 'unix', path: join(tmp, `s${++sockets}.sock`) }
  const server = await startApiServer({ node, listen, token: TOKEN, logger: { warn: (obj, msg) => { warnings.push({ obj, msg }) } } })
  return {
    a, b, node, server, warnings,
    close: async () => { await server.close(); await a.close(); await b.close() }
  }
}

describe.each(['tcp', 'unix'] as const)('HTTP API over %s', (kind) => {
  it('needs the bearer token: 401 without it or with a wrong one, JSON error, WWW-Authenticate', async () => {
    const s = await setup(kind)
    try {
      if (kind === 'tcp') expect(s.server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
      else expect(s.server.url).toMatch(/^unix:\/.*\.sock$/)
      for (const token of [undefined, 'wrong', `${TOKEN}x`, TOKEN.slice(0, -1)]) {
        const r = await raw(s.server.url, 'GET', '/api/v1/status', { token })
        expect(r.status, String(token)).toBe(401)
        expect(r.headers['www-authenticate']).toMatch(/^Bearer/)
        expect(r.headers['content-type']).toMatch(/^application\/json/)
        expect(r.json.error.code).toBe('unauthorized')
        expect(r.text).not.toContain(TOKEN)
      }
      // Unknown paths need the token too: nothing is learnt without it.
      expect((await raw(s.server.url, 'GET', '/nope')).status).toBe(401)
      const basic = await raw(s.server.url, 'GET', '/api/v1/status', { headers: { Authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` } })
      expect(basic.status).toBe(401)
      const ok = await raw(s.server.url, 'GET', '/api/v1/status', { headers: { Authorization: `bearer ${TOKEN}` } })
      expect(ok.status).toBe(200)
    } finally {
      await s.close()
    }
  })

  it('404 for unknown routes, 405 with Allow for a wrong method', async () => {
    const s = await setup(kind)
    try {
      const nf = await raw(s.server.url, 'GET', '/api/v1/nope', { token: TOKEN })
      expect(nf.status).toBe(404)
      expect(nf.json.error).toMatchObject({ code: 'not_found' })
      expect(nf.json.error.message).toContain('/api/v1/status')
      expect((await raw(s.server.url, 'GET', '/api/v1/status/', { token: TOKEN })).status).toBe(404)
      expect((await raw(s.server.url, 'GET', '/api/v1/settings/a/b', { token: TOKEN })).status).toBe(404)
      const na = await raw(s.server.url, 'DELETE', '/api/v1/status', { token: TOKEN })
      expect(na.status).toBe(405)
      expect(na.headers.allow).toBe('GET')
      expect(na.json.error.code).toBe('method_not_allowed')
      const ev = await raw(s.server.url, 'PUT', '/api/v1/events', { token: TOKEN, body: '{}' })
      expect(ev.status).toBe(405)
      expect(ev.headers.allow).toBe('GET, POST')
      expect((await raw(s.server.url, 'GET', '/api/v1/settings/mtu', { token: TOKEN })).status).toBe(405)
    } finally {
      await s.close()
    }
  })

  it('GET /status: the daemon fields, the log counts and this node in the view', async () => {
    const s = await setup(kind)
    try {
      const r = await raw(s.server.url, 'GET', '/api/v1/status', { token: TOKEN })
      expect(r.status).toBe(200)
      expect(r.headers['cache-control']).toBe('no-store')
      expect(r.json).toMatchObject({
        peerId: identity(1).peerId,
        author: toHex(identity(1).publicKey),
        networkId: toHex(NET),
        hostname: 'alpha',
        startedAt: STARTED_AT,
        uptimeMs: 90_000,
        api: s.server.url,
        events: 6,
        authors: 4,
        pending: 0,
        peers: { connected: 1, online: 1 },
        self: { address: '10.1.0.1', dnsName: 'alpha.default.weft.internal' },
        sync: { rounds: 7, eventsPulled: 42 }
      })
      const view = (await raw(s.server.url, 'GET', '/api/v1/state', { token: TOKEN })).json.view
      const me = view.members.find((m: { hostname: string }) => m.hostname === 'alpha')
      expect(r.json.self).toMatchObject({ role: me.role, roleStable: me.roleStable })
      expect(['init', 'server', 'agent']).toContain(r.json.self.role)

      const p = await raw(s.server.url, 'GET', '/api/v1/peers', { token: TOKEN })
      expect(p.status).toBe(200)
      expect(p.json.peers).toEqual(s.node.peerList)
    } finally {
      await s.close()
    }
  })

  it('GET /events pages in total order, never splits a lamport, ends with next null; envelopes verify', async () => {
    const s = await setup(kind)
    try {
      const expected = [...s.a.log.events()].sort(compareEvents)
      // Lamport 1 holds 4 events: a limit of 2 still returns all of them.
      const first = await raw(s.server.url, 'GET', '/api/v1/events?limit=2', { token: TOKEN })
      expect(first.status).toBe(200)
      expect(first.json.events.map((e: { lamport: number }) => e.lamport)).toEqual([1, 1, 1, 1])
      expect(first.json.next).toBe(2)

      // lamports are 1 1 1 1 2 3
      for (const [limit, pagesWanted] of [[1, 3], [2, 2], [3, 2], [1000, 1]] as const) {
        const got: Array<{ id: string, lamport: number, author: string, seq: number, type: string, envelope: string }> = []
        let from: number | null = 0
        let pages = 0
        while (from !== null) {
          const page: { json: { events: typeof got, next: number | null } } = await raw(s.server.url, 'GET', `/api/v1/events?from=${from}&limit=${limit}`, { token: TOKEN })
          const lamports = page.json.events.map((e) => e.lamport)
          // whole lamport groups only
          if (page.json.next !== null) expect(Math.max(...lamports)).toBeLessThan(page.json.next)
          got.push(...page.json.events)
          from = page.json.next
          pages++
        }
        expect(got.map((e) => e.id), `limit ${limit}`).toEqual(expected.map((e) => e.idHex))
        expect(pages, `limit ${limit}`).toBe(pagesWanted)
        for (const e of got) {
          const ev = openEnvelope(Buffer.from(e.envelope, 'base64'), NET, new Ed25519Verifier())
          expect(ev.idHex).toBe(e.id)
          expect(e).toMatchObject({ lamport: ev.fields.lamport, seq: ev.fields.seq, type: ev.fields.type, author: identityPeer(ev) })
        }
      }

      const late = await raw(s.server.url, 'GET', '/api/v1/events?from=3', { token: TOKEN })
      expect(late.json.events).toHaveLength(1)
      expect(late.json.next).toBeNull()
      const past = await raw(s.server.url, 'GET', '/api/v1/events?from=99', { token: TOKEN })
      expect(past.json).toEqual({ events: [], next: null })

      for (const [q, why] of [['limit=0', 'limit'], ['limit=10001', 'limit'], ['limit=abc', 'limit'], ['from=-1', 'from'], ['from=1&from=2', 'twice'], ['frm=1', 'frm']]) {
        const bad = await raw(s.server.url, 'GET', `/api/v1/events?${q}`, { token: TOKEN })
        expect(bad.status, q).toBe(400)
        expect(bad.json.error.code).toBe('bad_request')
        expect(bad.json.error.message, q).toContain(why)
      }
    } finally {
      await s.close()
    }
  })

  it('POST /events ingests envelopes and reports added, duplicates, parked and rejected by index', async () => {
    const s = await setup(kind)
    try {
      const c = await cliReplica(5)
      await sync(s.a, c)
      const c1 = await c.append('node.join', joinBody('epsilon'), 2000)
      const c2 = await c.append('ip.claim', { addr: '10.1.0.9' }, 2001)
      const tampered = new Uint8Array(c1.envelope)
      tampered[tampered.length - 1]! ^= 1
      const body = { envelopes: [b64(c2.envelope), b64(c1.envelope), 'not base64!', b64(tampered), b64(s.a.log.get([...s.a.log.events()][0]!.idHex)!.envelope)] }
      const r = await raw(s.server.url, 'POST', '/api/v1/events', { token: TOKEN, body: JSON.stringify(body) })
      expect(r.status).toBe(200)
      // c2 before its parent c1 in one batch: the log admits both.
      expect(r.json).toMatchObject({ added: 2, duplicates: 1, parked: 0, parkedEvents: [], forks: [] })
      expect(r.json.rejected.map((x: { index: number }) => x.index)).toEqual([2, 3])
      expect(r.json.rejected[0].code).toBe('ERR_BAD_INPUT')
      expect(r.json.rejected[1].code).toBe('ERR_BAD_SIGNATURE')
      expect(s.a.log.has(c1.idHex) && s.a.log.has(c2.idHex)).toBe(true)

      // A child whose parent the node lacks waits for it (reported with the missing parent).
      const c3 = await c.append('ip.release', { addr: '10.1.0.9' }, 2002)
      const c4 = await c.append('ip.claim', { addr: '10.1.0.10' }, 2003)
      const parked = await raw(s.server.url, 'POST', '/api/v1/events', { token: TOKEN, body: JSON.stringify({ envelopes: [b64(c4.envelope)] }) })
      expect(parked.json).toMatchObject({ added: 0, parked: 1, parkedEvents: [{ index: 0, id: c4.idHex, missing: [c3.idHex] }] })
      const healed = await raw(s.server.url, 'POST', '/api/v1/events', { token: TOKEN, body: JSON.stringify({ envelopes: [b64(c3.envelope)] }) })
      expect(healed.json).toMatchObject({ added: 2, parked: 0 })
      await c.close()

      for (const [text, why] of [['{"envelopes": "x"}', 'envelopes'], ['{"envelopes": [], "more": 1}', 'more'], ['[]', '(root)'], ['', 'needs a JSON body']]) {
        const bad = await raw(s.server.url, 'POST', '/api/v1/events', { token: TOKEN, body: text })
        expect(bad.status, text).toBe(400)
        expect(bad.json.error.message, text).toContain(why)
      }
      const tooMany = await raw(s.server.url, 'POST', '/api/v1/events', { token: TOKEN, body: JSON.stringify({ envelopes: new Array(10_001).fill('') }) })
      expect(tooMany.status).toBe(400)
      expect(tooMany.json.error.message).toContain('10000')
    } finally {
      await s.close()
    }
  })

  it('GET /state: the view, where it is, and stable/tentative and lease marks', async () => {
    const s = await setup(kind)
    try {
      const r = await raw(s.server.url, 'GET', '/api/v1/state', { token: TOKEN })
      expect(r.status).toBe(200)
      expect(r.json.at).toEqual({ events: 6, folded: 6, lamport: 3 })
      expect(r.json.view.members.map((m: { hostname: string }) => m.hostname).sort()).toEqual(['alpha', 'beta', 'delta', 'gamma'])
      const a = toHex(identity(1).publicKey)
      const b = toHex(identity(2).publicKey)
      expect(Object.keys(r.json.marks.roles)).toHaveLength(4)
      for (const m of r.json.view.members) expect(r.json.marks.roles[m.author]).toBe(m.roleStable ? 'stable' : 'tentative')
      expect(r.json.marks.leases).toEqual({ [`${a}/4`]: 'held', [`${b}/4`]: 'held' })
      expect(r.json.view.settings.values.mtu).toBe(1420)
    } finally {
      await s.close()
    }
  })

  it('settings: PUT a valid value appends one event that GET then shows; invalid ones are 400 and append nothing', async () => {
    const s = await setup(kind)
    try {
      const before = await raw(s.server.url, 'GET', '/api/v1/settings', { token: TOKEN })
      expect(before.json.values).toMatchObject({ mtu: 1420, zone: 'weft.internal' })
      expect(before.json.origin).toEqual({})

      s.node.clock = STARTED_AT + 123_456
      const put = await raw(s.server.url, 'PUT', '/api/v1/settings/mtu', { token: TOKEN, body: JSON.stringify({ value: '1400' }) })
      expect(put.status).toBe(200)
      expect(put.json).toMatchObject({ key: 'mtu', value: 1400, unchanged: false })
      const ev = s.a.log.get(put.json.event)!
      expect(ev.fields.type).toBe('settings.change')
      expect(ev.authorHex).toBe(toHex(identity(1).publicKey))
      expect(ev.fields.time).toBe(STARTED_AT + 123_456)
      expect(s.a.log.size).toBe(7)

      const after = await raw(s.server.url, 'GET', '/api/v1/settings', { token: TOKEN })
      expect(after.json.values.mtu).toBe(1400)
      expect(after.json.origin.mtu).toEqual({ author: ev.authorHex, event: ev.idHex, lamport: ev.fields.lamport })
      expect((await raw(s.server.url, 'GET', '/api/v1/status', { token: TOKEN })).json.events).toBe(7)

      const zone = await raw(s.server.url, 'PUT', '/api/v1/settings/zone', { token: TOKEN, body: JSON.stringify({ value: 'corp.example' }) })
      expect(zone.json.value).toBe('corp.example')
      const again = await raw(s.server.url, 'PUT', '/api/v1/settings/mtu', { token: TOKEN, body: JSON.stringify({ value: '1400' }) })
      expect(again.json).toMatchObject({ event: null, unchanged: true, value: 1400 })
      expect(s.a.log.size).toBe(8)

      const cases: Array<[string, string, string]> = [
        ['/api/v1/settings/nope', JSON.stringify({ value: '1' }), 'known settings: overlayCidr'],
        ['/api/v1/settings/mtu', JSON.stringify({ value: '100' }), 'mtu'],
        ['/api/v1/settings/overlayCidr', JSON.stringify({ value: '10.0.0.0/31' }), 'overlayCidr'],
        ['/api/v1/settings/dynamicRoles', JSON.stringify({ value: 'maybe' }), 'dynamicRoles'],
        ['/api/v1/settings/mtu', JSON.stringify({ value: 1400 }), 'value'],
        ['/api/v1/settings/mtu', JSON.stringify({ value: '1400', extra: true }), 'extra'],
        ['/api/v1/settings/%E0%A4%A', JSON.stringify({ value: '1' }), 'percent-encoding']
      ]
      for (const [path, body, why] of cases) {
        const bad = await raw(s.server.url, 'PUT', path, { token: TOKEN, body })
        expect(bad.status, `${path} ${body}`).toBe(400)
        expect(bad.json.error.code).toBe('bad_request')
        expect(bad.json.error.message, `${path} ${body}`).toContain(why)
      }
      expect(s.a.log.size).toBe(8)
    } finally {
      await s.close()
    }
  })

  it('malformed JSON is a 400, an oversized body a 413, a failing handler a 500: the server keeps serving', async () => {
    const s = await setup(kind)
    try {
      const bad = await raw(s.server.url, 'POST', '/api/v1/events', { token: TOKEN, body: '{"envelopes": [' })
      expect(bad.status).toBe(400)
      expect(bad.json.error.message).toMatch(/not valid JSON/)
      expect((await raw(s.server.url, 'GET', '/api/v1/status', { token: TOKEN })).status).toBe(200)

      const big = JSON.stringify({ envelopes: ['A'.repeat(MAX_BODY_BYTES)] })
      const tooBig = await raw(s.server.url, 'POST', '/api/v1/events', { token: TOKEN, body: big })
      expect(tooBig.status).toBe(413)
      expect(tooBig.json.error.code).toBe('payload_too_large')
      // Without a Content-Length (chunked), the limit holds as well.
      const chunked = await raw(s.server.url, 'POST', '/api/v1/events', { token: TOKEN, body: big, chunked: true })
      expect(chunked.status).toBe(413)
      expect((await raw(s.server.url, 'GET', '/api/v1/status', { token: TOKEN })).status).toBe(200)

      // A client that goes away mid-body, and one that sends garbage instead of HTTP.
      for (const bytes of [`POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"envelopes": [`, 'NOT HTTP AT ALL\r\n\r\n']) {
        const sock = kind === 'tcp' ? connect(Number(new URL(s.server.url).port), '127.0.0.1') : connect(s.server.url.slice(5))
        await new Promise<void>((resolve) => { sock.once('connect', () => { sock.write(bytes, () => { resolve() }) }) })
        await new Promise((resolve) => setTimeout(resolve, 20))
        sock.destroy()
      }
      expect((await raw(s.server.url, 'GET', '/api/v1/status', { token: TOKEN })).status).toBe(200)

      const type = await raw(s.server.url, 'PUT', '/api/v1/settings/mtu', { token: TOKEN, body: 'value=1400', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } })
      expect(type.status).toBe(415)

      s.node.failStatus = true
      const boom = await raw(s.server.url, 'GET', '/api/v1/status', { token: TOKEN })
      expect(boom.status).toBe(500)
      expect(boom.json.error).toEqual({ code: 'internal', message: 'status exploded' })
      expect(s.warnings).toHaveLength(1)
      expect(JSON.stringify(s.warnings)).not.toContain(TOKEN)
      s.node.failStatus = false
      expect((await raw(s.server.url, 'GET', '/api/v1/status', { token: TOKEN })).status).toBe(200)
    } finally {
      await s.close()
    }
  })

  it('ApiClient: every call validated, errors that say what went wrong', async () => {
    const s = await setup(kind)
    try {
      const client = new ApiClient({ url: s.server.url, token: TOKEN })
      expect((await client.status()).self.address).toBe('10.1.0.1')
      expect(await client.peers()).toHaveLength(2)
      const envs = await client.allEnvelopes()
      expect(envs.map((e) => openEnvelope(e, NET, new Ed25519Verifier()).idHex)).toEqual([...s.a.log.events()].sort(compareEvents).map((e) => e.idHex))
      expect((await client.events(3, 1)).next).toBeNull()
      const st = await client.state()
      expect(st.view.members).toHaveLength(4)
      expect(st.view.clusters[0]?.cluster).toBe('default')
      expect((await client.setSetting('minNodes', '2')).value).toBe(2)
      expect((await client.settings()).values.minNodes).toBe(2)
      await expect(client.setSetting('mtu', '10')).rejects.toThrow(/invalid value for mtu/)

      const c = await cliReplica(6)
      await sync(s.a, c)
      const evs = [await c.append('node.join', joinBody('zeta'), 1), await c.append('ip.claim', { addr: '10.1.0.20' }, 2)]
      const rep = await client.importEnvelopes([evs[1]!.envelope, evs[0]!.envelope, evs[0]!.envelope])
      expect(rep).toMatchObject({ added: 2, duplicates: 1, parked: 0, rejected: [] })
      await c.close()

      const wrong = new ApiClient({ url: s.server.url, token: 'nope-nope-nope-nope' })
      const err = await wrong.status().catch((e: unknown) => e)
      expect(err).toBeInstanceOf(CliError)
      expect((err as Error).message).toContain('refused the token')
    } finally {
      await s.close()
    }
    const gone = new ApiClient({ url: s.server.url, token: TOKEN })
    const err = await gone.status().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(CliError)
    expect((err as Error).message).toContain(`cannot reach the weft API at ${s.server.url}`)
    expect((err as Error).message).toMatch(kind === 'tcp' ? /connection refused/ : /socket does not exist|connection refused/)
  })
})

describe('unix socket', () => {
  it('is mode 0600, replaces a stale socket, refuses a live one or another file, and is removed on close', async () => {
    const a = await cliReplica(1)
    const path = join(tmp, 'stale.sock')
    // A stale socket: bound, then its process "died" without removing it.
    const child = spawn(process.execPath, ['-e', 'require("net").createServer().listen(process.argv[1], () => console.log("up"))', path], { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((resolve) => { child.stdout.once('data', () => { resolve() }) })
    child.kill('SIGKILL')
    await new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
    expect((await lstat(path)).isSocket()).toBe(true)

    const server = await startApiServer({ node: fakeNode(a), listen: { kind: 'unix', path }, token: TOKEN })
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    const second = await startApiServer({ node: fakeNode(a), listen: { kind: 'unix', path }, token: TOKEN }).catch((e: unknown) => e)
    expect(isWeftError(second)).toBe(true)
    expect((second as Error).message).toContain('in use by another process')
    expect((await raw(server.url, 'GET', '/api/v1/status', { token: TOKEN })).status).toBe(200)
    await server.close()
    await expect(lstat(path)).rejects.toThrow(/ENOENT/)

    const file = join(tmp, 'file.sock')
    await writeFile(file, 'not a socket')
    await expect(startApiServer({ node: fakeNode(a), listen: { kind: 'unix', path: file }, token: TOKEN })).rejects.toThrow(/not a socket/)
    await expect(startApiServer({ node: fakeNode(a), listen: { kind: 'unix', path: 'rel.sock' }, token: TOKEN })).rejects.toThrow(/absolute/)
    await a.close()
  })

  it('closes when its signal aborts', async () => {
    const a = await cliReplica(1)
    const ac = new AbortController()
    const server = await startApiServer({ node: fakeNode(a), listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, token: TOKEN, signal: ac.signal })
    expect((await raw(server.url, 'GET', '/api/v1/status', { token: TOKEN })).status).toBe(200)
    ac.abort()
    await server.close()
    await expect(raw(server.url, 'GET', '/api/v1/status', { token: TOKEN })).rejects.toThrow(/ECONNREFUSED/)
    await a.close()
  })
})

it('the settings keys in the CLI help match the projection', () => {
  expect(KEYS_HELP).toBe(SETTING_KEYS.join(', '))
})

function b64 (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64')
}

function identityPeer (e: SignedEvent): string {
  for (let n = 1; n <= 6; n++) if (toHex(identity(n).publicKey) === e.authorHex) return identity(n).peerId
  throw new Error('unknown author')
}
