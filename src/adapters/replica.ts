import { MergedLog, type IngestResult } from '../crdt/merged-log.js'
import type { ReducerContext } from '../projections/reducers.js'
import { FoldEngine, type ReducerMap, type StatesOf } from '../crdt/fold.js'
import type { Frontier } from '../crdt/frontier.js'
import type { ForkProof } from '../crdt/fork-proof.js'
import { EventStore, type EventDb } from '../log/store.js'
import { compareEvents, openTrusted, signEvent, type EventFields, type SignedEvent, type Signer, type Verifier } from '../log/event.js'
import { Ed25519Verifier } from '../log/identity.js'
import { fromHex, toHex } from '../log/bytes.js'
import { LIMITS, type BodyOf, type EventType } from '../log/bodies.js'
import { isWeftError, WeftError } from '../log/errors.js'
import { checkpointMismatch, decodeCheckpoint, encodeCheckpoint, makeCheckpoint } from '../crdt/fold-checkpoint.js'
import { decodeState, encodeState } from '../projections/state-codec.js'
import { projectionCodeId } from './projection-code.js'
import { EventShelf } from './event-shelf.js'
import { encodeIndexSnapshot } from '../log/index-snapshot.js'
import { loadIndexSnapshot, tipsMismatch } from './index-snapshot-load.js'
import type { StoredEvent } from '../log/stored-event.js'

export interface ReplicaOptions<R extends ReducerMap> {
  db: EventDb
  net: Uint8Array
  /**
   * The projections, or a function making them from the merged log (reducers that must know of
   * fork proofs, which live in the log and not in any event).
   */
  reducers: R | ((ctx: ReducerContext) => R)
  /**
   * The network's owner key (from the token). Recorded in the store on first open; a replica
   * opened without it (the log CLI on a stopped data dir) uses the recorded one.
   */
  owner?: Uint8Array
  verifier?: Verifier
  /** Needed to append; a read-only replica (the log CLI) has none. */
  signer?: Signer
  maxPending?: number
  /** fsync every batch (default true). */
  sync?: boolean
  /**
   * Fold checkpoints in the store (issue 16.2), so a restart folds only what came after one:
   * a new one once `every` events were folded since the last (default 20,000), and at close()
   * when at least `min` are not in it (default 1,000; fewer refold in milliseconds).
   * false: never read or write one (a replica over a throwaway memory store).
   */
  checkpoint?: false | { every?: number, min?: number }
}

/** What the last open did with the stored fold checkpoint, and how the last write went. */
export interface CheckpointStatus {
  /** Events of the view restored from the checkpoint (0: folded from the start). */
  restored: number
  /** Why the stored checkpoint was not used (none, or a mismatch / damage). */
  refused?: string
  /** The last write that failed, and why (the replica works on without one). */
  writeError?: string
}

/** What the last open did with the stored index snapshot, and how the last write went. */
export interface IndexStatus {
  /** Events read from the index snapshot (0: the order index was read entry by entry). */
  restored: number
  /** Why the stored snapshot was not used (none, or a mismatch / damage). */
  refused?: string
  /** The last write that failed, and why (the next start reads the order index instead). */
  writeError?: string
}

export const CHECKPOINT_DEFAULTS = { every: 20_000, min: 1_000 } as const

export type { ReducerContext }

export type ReplicaListener = (added: readonly SignedEvent[], forks: readonly ForkProof[]) => void

/**
 * A durable replica: the merged log in memory, the event store on disk and the fold engine over
 * both. Every change goes through one queue, and an event is reported stored only once its
 * batch is on disk.
 */
export class Replica<R extends ReducerMap> {
  readonly log: MergedLog
  readonly fold: FoldEngine<R>
  readonly store: EventStore
  /** The events' bytes and bodies: in the store, the newest few decoded (event-shelf.ts). */
  readonly shelf: EventShelf
  private readonly signer: Signer | undefined
  private readonly listeners = new Set<ReplicaListener>()
  private queue: Promise<unknown> = Promise.resolve()
  private closed = false
  /** Events folded (or view changes) since the stored checkpoint. */
  private unCheckpointed = 0
  checkpointStatus: CheckpointStatus = { restored: 0 }
  /** Events stored since the stored index snapshot. */
  private unSnapshotted = 0
  indexStatus: IndexStatus = { restored: 0 }

