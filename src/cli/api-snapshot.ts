import { MemoryLevel } from 'memory-level'
import { Replica } from '../adapters/replica.js'
import { fromHex } from '../log/bytes.js'
import { isWeftError } from '../log/errors.js'
import { openTrusted, type SignedEvent } from '../log/event.js'
import type { EventDb } from '../log/store.js'
import { ApiClient } from './api-client.js'
import type { OpenReplica } from './data-dir.js'
import { CliError } from './errors.js'
import { replicaReducers, type ReplicaReducers } from '../projections/reducers.js'

/**
 * A read-only copy of a running daemon's log, for the `weft log` verbs while the daemon holds
 * the LevelDB store: every envelope is fetched through GET /api/v1/events (page by page, in
 * total order) into an in-memory replica, which the verbs then read as they read a store.
 *
 * The daemon validated each event before storing it, so envelopes are decoded without
 * re-checking signatures (as a store is loaded); the merged log still applies the chain,
 * lamport and fork rules, and `weft log verify` re-checks everything on the copy.
 */

const BATCH = 4096

export async function snapshotFromDaemon (dataDir: string, client?: ApiClient): Promise<OpenReplica> {
  const api = client ?? await ApiClient.fromDataDir(dataDir)
  const status = await api.status()
  const net = fromHex(status.networkId)
  const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as EventDb
  const replica: Replica<ReplicaReducers> = await Replica.open({ db, net, reducers: replicaReducers(), sync: false, maxPending: Number.MAX_SAFE_INTEGER, checkpoint: false })
  try {
    await fill(replica, await api.allEnvelopes(), net, api.url)
    if (replica.log.pendingCount > 0) {
      // An event with a lower lamport reached the daemon while we paged past it, and events
      // that depend on it wait for it here. One more full pass brings it (the rest are
      // duplicates); what still waits after that arrived during the second pass and is left out.
      await fill(replica, await api.allEnvelopes(), net, api.url)
    }
  } catch (err) {
    await replica.close()
    throw err
  }
  const netHex = status.networkId
  return { dataDir, db, store: replica.store, net, netHex, replica, close: async () => { await replica.close() } }
}

async function fill (replica: Replica<ReplicaReducers>, envelopes: readonly Uint8Array[], net: Uint8Array, url: string): Promise<void> {
  for (let i = 0; i < envelopes.length; i += BATCH) {
    const batch: SignedEvent[] = []
    for (const env of envelopes.slice(i, i + BATCH)) {
      try {
        batch.push(openTrusted(env, net))
      } catch (err) {
        throw new CliError(`the API at ${url} sent an event that does not decode: ${isWeftError(err) ? 'not an event envelope' : (err as Error).message}`)
      }
    }
    const res = await replica.ingest(batch)
    const bad = res.rejected[0]
    if (bad !== undefined) {
      throw new CliError(`the API at ${url} sent ${res.rejected.length} event(s) that do not fit its own log (${bad.code}: ${bad.message}); run "weft log verify" once the daemon is stopped`)
    }
  }
}
