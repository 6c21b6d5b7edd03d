import { afterAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { openLevel } from '../../src/adapters/level-db.js'
import { Replica } from '../../src/adapters/replica.js'
import { MergedLog } from '../../src/crdt/merged-log.js'
import { EventStore } from '../../src/log/store.js'
import { Ed25519Verifier } from '../../src/log/identity.js'
import { members } from '../../src/projections/members.js'
import { NET, identity } from '../support/fixtures.js'

/**
 * Item 5: an event that append/ingest reported as stored survives kill -9. A child process
 * writes to a classic-level store and prints each acknowledged id; the parent SIGKILLs it
 * mid-stream, reopens the store and checks every acknowledged event, the integrity of the
 * whole store and that the feed continues at the next seq. Three crashes in a row on one store.
 */
const here = dirname(fileURLToPath(import.meta.url))
const repo = join(here, '..', '..')
const script = join(here, 'writer.ts')
const me = identity(0)
const other = identity(5)

interface Ack { kind: 'A' | 'I', id: string, seq: number }
interface Run { acks: Ack[], ready: [number, number], signal: NodeJS.Signals | null, code: number | null, stderr: string }

/** Run the writer until `killAfter` acknowledgements, SIGKILL it, and wait for it to exit. */
async function runAndKill (dir: string, killAfter: number, deadlineMs = 40_000): Promise<Run> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, dir], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] })
  const acks: Ack[] = []
  let ready: [number, number] = [-1, -1]
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const lines = createInterface({ input: child.stdout })
  lines.on('line', (line) => {
    const [k, a, b] = line.split(' ')
    if (k === 'ready') ready = [Number(a), Number(b)]
    else if (k === 'A' || k === 'I') acks.push({ kind: k, id: a as string, seq: Number(b) })
    if (acks.length >= killAfter && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`writer did not reach ${killAfter} acks in ${deadlineMs} ms (got ${acks.length}); stderr: ${stderr}`))
    }, deadlineMs)
  })
  try {
    const { code, signal } = await Promise.race([exited, deadline])
    // Lines the child wrote before dying are still in the pipe: drain them.
    await new Promise<void>((resolve) => { if (child.stdout.readableEnded) resolve(); else child.stdout.once('close', () => resolve()) })
    return { acks, ready, signal, code, stderr }
  } finally {
    clearTimeout(timer)
  }
}

/** Reopen the store and check everything item 5 promises; returns the own feed's max seq. */
async function verifyStore (dir: string, acked: readonly Ack[]): Promise<{ mine: number, theirs: number, total: number }> {
  // 1. Every stored envelope re-validated from scratch (signature, schema, network), in order.
  const raw = await openLevel(dir)
  const store = new EventStore(raw)
  const envelopes: Uint8Array[] = []
  for await (const e of store.eventsInOrder(NET, new Ed25519Verifier())) envelopes.push(e.envelope)
  const total = await store.count()
  expect(envelopes.length).toBe(total)
  // 2. A clean re-ingest into a fresh MergedLog: every causal rule holds, nothing waits.
  const fresh = new MergedLog({ net: NET, verifier: new Ed25519Verifier() })
  const res = fresh.ingest(envelopes)
  expect(res.rejected).toEqual([])
  expect(res.parked).toBe(0)
  expect(res.added.length).toBe(total)
  expect(fresh.forks().size).toBe(0)
  // 3. The stored frontier was written in the same atomic batches as the events.
  const storedFrontier = await store.frontier()
  for (const [author, entry] of fresh.frontier()) {
    expect(storedFrontier.get(author)).toEqual(entry)
  }
  await raw.close()

  // 4. The replica opens on it, holds every acknowledged event, and its feeds have no holes.
  const db = await openLevel(dir)
  const replica = await Replica.open({ db, net: NET, reducers: { members }, signer: me })
  try {
    for (const a of acked) {
      expect(replica.log.has(a.id), `acknowledged ${a.kind} ${a.id} (seq ${a.seq}) lost`).toBe(true)
      expect(await replica.store.getEnvelope(a.id)).toBeDefined()
    }
    expect(replica.log.size).toBe(total)
    const mine = replica.log.maxSeqOf(me.authorHex)
    const theirs = replica.log.maxSeqOf(other.authorHex)
    for (const [author, max] of [[me.authorHex, mine], [other.authorHex, theirs]] as const) {
      for (let s = 1; s <= max; s++) expect(replica.log.eventsOf(author, s)).toHaveLength(1)
    }
    const ackedMine = acked.filter((a) => a.kind === 'A').map((a) => a.seq)
    expect(mine).toBeGreaterThanOrEqual(Math.max(0, ...ackedMine))
    return { mine, theirs, total }
  } finally {
    await replica.close()
  }
}

/** Append once more after the crash: the feed continues at the next seq, no fork. */
async function appendAgain (dir: string, expectedSeq: number): Promise<string> {
  const db = await openLevel(dir)
  const replica = await Replica.open({ db, net: NET, reducers: { members }, signer: me })
  try {
    const ev = await replica.append('node.leave', { reason: 'after crash' }, 1)
    expect(ev.fields.seq).toBe(expectedSeq)
    expect(replica.log.freezeSeq(me.authorHex)).toBeUndefined()
    return ev.idHex
  } finally {
    await replica.close()
  }
}

describe('kill -9 durability (classic-level)', () => {
  const dirs: string[] = []
  afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }) })

  it('every acknowledged event survives SIGKILL, the store re-verifies and the feed continues', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-kill9-'))
    dirs.push(dir)
    const seed = Math.floor(Math.random() * 1e9)
    // First kill after 200 acknowledgements, then at random points (one may land right after start-up).
    const kills = [200, 1 + (seed % 150), 1 + (Math.floor(seed / 150) % 40)]
    const allAcked: Ack[] = []
    let expected = { mine: 0, theirs: 0 }
    for (const [i, killAfter] of kills.entries()) {
      const run = await runAndKill(dir, killAfter)
      expect(run.signal, `run ${i} (seed ${seed}): writer exited on its own (code ${run.code}): ${run.stderr}`).toBe('SIGKILL')
      expect(run.acks.length).toBeGreaterThanOrEqual(killAfter)
      // It started from exactly what the previous crash left (plus our extra append).
      expect(run.ready).toEqual([expected.mine, expected.theirs])
      expect(run.acks.some((a) => a.kind === 'I') || killAfter < 5).toBe(true)
      allAcked.push(...run.acks)
      const got = await verifyStore(dir, allAcked)
      const extra = await appendAgain(dir, got.mine + 1)
      allAcked.push({ kind: 'A', id: extra, seq: got.mine + 1 })
      expected = { mine: got.mine + 1, theirs: got.theirs }
    }
    const final = await verifyStore(dir, allAcked)
    expect(final.mine).toBe(expected.mine)
    expect(final.total).toBeGreaterThanOrEqual(new Set(allAcked.map((a) => a.id)).size)
  }, 150_000)
})