  private constructor (private readonly opts: ReplicaOptions<R>) {
    this.store = new EventStore(opts.db, { sync: opts.sync })
    this.shelf = new EventShelf(this.store, opts.net)
    this.log = new MergedLog({ net: opts.net, verifier: opts.verifier ?? new Ed25519Verifier(), maxPending: opts.maxPending, held: this.shelf })
    const ctx: ReducerContext = { log: this.log, ...(opts.owner !== undefined ? { owner: opts.owner } : {}) }
    this.fold = new FoldEngine(typeof opts.reducers === 'function' ? opts.reducers(ctx) : opts.reducers)
    this.signer = opts.signer
  }

  static async open<R extends ReducerMap> (opts: ReplicaOptions<R>): Promise<Replica<R>> {
    const meta = new EventStore(opts.db, { sync: opts.sync })
    const netHex = toHex(opts.net)
    const storedNet = await meta.getMeta('net')
    if (storedNet === undefined) {
      await meta.setMeta('net', netHex)
    } else if (storedNet !== netHex) {
      throw new WeftError('ERR_WRONG_NETWORK', `this data dir belongs to network ${storedNet}, not ${netHex}; use another --data-dir for this token`)
    }
    const storedOwner = await meta.getMeta('owner')
    let owner = opts.owner
    if (owner !== undefined && storedOwner !== toHex(owner)) {
      if (storedOwner !== undefined) throw new WeftError('ERR_WRONG_NETWORK', `this data dir belongs to a network owned by ${storedOwner.slice(0, 16)}…, not the token's owner ${toHex(owner).slice(0, 16)}…; use another --data-dir for this token`)
      await meta.setMeta('owner', toHex(owner))
    } else if (owner === undefined && storedOwner !== undefined) {
      owner = fromHex(storedOwner)
    }
    return await Replica.loaded({ ...opts, ...(owner !== undefined ? { owner } : {}) })
  }

  /** A replica read from its store: from the index snapshot, or the whole order index when that does not match. */
  private static async loaded<R extends ReducerMap> (opts: ReplicaOptions<R>): Promise<Replica<R>> {
    const r = new Replica(opts)
    if (await r.load(opts.checkpoint !== false)) return r
    const again = new Replica(opts)
    await again.load(false)
    again.indexStatus = r.indexStatus
    return again
  }

  /** The owner key this replica judges authority by (undefined: an open, legacy network). */
  get owner (): Uint8Array | undefined { return this.opts.owner }

  /**
   * Read the store into the log and the fold. With `useSnapshot`, from the index snapshot plus
   * the order index after its last entry; false when that did not match the store (the log is
   * then partly filled: the caller loads a fresh replica without it).
   */
  private async load (useSnapshot: boolean): Promise<boolean> {
    // Stored events were validated before they were written (signatures included); reading them
    // back re-checks only what disk damage breaks: every parent must be stored before its child
    // (restore), and each id is recomputed from the bytes when the bytes are read (the shelf, or
    // here for rows of an older store). docs/trust.md.
    const batch: SignedEvent[] = []
    const unindexed: SignedEvent[] = []
    const authors = new Map<string, Uint8Array>()
    const snapshot = useSnapshot ? await this.readIndexSnapshot() : undefined
    try {
      let after: string | undefined
      if (snapshot !== undefined && snapshot.length > 0) {
        this.log.restoreStored(snapshot)
        after = EventStore.keyOf(snapshot[snapshot.length - 1] as StoredEvent).order
      }
      await this.readIndex(after, batch, unindexed, authors)
    } catch (err) {
      // With a snapshot, a parent missing after it means the snapshot is stale, not the store
      // damaged: the whole order index says which (it throws again if the store is damaged).
      if (snapshot === undefined || !isWeftError(err, 'ERR_STORE')) throw err
      this.indexStatus = { restored: 0, refused: `the order index after it does not fit it (${err.message})` }
      return false
    }
    if (snapshot !== undefined) {
      const why = await this.frontierMismatch()
      if (why !== undefined) {
        this.indexStatus = { restored: 0, refused: why }
        return false
      }
      this.indexStatus = { restored: snapshot.length }
    }
    this.unSnapshotted = this.log.size - (snapshot?.length ?? 0)
    // An older store: its index gets the headers now, so the next start reads no envelope.
    for (let i = 0; i < unindexed.length; i += 4096) await this.store.indexHeaders(unindexed.slice(i, i + 4096))
    // The store's order index is the total order, so this sort finds it sorted (linear).
    const view = [...this.log.events()].filter((e) => this.log.isVisible(e)).sort(compareEvents)
    const restored = await this.restoreCheckpoint(view)
    if (restored === undefined) this.fold.insert(view)
    else this.fold.resume(view, restored.count, restored.states)
    this.unCheckpointed = view.length - (restored?.count ?? 0)
    return true
  }

