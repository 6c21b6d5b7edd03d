import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { openLevel } from '../../src/adapters/level-db.js'
import { Replica } from '../../src/adapters/replica.js'
import { members } from '../../src/projections/members.js'
import { signEvent, type EventFields, type SignedEvent } from '../../src/log/event.js'
import { joinBody, identity, memoryReplica, NET } from '../support/fixtures.js'

/** The built CLI: `npm test` builds first; run `npm run build` before `npx vitest run test/cli`. */
export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))

export function assertBuilt (): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`)
}

export interface CliResult { code: number | null, stdout: string, stderr: string }

export const TEST_CONFIG_HOME = join(tmpdir(), `weft-test-config-${process.pid}`)

export async function weft (args: readonly string[], opts: { input?: string, env?: Record<string, string> } = {}): Promise<CliResult> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      // Owner keys from `weft token new` go to a per-run directory, never the user's ~/.config.
      env: { ...process.env, WEFT_DATA_DIR: '', XDG_CONFIG_HOME: TEST_CONFIG_HOME, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    child.on('error', reject)
    child.on('close', (code) => { resolve({ code, stdout, stderr }) })
    child.stdin.end(opts.input ?? '')
  })
}

export async function tempRoot (): Promise<{ dir: string, cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-cli-'))
  return { dir, cleanup: async () => { await rm(dir, { recursive: true, force: true }) } }
}

export interface Fixture {
  dir: string
  /** Every event written, by name. */
  ev: Record<string, SignedEvent>
  peers: { a: string, b: string, c: string }
}

/**
 * A data dir written with the library, as a node would: node A (identity 1) owns the store;
 * B and C are in-memory replicas whose events reach A by frontier exchange.
 *
 *   lamport 1: A join alpha, B join beta
 *   lamport 2: A ip.claim (deps B1), B settings.change (10 bytes)
 *   lamport 3: C join gamma (deps A2, B2)
 *   lamport 4: B leave (deps A2, C1)
 */
export async function makeFixture (dir: string): Promise<Fixture> {
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'identity.key'), identity(1).exportPem(), { mode: 0o600 })
  await chmod(join(dir, 'identity.key'), 0o600)
  const db = await openLevel(join(dir, 'events'))
  const a = await Replica.open({ db, net: NET, reducers: { members }, signer: identity(1) })
  const b = await memoryReplica(2)
  const c = await memoryReplica(3)
  const sync = async (from: Replica<{ members: typeof members }>, to: Replica<{ members: typeof members }>): Promise<void> => {
    const res = await to.ingest(from.missingFor(to.frontier()).map((e) => e.envelope))
    if (res.rejected.length > 0 || res.parked > 0) throw new Error('fixture exchange failed')
  }
  const ev: Record<string, SignedEvent> = {}
  ev.a1 = await a.append('node.join', joinBody('alpha'), 1000)
  ev.b1 = await b.append('node.join', joinBody('beta'), 1000)
  await sync(b, a)
  ev.a2 = await a.append('ip.claim', { addr: '10.1.0.1' }, 1001)
  ev.b2 = await b.append('settings.change', { change: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) }, 1001)
  await sync(a, c)
  await sync(b, c)
  ev.c1 = await c.append('node.join', joinBody('gamma', 'edge', 'master'), 1002)
  await sync(c, b)
  ev.b3 = await b.append('node.leave', { reason: 'maintenance' }, 1003)
  await sync(c, a)
  await sync(b, a)
  await a.close()
  await b.close()
  await c.close()
  return { dir, ev, peers: { a: identity(1).peerId, b: identity(2).peerId, c: identity(3).peerId } }
}

/**
 * A second event of `author` at `seq` with `prev` as its parent (and no deps): together with the
 * stored one it is a fork.
 */
export function forkEvent (n: number, seq: number, prev: SignedEvent | null, lamport: number): SignedEvent {
  const id = identity(n)
  return signEvent({
    v: 1,
    net: NET,
    author: id.publicKey,
    seq,
    prev: prev?.id ?? null,
    deps: [],
    lamport,
    time: 5000,
    type: 'ip.claim',
    body: { addr: '10.9.9.9' }
  } as EventFields, id)
}

/** Open the store as the daemon would, ingest, close. */
export async function ingestInto (dir: string, events: readonly SignedEvent[]): Promise<void> {
  const db = await openLevel(join(dir, 'events'))
  const r = await Replica.open({ db, net: NET, reducers: { members } })
  try {
    const res = await r.ingest(events.map((e) => e.envelope))
    if (res.added.length !== events.length) throw new Error(`ingest: ${JSON.stringify(res.rejected)}`)
  } finally {
    await r.close()
  }
}

/** Write raw bytes under a key of the store, bypassing every check. */
export async function putRaw (dir: string, key: string, value: Uint8Array): Promise<void> {
  const db = await openLevel(join(dir, 'events'))
  try {
    await db.put(key, value)
  } finally {
    await db.close()
  }
}

export function jsonLines (text: string): Array<Record<string, unknown>> {
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>)
}
