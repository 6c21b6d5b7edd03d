/**
 * Log bench (`npm run bench -- log`): signing, appending, verified ingest, refold, frontier size
 * and anti-entropy diff. Targets are DESIGN.md "Numbers to reach". Everything runs on the main
 * thread, so the verification figures are one core's work (node:crypto, cached KeyObjects).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MemoryLevel } from 'memory-level'
import { identityFromSeed, Ed25519Verifier, type NodeIdentity } from '../src/log/identity.js'
import { networkIdBytes } from '../src/log/token.js'
import { signEvent, signingInput, type EventFields, type SignedEvent } from '../src/log/event.js'
import type { BodyOf, EventType } from '../src/log/bodies.js'
import type { EventDb } from '../src/log/store.js'
import { MergedLog } from '../src/crdt/merged-log.js'
import { FoldEngine } from '../src/crdt/fold.js'
import { encodeFrontier, type Frontier } from '../src/crdt/frontier.js'
import { members } from '../src/projections/members.js'
import { Replica } from '../src/adapters/replica.js'
import { openLevel } from '../src/adapters/level-db.js'
import { emitter, measure, medianMeasure, medianMs, now, progress, prng } from './_lib.js'

const emit = emitter('log')
const NET = networkIdBytes({ secret: new Uint8Array(32).fill(7) })
const reducers = { members }

const TOTAL_EVENTS = 100_000
const AUTHORS = 20
const INGEST_EVENTS = 20_000
const BATCH = 1000


/**
 * A realistic log: AUTHORS feeds written in random interleaving; each event depends on the
 * current heads of two other random authors, so lamport values of different feeds interleave
 * and the total order is not feed by feed. Generation order is topological (parents first).
 */
export function generate (n: number, nAuthors: number, seed = 42, net: Uint8Array = NET): SignedEvent[] {
  const rnd = prng(seed)
  const authors = Array.from({ length: nAuthors }, (_, i) => identityFromSeed(new Uint8Array(32).fill(100 + i)))
  const heads: Array<SignedEvent | undefined> = new Array(nAuthors).fill(undefined)
  const events: SignedEvent[] = []
  const t0 = 1_700_000_000_000
  for (let i = 0; i < n; i++) {
    const a = Math.floor(rnd() * nAuthors)
    const me = authors[a] as NodeIdentity
    const prev = heads[a]
    const deps: SignedEvent[] = []
    for (let k = 0; k < 2; k++) {
      const o = Math.floor(rnd() * nAuthors)
      const h = heads[o]
      if (o !== a && h !== undefined && !deps.includes(h)) deps.push(h)
    }
    let lamport = prev?.fields.lamport ?? 0
    for (const d of deps) if (d.fields.lamport > lamport) lamport = d.fields.lamport
    const seq = (prev?.fields.seq ?? 0) + 1
    const [type, body] = prev === undefined ? joinOf(a, i) : bodyFor(rnd(), a, i)
    const ev = signEvent({
      v: 1, net, author: me.publicKey, seq, prev: prev?.id ?? null, deps: deps.map((d) => d.id), lamport: lamport + 1, time: t0 + i, type, body
    } as EventFields, me)
    heads[a] = ev
    events.push(ev)
  }
  return events
}

function joinOf (a: number, i: number): [EventType, unknown] {
  const body: BodyOf<'node.join'> = {
    hostname: `node-${a}`, cluster: a % 4 === 0 ? 'edge' : 'default', os: 'linux', arch: 'amd64', version: '0.1.0',
    addrs: [`/ip4/192.168.${a}.${i % 250}/tcp/4001`], caps: ['k3s', 'tun'], role: 'auto'
  }
  return ['node.join', body]
}

/** Type mix of a long-lived network: mostly IP and route churn, some restarts (re-joins), a few services. */
function bodyFor (r: number, a: number, i: number): [EventType, unknown] {
  const x = i & 0xffff
  const ip = `10.${a}.${x >> 8}.${x & 255}`
  if (r < 0.35) return ['ip.claim', { addr: ip }]
  if (r < 0.50) return ['ip.release', { addr: ip }]
  if (r < 0.65) return ['route.advertise', { cidr: `172.${16 + (a % 16)}.${x & 255}.0/24` }]
  if (r < 0.72) return ['route.withdraw', { cidr: `172.${16 + (a % 16)}.${x & 255}.0/24` }]
  if (r < 0.82) return joinOf(a, i)
  if (r < 0.90) return ['role.claim', { cluster: a % 4 === 0 ? 'edge' : 'default', role: r < 0.86 ? 'worker' : 'master' }]
  if (r < 0.96) {
    return ['service.export', {
      cluster: 'default', namespace: 'default', name: `svc-${x % 50}`, type: 'ClusterSetIP',
      ports: [{ name: 'http', protocol: 'TCP', port: 80 }], sessionAffinity: 'None', labels: { app: `svc-${x % 50}` }, annotations: {}
    }]
  }
  if (r < 0.99) return ['service.unexport', { cluster: 'default', namespace: 'default', name: `svc-${x % 50}` }]
  return ['node.leave', { reason: 'maintenance' }]
}