  /** The order index (after `after`) into the log, in batches. */
  private async readIndex (after: string | undefined, batch: SignedEvent[], unindexed: SignedEvent[], authors: Map<string, Uint8Array>): Promise<void> {
    for await (const row of this.store.headersInOrder(after)) {
      if ('envelope' in row) {
        const e = openTrusted(row.envelope, this.opts.net)
        if (e.idHex !== row.id) throw new WeftError('ERR_STORE', `event stored under ${row.id} hashes to ${e.idHex}: the store is damaged; run "weft log verify"`)
        batch.push(e)
        unindexed.push(e)
      } else {
        let author = authors.get(row.author)
        if (author === undefined) { author = fromHex(row.author); authors.set(row.author, author) }
        // What restore reads of an event; it keeps a StoredEvent made from it (merged-log.ts).
        const fields = { v: 1, net: this.opts.net, author, seq: row.seq, prev: row.prev, deps: row.deps, lamport: row.lamport, time: row.time, type: row.type }
        batch.push({ fields, idHex: row.id, authorHex: row.author } as unknown as SignedEvent)
      }
      if (batch.length >= 64) { this.log.restore(batch); batch.length = 0 }
    }
    this.log.restore(batch)
  }

  /** The stored index snapshot's events (index-snapshot-load.ts), or undefined and why. */
  private async readIndexSnapshot (): Promise<StoredEvent[] | undefined> {
    const r = await loadIndexSnapshot(this.store, this.opts.net, this.shelf)
    if ('refused' in r) {
      this.indexStatus = { restored: 0, refused: r.refused }
      return undefined
    }
    return r.events
  }

  private async frontierMismatch (): Promise<string | undefined> {
    return tipsMismatch(await this.store.frontier(), this.log.frontier())
  }

  private get codeId (): string {
    // The reducer keys too: a replica folding other projections has a state of another shape.
    return `${projectionCodeId()}:${Object.keys(this.fold.states()).join(',')}`
  }

  private freezeMap (): Map<string, number> {
    return new Map([...this.log.forks()].map(([a, p]) => [a, p.seq]))
  }

  /**
   * The stored checkpoint's state, if it was folded over a prefix of exactly this view by this
   * code (src/crdt/fold-checkpoint.ts says what is checked); otherwise undefined, and why.
   */
  private async restoreCheckpoint (view: readonly SignedEvent[]): Promise<{ count: number, states: StatesOf<R> } | undefined> {
    if (this.opts.checkpoint === false) return undefined
    const bytes = await this.store.getCheckpoint()
    if (bytes === undefined) {
      this.checkpointStatus = { restored: 0, refused: 'no checkpoint stored' }
      return undefined
    }
    try {
      const c = decodeCheckpoint(bytes)
      const why = checkpointMismatch(c, { code: this.codeId, owner: this.opts.owner, view, freeze: this.freezeMap() })
      if (why !== undefined) {
        this.checkpointStatus = { restored: 0, refused: why }
        return undefined
      }
      const states = decodeState(c.states) as StatesOf<R>
      this.checkpointStatus = { restored: c.count }
      return { count: c.count, states }
    } catch (err) {
      if (!isWeftError(err, 'ERR_CHECKPOINT')) throw err
      this.checkpointStatus = { restored: 0, refused: err.message }
      return undefined
    }
  }

