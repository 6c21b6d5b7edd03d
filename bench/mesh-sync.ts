/**
 * Mesh bench, anti-entropy part (`npm run bench -- mesh-sync`, also run by `mesh`): two Mesh
 * nodes on loopback (in-process, memory replicas). One holds ~10,000 events, the other the same
 * minus 10: bytes and round trips of one sync session (from SyncReport), then the in-sync check
 * (target: 1 round trip, < 100 bytes per author), and as a baseline the same 10 envelopes sent
 * over a raw libp2p stream between the same two hosts in the same run.
 */
import { lpStream } from '@libp2p/utils'
import { identityFromSeed, type NodeIdentity } from '../src/log/identity.js'
import { signEvent, type EventFields, type SignedEvent } from '../src/log/event.js'
import type { BodyOf, EventType } from '../src/log/bodies.js'
import { Mesh } from '../src/net/mesh.js'
import type { SyncReport } from '../src/net/anti-entropy.js'
import { Replica } from '../src/adapters/replica.js'
import { members } from '../src/projections/members.js'
import { identity, memoryDb, NET } from '../test/support/fixtures.js'
import { now, progress, prng, round } from './_lib.js'
import { startLoopbackMesh } from '../test/net/support.js'

const EVENTS = 10_000
const AUTHORS = 100
const MISSING = 10
const TRIALS = 3
const RAW_PROTOCOL = '/weft-bench/raw/1.0.0'

function figure (metric: string, value: number, unit: string, target: string | null = null, extra: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ bench: 'mesh', metric, value: round(value), unit, target, ...extra }) + '\n')
}

/**
 * `n` signed events by `nAuthors` authors in a random interleaving, each depending on the heads
 * of up to two other authors; generation order is topological, so any prefix is a valid log.
 */
export function generateLog (n: number, nAuthors: number, seed = 7): SignedEvent[] {
  const rnd = prng(seed)
  const authors: NodeIdentity[] = Array.from({ length: nAuthors }, (_, i) => {
    const seed = new Uint8Array(32).fill(9)
    seed[0] = 200
    seed[1] = i & 255
    seed[2] = i >> 8
    return identityFromSeed(seed)
  })
  const heads: Array<SignedEvent | undefined> = new Array(nAuthors).fill(undefined)
  const out: SignedEvent[] = []
  const t0 = 1_700_000_000_000
  for (let i = 0; i < n; i++) {
    // Every author joins first, then the feeds interleave at random.
    const a = i < nAuthors ? i : Math.floor(rnd() * nAuthors)
    const me = authors[a] as NodeIdentity
    const prev = heads[a]
    const deps: SignedEvent[] = []
    for (let k = 0; k < 2; k++) {
      const h = heads[Math.floor(rnd() * nAuthors)]
      if (h !== undefined && h !== prev && !deps.includes(h) && h.fields.author !== me.publicKey) deps.push(h)
    }
    let lamport = prev?.fields.lamport ?? 0
    for (const d of deps) lamport = Math.max(lamport, d.fields.lamport)
    let type: EventType
    let body: unknown
    if (prev === undefined) {
      type = 'node.join'
      body = { hostname: `host-${a}`, cluster: 'default', os: 'linux', arch: 'amd64', version: '0.1.0', addrs: [`/ip4/192.168.1.${a % 250}/tcp/4001`], caps: [], role: 'auto' } satisfies BodyOf<'node.join'>
    } else if (rnd() < 0.7) {
      type = 'ip.claim'
      body = { addr: `10.1.${(i >> 8) & 255}.${i & 255}` } satisfies BodyOf<'ip.claim'>
    } else {
      type = 'route.advertise'
      body = { cidr: `172.${16 + (a % 16)}.${i & 255}.0/24` } satisfies BodyOf<'route.advertise'>
    }
    const ev = signEvent({
      v: 1, net: NET, author: me.publicKey, seq: (prev?.fields.seq ?? 0) + 1, prev: prev?.id ?? null, deps: deps.map((d) => d.id), lamport: lamport + 1, time: t0 + i, type, body
    } as EventFields, me)
    heads[a] = ev
    out.push(ev)
  }
  return out
}

interface SyncNode { replica: Replica<{ members: typeof members }>, mesh: Mesh }

async function startSyncNode (n: number, events: readonly SignedEvent[], peers: string[]): Promise<SyncNode> {
  const replica = await Replica.open({ db: memoryDb(), net: NET, reducers: { members }, signer: identity(n), sync: false })
  for (let i = 0; i < events.length; i += 1000) await replica.ingest(events.slice(i, i + 1000))
  // No periodic sync: the bench triggers every session itself.
  const mesh = await startLoopbackMesh(identity(n), replica, peers, { syncIntervalMs: 3_600_000 })
  return { replica, mesh }
}

async function until (cond: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
const varintLen = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : 4)

