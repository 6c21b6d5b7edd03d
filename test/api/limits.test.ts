import { connect, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startApiServer, type ApiServer } from '../../src/adapters/http-api.js'
import { API_LIMITS } from '../../src/adapters/http-limits.js'
import { MAX_BODY_BYTES } from '../../src/adapters/api-types.js'
import { cliReplica, fakeNode, raw, type CliReplica } from './support.js'

const TOKEN = 'test-token-0123456789abcdefghijklmnopqrstuvw'
/** More slow clients than the cap, but a bounded count on loopback. */
const SLOW = 300

let replica: CliReplica
let server: ApiServer
let port: number

beforeAll(async () => {
  replica = await cliReplica(1)
  server = await startApiServer({ node: fakeNode(replica), listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, token: TOKEN })
  port = Number(new URL(server.url).port)
})
afterAll(async () => {
  await server.close()
  await replica.close()
})

async function waitFor (what: string, timeoutMs: number, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

interface Slow { socket: Socket, openedAt: number, closedAt?: number }

/** A client that sends the start of its headers and then nothing (slowloris). */
async function slowClient (): Promise<Slow> {
  const s: Slow = { socket: connect(port, '127.0.0.1'), openedAt: 0 }
  s.socket.on('error', () => {})
  // Read (and drop) what the server says, so its FIN is seen and the socket closes here too.
  s.socket.resume()
  s.socket.on('close', () => { s.closedAt = Date.now() })
  await new Promise<void>((resolve) => { s.socket.once('connect', resolve); s.socket.once('close', resolve) })
  s.openedAt = Date.now()
  s.socket.write('GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ')
  return s
}

describe('HTTP API limits', () => {
  it('stays responsive under hundreds of slow connections and closes them within the header timeout', async () => {
    const slow: Slow[] = []
    for (let i = 0; i < SLOW; i++) slow.push(await slowClient())
    try {
      // Past the cap the oldest slow connections were closed to make room.
      await waitFor('connections over the cap to be closed', 5_000, () => slow.filter((s) => s.closedAt === undefined).length <= API_LIMITS.maxConnections)
      expect(server.usage().connections).toBeLessThanOrEqual(API_LIMITS.maxConnections)
      // The operator's request gets through while the slow ones hold every other slot.
      const res = await raw(server.url, 'GET', '/api/v1/status', { token: TOKEN })
      expect(res.status).toBe(200)
      expect(res.json.hostname).toBe('alpha')
      // Every slow connection is gone within the documented time (timeout + check interval).
      const bound = API_LIMITS.headersTimeoutMs + API_LIMITS.checkIntervalMs
      await waitFor('slow connections to be closed', bound + 5_000, () => slow.every((s) => s.closedAt !== undefined))
      const held = Math.max(...slow.map((s) => (s.closedAt as number) - s.openedAt))
      expect(held).toBeLessThanOrEqual(bound + 2_000)
    } finally {
      for (const s of slow) s.socket.destroy()
    }
  }, 40_000)

  it('refuses a body with 503 busy when other large bodies already fill the budget, and serves them', async () => {
    const size = MAX_BODY_BYTES - 1024
    const body = `{"value":"${'a'.repeat(size - 13)}"}`
    const holders = Math.floor(API_LIMITS.bodyBudgetBytes / size)
    const answers: Array<Promise<number>> = []
    const socks: Socket[] = []
    for (let i = 0; i < holders; i++) {
      const sock = connect(port, '127.0.0.1')
      sock.on('error', () => {})
      socks.push(sock)
      answers.push(new Promise((resolve) => {
        let text = ''
        sock.on('data', (c: Buffer) => { text += c.toString('latin1'); const m = /^HTTP\/1\.1 (\d+)/.exec(text); if (m !== null) resolve(Number(m[1])) })
        sock.on('close', () => { resolve(0) })
      }))
      // Everything but the last byte: the server holds the body while it waits for the rest.
      sock.write(`PUT /api/v1/settings/zone HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`)
      sock.write(body.slice(0, -1))
    }
    // Once the server holds all of them, the next body does not fit.
    await waitFor('the held bodies to be read', 20_000, () => server.usage().bodyBytes === holders * (Buffer.byteLength(body) - 1))
    const busy = await raw(server.url, 'PUT', '/api/v1/settings/zone', { token: TOKEN, body })
    expect(busy.status).toBe(503)
    expect(busy.json.error.code).toBe('busy')
    expect(busy.headers['retry-after']).toBe('1')
    for (const s of socks) s.write(body.slice(-1))
    // The held requests complete normally (the value is not a DNS zone: a 400, not a 503).
    expect(await Promise.all(answers)).toEqual(new Array(holders).fill(400))
    for (const s of socks) s.destroy()
    // The budget is free again.
    await waitFor('the budget to be given back', 5_000, () => server.usage().bodyBytes === 0)
    expect((await raw(server.url, 'PUT', '/api/v1/settings/zone', { token: TOKEN, body })).status).toBe(400)
  }, 40_000)
})