  /** Write a checkpoint of the fold as it is now (after what is queued). False when it could not. */
  async checkpoint (): Promise<boolean> {
    return await this.serial(async () => await this.writeCheckpoint())
  }

  private async writeCheckpoint (): Promise<boolean> {
    if (this.opts.checkpoint === false) return false
    await this.writeIndexSnapshot()
    try {
      const states = encodeState(this.fold.states())
      const c = makeCheckpoint({ code: this.codeId, owner: this.opts.owner, view: this.fold.events(), freeze: this.freezeMap(), states })
      await this.store.putCheckpoint(encodeCheckpoint(c))
      this.unCheckpointed = 0
      delete this.checkpointStatus.writeError
      return true
    } catch (err) {
      // The events are stored; without a fresh checkpoint the next start folds more, that is all.
      if (!isWeftError(err, 'ERR_CHECKPOINT') && !isWeftError(err, 'ERR_STORE')) throw err
      this.checkpointStatus.writeError = err.message
      return false
    }
  }

  /** Write the whole log's headers as the index snapshot (src/log/index-snapshot.ts): the next start reads it in one get. */
  private async writeIndexSnapshot (): Promise<void> {
    try {
      const events = [...this.log.events()].sort(compareEvents)
      await this.store.putIndexSnapshot(encodeIndexSnapshot(events, this.opts.net))
      this.unSnapshotted = 0
      delete this.indexStatus.writeError
    } catch (err) {
      if (!isWeftError(err, 'ERR_STORE')) throw err
      this.indexStatus.writeError = err.message
    }
  }

  get net (): Uint8Array { return this.opts.net }
  get authorHex (): string | undefined { return this.signer === undefined ? undefined : toHex(this.signer.publicKey) }

  onChange (fn: ReplicaListener): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  private serial<T> (fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(async () => {
      if (this.closed) throw new WeftError('ERR_STORE', 'the replica is closed')
      return await fn()
    })
    this.queue = p.catch(() => undefined)
    return p
  }

  /** Validate, persist, fold. Resolves once the accepted events are durable. */
  async ingest (inputs: ReadonlyArray<Uint8Array | SignedEvent>): Promise<IngestResult> {
    return await this.serial(async () => await this.ingestNow(inputs))
  }

  private async ingestNow (inputs: ReadonlyArray<Uint8Array | SignedEvent>): Promise<IngestResult> {
    const res = this.log.ingest(inputs)
    if (res.added.length > 0) {
      try {
        await this.store.put(res.added, this.log.frontier(new Set(res.added.map((e) => e.authorHex))))
        this.shelf.stored(res.added)
      } catch (err) {
        // Memory is ahead of disk: rebuild it from disk so nothing unstored is ever reported.
        await this.reload()
        throw err
      }
      this.fold.insert(res.added.filter((e) => this.log.isVisible(e)))
      if (res.forks.length > 0) {
        this.fold.remove((e) => !this.log.isVisible(e))
        // A forked author departs after its last visible event: refold from there.
        const lastVisible = new Map(res.forks.map((p) => [p.authorHex, (this.log.freezeSeq(p.authorHex) ?? p.seq) - 1]))
        this.fold.refoldAt((e) => lastVisible.get(e.authorHex) === e.fields.seq)
      }
      for (const fn of this.listeners) fn(res.added, res.forks)
      this.unCheckpointed += res.added.length
      this.unSnapshotted += res.added.length
      if (this.opts.checkpoint !== false && this.unCheckpointed >= (this.opts.checkpoint?.every ?? CHECKPOINT_DEFAULTS.every)) await this.writeCheckpoint()
    }
    return res
  }