export async function run (): Promise<void> {
  progress(`anti-entropy: signing ${EVENTS} events by ${AUTHORS} authors`)
  const events = generateLog(EVENTS, AUTHORS)
  // Both start with the same log; each trial gives A 10 events B lacks, the last one leaves A
  // with exactly EVENTS and B with EVENTS - 10.
  const common = EVENTS - MISSING * TRIALS
  progress(`anti-entropy: two nodes with ${common} events each`)
  const a = await startSyncNode(0, events.slice(0, common), [])
  const b = await startSyncNode(1, events.slice(0, common), [a.mesh.listenAddrs()[0] as string])
  try {
    // Raw baseline: A writes the envelopes of the current gap, length-prefixed, and closes.
    let rawPayload: Uint8Array[] = []
    await a.mesh.host.handle(RAW_PROTOCOL, async (stream) => {
      const lp = lpStream(stream)
      for (const e of rawPayload) await lp.write(e)
      await stream.close()
    })
    // Connecting runs one (in-sync) session each way on identify; let those finish.
    await until(() => b.mesh.sync.stats.lastRoundAt !== undefined && a.mesh.sync.stats.lastRoundAt !== undefined, 'the sessions on connect')

    const sessions: SyncReport[] = []
    const sessionMs: number[] = []
    const rawMs: number[] = []
    let rawBytes = 0
    for (let t = 0; t < TRIALS; t++) {
      const gap = events.slice(common + t * MISSING, common + (t + 1) * MISSING)
      await a.replica.ingest(gap)
      rawPayload = gap.map((e) => e.envelope)
      const t0 = now()
      const r = await b.mesh.sync.syncWith(a.mesh.host.peerId)
      sessionMs.push(now() - t0)
      if (r === undefined || r.pulled !== MISSING) throw new Error(`sync session pulled ${r?.pulled ?? 'nothing'}, expected ${MISSING}`)
      sessions.push(r)

      const r0 = now()
      const stream = await b.mesh.host.dialProtocol(a.mesh.host.peerId, RAW_PROTOCOL)
      const lp = lpStream(stream)
      let bytes = 0
      for (let got = 0; got < gap.length; got++) {
        const frame = await lp.read()
        bytes += frame.byteLength + varintLen(frame.byteLength)
      }
      await stream.close()
      rawMs.push(now() - r0)
      rawBytes = bytes
    }
    if (a.replica.log.size !== EVENTS || b.replica.log.size !== EVENTS) throw new Error(`expected ${EVENTS} events on both, got ${a.replica.log.size} and ${b.replica.log.size}`)
    const first = sessions[sessions.length - 1] as SyncReport
    const sessionBytes = first.bytesSent + first.bytesReceived
    const held = `A holds ${EVENTS} events by ${AUTHORS} authors, B the same minus ${MISSING}; two in-process Mesh nodes on loopback (memory replicas)`
    figure('anti_entropy_10k_missing10_round_trips', first.roundTrips, 'round trips', null, { setup: held })
    figure('anti_entropy_10k_missing10_bytes_sent', first.bytesSent, 'bytes', null, { note: 'B → A: Hello (frontier) + empty Push' })
    figure('anti_entropy_10k_missing10_bytes_received', first.bytesReceived, 'bytes', null, { note: 'A → B: Reply (frontier + the 10 envelopes)' })
    figure('anti_entropy_10k_missing10_bytes', sessionBytes, 'bytes')
    figure('anti_entropy_10k_missing10_ms', median(sessionMs), 'ms', null, { runs: TRIALS, note: 'median wall time of syncWith over 3 sessions (A holding 9,980, 9,990 and 10,000 events, B 10 fewer)' })
    figure('raw_stream_10_envelopes_bytes', rawBytes, 'bytes', null, { note: 'the same 10 envelopes, length-prefixed, over a raw libp2p stream (transport protection+noise+yamux) between the same hosts' })
    figure('raw_stream_10_envelopes_ms', median(rawMs), 'ms', null, { runs: TRIALS, note: 'dial protocol + read 10 frames + close' })
    figure('anti_entropy_vs_raw_bytes', sessionBytes / rawBytes, 'ratio', null, { note: 'sync session bytes / raw payload bytes: the rest is two frontiers' })
    figure('anti_entropy_vs_raw_time', median(sessionMs) / median(rawMs), 'ratio')

    // In sync: one Hello, one Reply, one empty Push.
    const inSync: SyncReport[] = []
    const inSyncMs: number[] = []
    for (let i = 0; i < 5; i++) {
      const t0 = now()
      const r = await b.mesh.sync.syncWith(a.mesh.host.peerId)
      inSyncMs.push(now() - t0)
      if (r === undefined) throw new Error('in-sync session failed')
      inSync.push(r)
    }
    const s = inSync[0] as SyncReport
    const authors = b.replica.log.authors().length
    const bytes = s.bytesSent + s.bytesReceived
    figure('anti_entropy_in_sync_round_trips', s.roundTrips, 'round trips', '1', { pulled: s.pulled, pushed: s.pushed })
    figure('anti_entropy_in_sync_bytes', bytes, 'bytes', null, { authors })
    figure('anti_entropy_in_sync_bytes_per_author', bytes / authors, 'bytes', '< 100', { note: 'both directions (Hello + Reply + empty Push) / authors' })
    figure('anti_entropy_in_sync_bytes_per_author_one_way', s.bytesSent / authors, 'bytes', '< 100', { note: 'what the initiator sends (its frontier) / authors' })
    figure('anti_entropy_in_sync_ms', median(inSyncMs), 'ms', null, { runs: inSyncMs.length })
  } finally {
    await b.mesh.stop()
    await a.mesh.stop()
    await b.replica.close()
    await a.replica.close()
  }
}