function memoryDb (): EventDb {
  return new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as EventDb
}

/** Sign + append on a replica that already holds a 20-author log (so each append carries real deps). */
async function appendRate (replica: Replica<typeof reducers>, maxEvents: number, budgetMs: number): Promise<{ n: number, wallMs: number, cpuMs: number }> {
  let n = 0
  const m = await measure(async () => {
    const t = now()
    while (n < maxEvents && now() - t < budgetMs) {
      await replica.append('ip.claim', { addr: `10.200.${(n >> 8) & 255}.${n & 255}` }, 1_700_000_000_000 + n)
      n++
    }
  })
  return { n, ...m }
}

export async function run (): Promise<void> {
  const verifier = new Ed25519Verifier()

  progress(`generating ${TOTAL_EVENTS} signed events from ${AUTHORS} authors`)
  let events: SignedEvent[] = []
  const gen = await measure(() => { events = generate(TOTAL_EVENTS, AUTHORS) })
  emit('sign_rate', TOTAL_EVENTS / (gen.wallMs / 1000), 'events/s')
  emit('sign_rate_per_cpu_s', TOTAL_EVENTS / (gen.cpuMs / 1000), 'events/cpu-s')
  let t: number
  let verifyPerCpuS = Number.NaN
  const avgBytes = events.reduce((s, e) => s + e.envelope.byteLength, 0) / events.length
  emit('avg_envelope_bytes', avgBytes, 'bytes')

  // --- Ed25519 verification alone (the floor of verified ingest) ---
  {
    const sample = events.slice(0, 5000)
    const inputs = sample.map((e) => signingInput(NET, e.bytes))
    const m = await measure(() => sample.forEach((e, i) => verifier.verify(e.fields.author, inputs[i] as Uint8Array, e.sig)))
    verifyPerCpuS = sample.length / (m.cpuMs / 1000)
    emit('ed25519_verify_rate', sample.length / (m.wallMs / 1000), 'verifies/s')
    emit('ed25519_verify_rate_per_cpu_s', verifyPerCpuS, 'verifies/cpu-s')
  }

  // --- verified ingest: openEnvelope + MergedLog.ingest, in memory ---
  const ingestSet = events.slice(0, INGEST_EVENTS).map((e) => e.envelope)
  {
    progress(`verified ingest of ${INGEST_EVENTS} envelopes (batches of ${BATCH})`)
    const log = new MergedLog({ net: NET, verifier: new Ed25519Verifier() })
    let added = 0
    const m = await measure(() => {
      for (let i = 0; i < ingestSet.length; i += BATCH) {
        const res = log.ingest(ingestSet.slice(i, i + BATCH))
        if (res.rejected.length > 0) throw new Error(`bench log rejected: ${res.rejected[0]?.message ?? ''}`)
        added += res.added.length
      }
    })
    if (added !== INGEST_EVENTS) throw new Error(`expected ${INGEST_EVENTS} added, got ${added}`)
    emit('verified_ingest_rate', added / (m.wallMs / 1000), 'events/s', '>= 5000')
    emit('verified_ingest_rate_per_cpu_s', added / (m.cpuMs / 1000), 'events/cpu-s', '>= 5000')
    // Machine-independent: the share of the raw signature-check speed that full validation keeps.
    emit('verified_ingest_vs_raw_verify', (added / (m.cpuMs / 1000)) / verifyPerCpuS, 'ratio')
  }

  // --- verified ingest into a durable classic-level replica ---
  const dir = await mkdtemp(join(tmpdir(), 'weft-bench-log-'))
  try {
    progress(`verified ingest into a durable classic-level replica (${INGEST_EVENTS} events, fsync per batch of ${BATCH})`)
    const replica = await Replica.open({ db: await openLevel(join(dir, 'ingest')), net: NET, reducers, sync: true })
    const m = await measure(async () => {
      for (let i = 0; i < ingestSet.length; i += BATCH) {
        const res = await replica.ingest(ingestSet.slice(i, i + BATCH))
        if (res.added.length !== Math.min(BATCH, ingestSet.length - i)) throw new Error('durable ingest lost events')
      }
    })
    emit('verified_ingest_durable_classic_level_rate', INGEST_EVENTS / (m.wallMs / 1000), 'events/s')
    emit('verified_ingest_durable_classic_level_rate_per_cpu_s', INGEST_EVENTS / (m.cpuMs / 1000), 'events/cpu-s')
    await replica.close()

    // Reopening reads the store back (trusted load, no re-verification) and refolds.
    t = now()
    const reopened = await Replica.open({ db: await openLevel(join(dir, 'ingest')), net: NET, reducers, sync: true })
    emit('reopen_20k_classic_level_ms', now() - t, 'ms')
    if (reopened.log.size !== INGEST_EVENTS) throw new Error('reopen lost events')
    await reopened.close()

    // --- sign + append ---
    const preload = events.slice(0, 2000)
    const me = identityFromSeed(new Uint8Array(32).fill(250))
    {
      progress('sign + append on memory-level (replica holding 2,000 events of 20 authors)')
      const r = await Replica.open({ db: memoryDb(), net: NET, reducers, signer: me, sync: false })
      await r.ingest(preload)
      const { n, wallMs, cpuMs } = await appendRate(r, 5000, 5000)
      emit('sign_append_memory_level_rate', n / (wallMs / 1000), 'events/s')
      emit('sign_append_memory_level_rate_per_cpu_s', n / (cpuMs / 1000), 'events/cpu-s')
      await r.close()
    }
    {
      progress('sign + append on classic-level, fsync per event (the durable default)')
      const r = await Replica.open({ db: await openLevel(join(dir, 'append')), net: NET, reducers, signer: me, sync: true })
      await r.ingest(preload)
      const { n, wallMs } = await appendRate(r, 3000, 5000)
      emit('sign_append_classic_level_durable_rate', n / (wallMs / 1000), 'events/s')
      await r.close()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }

  // --- full refold of 100k events ---
  {
    progress(`full refold of ${TOTAL_EVENTS} events with the members reducer`)
    // Arrival (topological) order, not the total order: insert sorts, as a refold from scratch does.
    let active = 0
    const m = await medianMeasure(3, () => {
      const fe = new FoldEngine(reducers)
      fe.insert(events)
      active = fe.states().members.active.size
    })
    if (active < 1 || active > AUTHORS) throw new Error(`the members fold found ${active} members`)
    emit('refold_100k_members_ms', m.wallMs, 'ms', '< 1000')
    emit('refold_100k_members_cpu_ms', m.cpuMs, 'cpu-ms', '< 1000')
    const sorted = new FoldEngine(reducers)
    sorted.insert(events)
    const view = [...sorted.events()]
    const foldOnly = await medianMs(3, () => {
      const fe = new FoldEngine(reducers)
      fe.insert(view)
    })
    emit('refold_100k_members_presorted_ms', foldOnly, 'ms', '< 1000')
  }

  // --- frontier size ---
  {
    const rnd = prng(7)
    const f: Frontier = new Map()
    for (let i = 0; i < 100; i++) {
      const key = new Uint8Array(32).map(() => Math.floor(rnd() * 256))
      const head = new Uint8Array(32).map(() => Math.floor(rnd() * 256))
      // Seqs above 65,535 take the 5-byte CBOR integer form: the large end of real feeds.
      f.set(Buffer.from(key).toString('hex'), { seq: 100_000 + Math.floor(rnd() * 1_000_000), head: Buffer.from(head).toString('hex'), forks: [] })
    }
    emit('frontier_bytes_per_author', encodeFrontier(f).byteLength / 100, 'bytes', '< 100')
  }

  // --- missingFor at 100k events ---
  {
    progress(`missingFor on a log of ${TOTAL_EVENTS} events`)
    const log = new MergedLog({ net: NET, verifier })
    for (let i = 0; i < events.length; i += 10_000) {
      const res = log.ingest(events.slice(i, i + 10_000))
      if (res.added.length !== Math.min(10_000, events.length - i)) throw new Error('bench log did not load')
    }
    // The remote holds everything but the last 10 events (tips, so its set is causally closed).
    const remote: Frontier = new Map()
    const missing = new Set(events.slice(-10).map((e) => e.idHex))
    for (const e of events) {
      if (missing.has(e.idHex)) continue
      remote.set(e.authorHex, { seq: e.fields.seq, head: e.idHex, forks: [] })
    }
    let got = 0
    const ms = await medianMs(21, () => { got = log.missingFor(remote).length })
    if (got !== 10) throw new Error(`missingFor found ${got} events, expected 10`)
    emit('missing_for_10_of_100k_ms', ms, 'ms')

    const local = log.frontier()
    const inSync = await medianMs(21, () => {
      if (log.missingFor(local).length !== 0) throw new Error('in-sync missingFor must return []')
    })
    emit('missing_for_in_sync_100k_ms', inSync, 'ms')
    emit('frontier_build_100k_ms', await medianMs(21, () => log.frontier()), 'ms')
    const own = encodeFrontier(local)
    emit('frontier_bytes_per_author_20_author_log', own.byteLength / local.size, 'bytes', '< 100')
  }
}