  private async reload (): Promise<void> {
    const fresh = await Replica.loaded(this.opts)
    Object.assign(this, { log: fresh.log, fold: fresh.fold, shelf: fresh.shelf, unCheckpointed: fresh.unCheckpointed, unSnapshotted: fresh.unSnapshotted, checkpointStatus: fresh.checkpointStatus, indexStatus: fresh.indexStatus })
  }

  /** Sign a new event of our own feed, on top of everything we have seen. */
  /** The seq our next event will have (what a cosignature must be bound to). */
  nextSeq (): number {
    const me = this.authorHex
    return me === undefined ? 1 : this.log.maxSeqOf(me) + 1
  }

  /**
   * `expectSeq`: append only if the event gets this seq (a cosignature is bound to it); otherwise
   * ERR_STALE_SEQ and nothing is appended, so the caller prepares again.
   */
  async append<T extends EventType> (type: T, body: BodyOf<T>, time: number, opts: { expectSeq?: number } = {}): Promise<SignedEvent> {
    return await this.serial(async () => {
      const signer = this.signer
      if (signer === undefined) throw new WeftError('ERR_BAD_INPUT', 'this replica was opened read-only (no identity)')
      const me = toHex(signer.publicKey)
      if (this.log.freezeSeq(me) !== undefined) {
        throw new WeftError('ERR_AUTHOR_FROZEN', 'this node\'s own feed is forked (was the data dir restored from an old copy?); it can no longer append. Start with a new --data-dir')
      }
      const seq = this.log.maxSeqOf(me) + 1
      if (opts.expectSeq !== undefined && opts.expectSeq !== seq) {
        throw new WeftError('ERR_STALE_SEQ', `the cosignature is bound to seq ${opts.expectSeq} but this node's next event is seq ${seq} (it appended meanwhile); prepare and sign again`)
      }
      const prevEv = seq > 1 ? this.log.eventsOf(me, seq - 1)[0] : undefined
      const heads: SignedEvent[] = []
      for (const [author, entry] of this.log.frontier()) {
        if (author === me) continue
        for (const id of [entry.head, ...entry.forks]) heads.push(this.log.get(id) as SignedEvent)
      }
      heads.sort((a, b) => b.fields.lamport - a.fields.lamport)
      const deps = heads.slice(0, LIMITS.maxDeps)
      const lamport = Math.max(prevEv?.fields.lamport ?? 0, ...deps.map((d) => d.fields.lamport)) + 1
      const ev = signEvent({
        v: 1,
        net: this.opts.net,
        author: signer.publicKey,
        seq,
        prev: prevEv?.id ?? null,
        deps: deps.map((d) => fromHex(d.idHex)),
        lamport,
        time: Math.max(0, Math.floor(time)),
        type,
        body
      } as EventFields, signer)
      const res = await this.ingestNow([ev])
      if (res.added.length !== 1) {
        throw new WeftError('ERR_STORE', `own event was not accepted: ${res.rejected[0]?.message ?? 'unknown reason'}`)
      }
      return ev
    })
  }

  states (): StatesOf<R> { return this.fold.states() }
  frontier (): Frontier { return this.log.frontier() }
  missingFor (remote: Frontier, limit?: number): SignedEvent[] { return this.log.missingFor(remote, limit) }

  async close (): Promise<void> {
    await this.serial(async () => {
      if (this.opts.checkpoint !== false && this.unCheckpointed >= (this.opts.checkpoint?.min ?? CHECKPOINT_DEFAULTS.min)) await this.writeCheckpoint()
      // Whatever was stored since: a stale snapshot is read on top of anyway, but an event stored
      // after it that sorts inside it makes the next start read the whole order index.
      else if (this.opts.checkpoint !== false && this.unSnapshotted > 0) await this.writeIndexSnapshot()
      this.closed = true
    })
    await this.opts.db.close()
  }
}
