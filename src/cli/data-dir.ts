import { existsSync } from 'node:fs'
import { mkdir, readFile, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { apiEndpointPath } from '../adapters/api-token.js'
import { openLevel } from '../adapters/level-db.js'
import { Replica } from '../adapters/replica.js'
import { IDENTITY_FILE } from '../adapters/identity-file.js'
import { fromHex } from '../log/bytes.js'
import { isWeftError } from '../log/errors.js'
import { identityFromPem } from '../log/identity.js'
import { EventStore, type EventDb } from '../log/store.js'
import { CliError } from './errors.js'
import { replicaReducers, type ReplicaReducers } from '../projections/reducers.js'

/** A data dir holds `identity.key` and `events/` (LevelDB); the network id is in the store's meta. */
export const EVENTS_DIR = 'events'

export function eventsPath (dataDir: string): string {
  return join(dataDir, EVENTS_DIR)
}

/** LevelDB writes CURRENT when it creates a database: a dir without it holds no store. */
export function hasStore (dataDir: string): boolean {
  return existsSync(join(eventsPath(dataDir), 'CURRENT'))
}

export interface OpenStore {
  readonly dataDir: string
  readonly db: EventDb
  readonly store: EventStore
  readonly net: Uint8Array
  readonly netHex: string
  close (): Promise<void>
}

function noStore (dataDir: string): CliError {
  return new CliError(`no event store in ${dataDir} (set --data-dir or WEFT_DATA_DIR)`)
}

/**
 * Open the store of an existing data dir (no replica, no load): for `verify`. While a daemon
 * holds the store, this is an in-memory copy of the events it serves through its API (see
 * `openReplica`), and a note on stderr says that the store's own index and frontier are not
 * the ones checked.
 */
export async function openStore (dataDir: string): Promise<OpenStore> {
  try {
    return await openLocalStore(dataDir)
  } catch (err) {
    const copy = await throughDaemon(dataDir, err)
    process.stderr.write(`weft: note: the event store is in use by the running daemon; checking the ${copy.replica.log.size} events it serves at ${copy.source} (the store's own index and frontier are not checked)\n`)
    return copy
  }
}

async function openLocalStore (dataDir: string): Promise<OpenStore> {
  if (!hasStore(dataDir)) throw noStore(dataDir)
  const db = await openLevel(eventsPath(dataDir))
  const store = new EventStore(db)
  try {
    const netHex = await store.getMeta('net')
    if (netHex === undefined || !/^[0-9a-f]{16}$/.test(netHex)) throw noStore(dataDir)
    return { dataDir, db, store, net: fromHex(netHex), netHex, close: async () => { await db.close() } }
  } catch (err) {
    await db.close()
    throw err
  }
}

export interface OpenReplica extends OpenStore {
  readonly replica: Replica<ReplicaReducers>
}

/**
 * A store held by a running daemon (LevelDB admits one process) is read through the daemon's
 * HTTP API when the data dir has its `api.json`: an in-memory copy of every event it serves.
 * Anything else (no api.json, another error) is rethrown as it was.
 */
async function throughDaemon (dataDir: string, err: unknown): Promise<OpenReplica & { source: string }> {
  if (!isWeftError(err, 'ERR_STORE_LOCKED') || !existsSync(apiEndpointPath(dataDir))) throw err
  const { ApiClient } = await import('./api-client.js')
  const { snapshotFromDaemon } = await import('./api-snapshot.js')
  const client = await ApiClient.fromDataDir(dataDir)
  return { ...await snapshotFromDaemon(dataDir, client), source: client.url }
}

/** True when the error says a daemon holds the store and has left its API endpoint in the dir. */
export function heldByDaemon (dataDir: string, err: unknown): boolean {
  return isWeftError(err, 'ERR_STORE_LOCKED') && existsSync(apiEndpointPath(dataDir))
}

/**
 * Open a data dir's replica without a signer (the CLI never appends). `create` makes the store
 * if it is missing, for `import`, and then needs the network id. While a daemon holds the store,
 * the replica is a read-only in-memory copy of the daemon's log fetched through its API, unless
 * `viaDaemon` is false (for `import`, which must write to the daemon instead).
 */
export async function openReplica (dataDir: string, opts: { create?: Uint8Array, maxPending?: number, viaDaemon?: boolean } = {}): Promise<OpenReplica> {
  let db: EventDb
  let net: Uint8Array
  if (hasStore(dataDir)) {
    let s: OpenStore
    try {
      s = await openLocalStore(dataDir)
    } catch (err) {
      if (opts.viaDaemon === false || opts.create !== undefined) throw err
      return await throughDaemon(dataDir, err)
    }
    db = s.db
    net = s.net
  } else if (opts.create !== undefined) {
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
    db = await openLevel(eventsPath(dataDir))
    net = opts.create
  } else {
    throw noStore(dataDir)
  }
  let replica: Replica<ReplicaReducers>
  try {
    replica = await Replica.open({ db, net, reducers: replicaReducers(), maxPending: opts.maxPending })
  } catch (err) {
    await db.close()
    if (isWeftError(err)) throw err
    throw new CliError(`cannot load the event store in ${dataDir}: ${(err as Error).message}; run "weft log verify --data-dir ${dataDir}"`)
  }
  const store = replica.store
  const netHex = Buffer.from(net).toString('hex')
  return { dataDir, db, store, net, netHex, replica, close: async () => { await replica.close() } }
}

export async function withReplica<T> (dataDir: string, fn: (r: OpenReplica) => Promise<T>): Promise<T> {
  const r = await openReplica(dataDir)
  try {
    return await fn(r)
  } finally {
    await r.close()
  }
}

/**
 * The author hex of the data dir's own identity, if its key file is there and private; used
 * only to mark "this node" in listings, so any problem with the file just means no mark.
 */
export async function ownAuthor (dataDir: string): Promise<string | undefined> {
  const path = join(dataDir, IDENTITY_FILE)
  try {
    if (((await stat(path)).mode & 0o077) !== 0) return undefined
    return identityFromPem(await readFile(path, 'utf8')).authorHex
  } catch {
    return undefined
  }
}

export function sameDir (a: string, b: string): boolean {
  return resolve(a) === resolve(b)
}
