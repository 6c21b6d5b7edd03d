import { request } from 'node:http'
import { Replica } from '../../src/adapters/replica.js'
import type { ApiNode } from '../../src/adapters/http-api.js'
import type { NodeLiveStatus, PeerStatus } from '../../src/adapters/api-types.js'
import { toHex } from '../../src/log/bytes.js'
import type { EventDb } from '../../src/log/store.js'
import { replicaReducers, type ReplicaReducers } from '../../src/projections/reducers.js'
import { identity, memoryDb, NET, TEST_TOKEN } from '../support/fixtures.js'
import { Admission } from '../../src/node/admission.js'
import { TransportKeyring } from '../../src/node/transport-keyring.js'
import { sealKeyFromSeed } from '../../src/log/seal.js'
import { seedOf } from '../../src/log/identity.js'
import { pino } from 'pino'

export type CliReplica = Replica<ReplicaReducers>

/** A memory replica with every CLI projection, signing as identity(n). */
export async function cliReplica (n: number, db: EventDb = memoryDb()): Promise<CliReplica> {
  return await Replica.open({ db, net: NET, reducers: replicaReducers(), signer: identity(n), sync: false })
}

export const STARTED_AT = 1_700_000_000_000

export interface FakeNode extends ApiNode {
  clock: number
  peerList: PeerStatus[]
  failStatus: boolean
}

/** An ApiNode over a replica with a clock and peers the test controls. */
export function fakeNode (replica: CliReplica, n = 1): FakeNode {
  const id = identity(n)
  const node: FakeNode = {
    replica,
    clock: STARTED_AT + 90_000,
    failStatus: false,
    peerList: [
      { peerId: identity(2).peerId, author: toHex(identity(2).publicKey), hostname: 'beta', connected: true, online: true, lastSeenMs: 1200, addrs: ['/ip4/10.0.0.2/tcp/4001'], latencyMs: 3.4 },
      { peerId: identity(3).peerId, connected: false, online: false, addrs: [] }
    ],
    now: () => node.clock,
    routes: new Admission({
      replica,
      keyring: TransportKeyring.forToken(TEST_TOKEN),
      net: NET,
      self: toHex(id.publicKey),
      seal: sealKeyFromSeed(seedOf(id)),
      log: pino({ level: 'silent' }),
      now: () => node.clock,
      hangUp: async () => {}
    }).routes(),
    peers: () => node.peerList,
    status: (): NodeLiveStatus => {
      if (node.failStatus) throw new Error('status exploded')
      return {
        peerId: id.peerId,
        author: toHex(id.publicKey),
        networkId: toHex(NET),
        version: '0.1.0-test',
        hostname: 'alpha',
        cluster: 'default',
        startedAt: STARTED_AT,
        uptimeMs: node.clock - STARTED_AT,
        listen: [`/ip4/127.0.0.1/tcp/4001/p2p/${id.peerId}`],
        peers: { connected: 1, online: 1 },
        sync: { rounds: 7, eventsPulled: 42, lastRoundAt: node.clock - 2000 }
      }
    }
  }
  return node
}

export interface RawResponse { status: number, headers: Record<string, string | string[] | undefined>, text: string, json: any }

/** One HTTP request to `http://host:port` or `unix:/path`, with nothing added but what is given. */
export async function raw (url: string, method: string, path: string, opts: { token?: string, body?: string | Buffer, headers?: Record<string, string>, chunked?: boolean } = {}): Promise<RawResponse> {
  const target = url.startsWith('unix:') ? { socketPath: url.slice(5) } : { host: new URL(url).hostname, port: Number(new URL(url).port) }
  const headers: Record<string, string> = { ...opts.headers }
  if (opts.token !== undefined) headers.Authorization = `Bearer ${opts.token}`
  if (opts.body !== undefined) {
    if (opts.chunked !== true) headers['Content-Length'] ??= String(Buffer.byteLength(opts.body))
    headers['Content-Type'] ??= 'application/json'
  }
  return await new Promise((resolve, reject) => {
    // agent: false: a fresh connection each time, so a closed server is seen as closed.
    const req = request({ ...target, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let json: unknown
        try { json = JSON.parse(text) } catch { json = undefined }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    if (opts.chunked === true && opts.body !== undefined) {
      const body = Buffer.from(opts.body)
      for (let i = 0; i < body.length; i += 65536) req.write(body.subarray(i, i + 65536))
      req.end()
    } else {
      req.end(opts.body)
    }
  })
}
