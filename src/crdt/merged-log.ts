import { WeftError, type WeftErrorCode } from '../log/errors.js'
import { compareEvents, openEnvelope, type SignedEvent, type Verifier } from '../log/event.js'
import { equalBytes, toHex } from '../log/bytes.js'
import { makeForkProof, type ForkProof } from './fork-proof.js'
import type { Frontier, FrontierEntry } from './frontier.js'
import { StoredEvent, type EnvelopeSource } from '../log/stored-event.js'
import { ParkedEvents } from './parked-events.js'

export interface Rejection {
  /** Position in the ingested batch. */
  index: number
  id?: string
  code: WeftErrorCode
  message: string
}

export interface IngestResult {
  /** Newly accepted events, parents before children. */
  added: SignedEvent[]
  duplicates: number
  /** Events parked because a parent is missing (they are pulled later). */
  parked: number
  /** Parked events pushed out of the bounded pending buffer. */
  dropped: number
  rejected: Rejection[]
  /** Fork proofs that changed an author's freeze point. */
  forks: ForkProof[]
}

/** An event's parents, looked up. */
interface Parents { prev: SignedEvent | undefined, deps: readonly SignedEvent[] }

interface Feed {
  /**
   * The first event accepted at each seq, at index seq - 1: a feed is dense (an event is
   * accepted only after its prev, at seq - 1), and one array slot per event is the cheapest index.
   */
  first: SignedEvent[]
  /** Every event at a seq that holds more than one (a fork), sorted by id. */
  twins: Map<number, SignedEvent[]>
  maxSeq: number
  tips: Set<string>
}

function atSeq (feed: Feed, seq: number): SignedEvent[] {
  const twins = feed.twins.get(seq)
  if (twins !== undefined) return twins
  const e = feed.first[seq - 1]
  return e === undefined ? [] : [e]
}

/**
 * Where accepted events keep their bytes and bodies (a replica's store): the log then holds only
 * their headers (StoredEvent). `hold` is told of each newly accepted event before anything reads
 * it back; events handed to `restore` come from the store and are not held.
 */
export interface HeldEvents extends EnvelopeSource {
  hold: (ev: SignedEvent) => void
}

export interface MergedLogOptions {
  net: Uint8Array
  verifier: Verifier
  /** Bound on events waiting for parents. */
  maxPending?: number
  /** Keep events' bytes and bodies there instead of in memory (default: in memory, whole). */
  held?: HeldEvents
}

/**
 * The merged log: the union of every author's feed. Grow-only and validated on entry, so two
 * replicas that have seen the same events hold the same log whatever the order or duplication
 * of delivery. Pure: no I/O, no clock.
 */
export class MergedLog {
  readonly net: Uint8Array
  private readonly verifier: Verifier
  private readonly maxPending: number
  private readonly held: HeldEvents | undefined
  private readonly byId = new Map<string, SignedEvent>()
  private readonly feeds = new Map<string, Feed>()
  private readonly parked: ParkedEvents
  private readonly forkProofs = new Map<string, ForkProof>()
  private topLamport = 0

  constructor (opts: MergedLogOptions) {
    this.net = opts.net
    this.verifier = opts.verifier
    this.maxPending = opts.maxPending ?? 10_000
    this.held = opts.held
    this.parked = new ParkedEvents(this.maxPending, (ev) => this.missingParents(ev))
  }

  get size (): number { return this.byId.size }
  /** The highest lamport of any event held (0 when empty): the last event of the total order. */
  get maxLamport (): number { return this.topLamport }
  get pendingCount (): number { return this.parked.size }

  has (id: string): boolean { return this.byId.has(id) }
  get (id: string): SignedEvent | undefined { return this.byId.get(id) }
  events (): IterableIterator<SignedEvent> { return this.byId.values() }
  authors (): string[] { return [...this.feeds.keys()] }

  eventsOf (authorHex: string, seq: number): SignedEvent[] {
    const feed = this.feeds.get(authorHex)
    return feed === undefined ? [] : atSeq(feed, seq)
  }

  maxSeqOf (authorHex: string): number {
    return this.feeds.get(authorHex)?.maxSeq ?? 0
  }

  /** Lowest-seq fork proof per author: the author is frozen from that seq on. */
  forks (): Map<string, ForkProof> { return new Map(this.forkProofs) }

  freezeSeq (authorHex: string): number | undefined {
    return this.forkProofs.get(authorHex)?.seq
  }

  /** Events of a frozen author at or after its fork point are kept but not folded. */
  isVisible (e: SignedEvent): boolean {
    const f = this.forkProofs.get(e.authorHex)
    return f === undefined || e.fields.seq < f.seq
  }

  /**
   * Validate and merge. Accepts envelopes (checked in full) or events already opened by
   * `openEnvelope`. Idempotent and order-independent.
   */
  ingest (inputs: ReadonlyArray<Uint8Array | SignedEvent>): IngestResult {
    const res: IngestResult = { added: [], duplicates: 0, parked: 0, dropped: 0, rejected: [], forks: [] }
    inputs.forEach((input, index) => {
      let ev: SignedEvent
      try {
        ev = input instanceof Uint8Array ? openEnvelope(input, this.net, this.verifier) : input
      } catch (err) {
        res.rejected.push(rejection(index, undefined, err))
        return
      }
      if (this.byId.has(ev.idHex) || this.parked.has(ev.idHex)) {
        res.duplicates++
        return
      }
      this.admit(ev, index, res)
    })
    return res
  }

  /**
   * Events read back from this replica's own store, parents first (its order index). They were
   * validated in full before they were stored, so the causal rules are not checked again; only
   * what a damaged store would break is: every parent present. Returns the fork proofs found
   * (twins stored at one seq). Throws ERR_STORE at the first event whose parent is missing.
   */
  restore (events: Iterable<SignedEvent>): ForkProof[] {
    const res: IngestResult = { added: [], duplicates: 0, parked: 0, dropped: 0, rejected: [], forks: [] }
    for (const ev of events) {
      if (this.byId.has(ev.idHex)) continue
      // Each parent looked up once (hex ids cost: 100,000 events name ~300,000 parents).
      const f = ev.fields
      const prev = f.prev === null ? undefined : this.byId.get(toHex(f.prev))
      const deps = f.deps.map((d) => this.byId.get(toHex(d)))
      if ((f.prev !== null && prev === undefined) || deps.includes(undefined)) {
        const missing = this.missingParents(ev)[0] as string
        throw new WeftError('ERR_STORE', `stored event ${ev.idHex.slice(0, 12)} names parent ${missing.slice(0, 12)}, which is not stored before it; run "weft log verify"`)
      }
      this.accept(ev, res, { prev, deps: deps as SignedEvent[] }, true)
      res.added.length = 0
    }
    return res.forks
  }

  /**
   * Events already made as the log keeps them, in total order, parents linked by reference
   * (an index snapshot read back: src/log/index-snapshot.ts). Their parents are objects of the
   * same batch or already held, so only the feeds, tips and fork proofs are built. Returns the
   * fork proofs found. Throws ERR_STORE when a parent is not held (an inconsistent snapshot).
   */
  restoreStored (events: readonly StoredEvent[]): ForkProof[] {
    const res: IngestResult = { added: [], duplicates: 0, parked: 0, dropped: 0, rejected: [], forks: [] }
    for (const ev of events) {
      if (this.byId.has(ev.idHex)) throw new WeftError('ERR_STORE', `event ${ev.idHex.slice(0, 12)} is restored twice`)
      let held = ev.parent === null || this.byId.get(ev.parent.idHex) === ev.parent
      for (const d of ev.depEvents) held &&= this.byId.get(d.idHex) === d
      if (!held) throw new WeftError('ERR_STORE', `stored event ${ev.idHex.slice(0, 12)} names a parent that is not held`)
      this.index(ev, res)
      res.added.length = 0
    }
    return res.forks
  }

  private missingParents (ev: SignedEvent): string[] {
    const out: string[] = []
    const prev = ev.fields.prev
    if (prev !== null) {
      const p = toHex(prev)
      if (!this.byId.has(p)) out.push(p)
    }
    for (const d of ev.fields.deps) {
      const h = toHex(d)
      if (!this.byId.has(h)) out.push(h)
    }
    return out
  }

  private admit (first: SignedEvent, index: number, res: IngestResult): void {
    const missing = this.missingParents(first)
    if (missing.length > 0) {
      this.park(first, missing, res)
      return
    }
    // Accepting one event may complete others waiting on it: walk them iteratively.
    const queue: SignedEvent[] = [first]
    while (queue.length > 0) {
      const ev = queue.pop() as SignedEvent
      const problem = this.causalProblem(ev)
      if (problem !== undefined) {
        res.rejected.push({ index, id: ev.idHex, code: problem.code, message: problem.message })
        this.rejectDescendants(ev, index, res)
        continue
      }
      this.accept(ev, res)
      queue.push(...this.parked.completedBy(ev.idHex))
    }
  }

  /** A pending event whose parent turned out invalid can never become valid. */
  private rejectDescendants (bad: SignedEvent, index: number, res: IngestResult): void {
    for (const { id, parent } of this.parked.descendantsOf(bad.idHex)) {
      res.rejected.push({ index, id, code: 'ERR_BAD_DEP', message: `depends on invalid event ${parent.slice(0, 12)}` })
    }
  }

  private park (ev: SignedEvent, missing: string[], res: IngestResult): void {
    if (this.parked.park(ev, missing)) res.dropped++
    res.parked++
  }

  private causalProblem (ev: SignedEvent): { code: WeftErrorCode, message: string } | undefined {
    const f = ev.fields
    let maxLamport = 0
    if (f.prev !== null) {
      const p = this.byId.get(toHex(f.prev)) as SignedEvent
      if (p.authorHex !== ev.authorHex || p.fields.seq !== f.seq - 1) {
        return { code: 'ERR_BAD_PREV', message: `prev must be the author's event at seq ${f.seq - 1}` }
      }
      maxLamport = p.fields.lamport
    }
    for (const d of f.deps) {
      const p = this.byId.get(toHex(d)) as SignedEvent
      if (p.authorHex === ev.authorHex) {
        return { code: 'ERR_BAD_DEP', message: 'deps name heads of other authors; the own feed is linked by prev' }
      }
      if (p.fields.lamport > maxLamport) maxLamport = p.fields.lamport
    }
    if (f.lamport !== maxLamport + 1) {
      return { code: 'ERR_BAD_LAMPORT', message: `lamport is ${f.lamport}, must be ${maxLamport + 1} (max of parents + 1)` }
    }
    return undefined
  }

  /**
   * The event as kept. Held elsewhere (a replica): a StoredEvent, its header only, its parents as
   * references. Otherwise the whole event, with the byte fields that many events share (the
   * network id, the author's key, the ids of its parents) pointing at one copy each: each is an
   * object, an ArrayBuffer and a separate allocation outside the heap.
   */
  private compact (ev: SignedEvent, parents: Parents | undefined, stored: boolean): SignedEvent {
    const f = ev.fields
    const feed = this.feeds.get(ev.authorHex)
    const first = feed?.first[0]
    const author = first?.fields.author ?? f.author
    const authorHex = first?.authorHex ?? ev.authorHex
    if (this.held === undefined) {
      const prev = f.prev === null ? null : ((parents?.prev ?? this.byId.get(toHex(f.prev)))?.id ?? f.prev)
      const deps = f.deps.map((d, i) => ((parents?.deps[i] ?? this.byId.get(toHex(d)))?.id ?? d))
      const net = equalBytes(f.net, this.net) ? this.net : f.net
      return { fields: { ...f, net, author, prev, deps }, bytes: ev.bytes, sig: ev.sig, id: ev.id, idHex: ev.idHex, authorHex, envelope: ev.envelope }
    }
    if (!stored) this.held.hold(ev)
    // Accepted only once every parent is held (admit, restore): they are all found.
    const prevEvent = f.prev === null ? null : (parents?.prev ?? this.byId.get(toHex(f.prev))) as SignedEvent
    const depEvents = parents?.deps ?? f.deps.map((d) => this.byId.get(toHex(d)) as SignedEvent)
    return new StoredEvent({ author, seq: f.seq, lamport: f.lamport, time: f.time, type: f.type }, { prev: prevEvent, deps: depEvents }, ev.idHex, authorHex, this.held)
  }

  /**
   * `parents`: the event's parents when the caller already looked them up (restore); `stored`:
   * the event comes from the store (restore), so its bytes need not be held.
   */
  private accept (input: SignedEvent, res: IngestResult, parents?: Parents, stored = false): void {
    this.index(this.compact(input, parents, stored), res)
  }

  /** Add an event as kept (compact) to the id map, its feed, its feed's tips and fork proofs. */
  private index (ev: SignedEvent, res: IngestResult): void {
    this.byId.set(ev.idHex, ev)
    if (ev.fields.lamport > this.topLamport) this.topLamport = ev.fields.lamport
    let feed = this.feeds.get(ev.authorHex)
    if (feed === undefined) {
      feed = { first: [], twins: new Map(), maxSeq: 0, tips: new Set() }
      this.feeds.set(ev.authorHex, feed)
    }
    const seq = ev.fields.seq
    const held = feed.first[seq - 1]
    if (held === undefined) {
      feed.first[seq - 1] = ev
    } else {
      const same = feed.twins.get(seq) ?? [held]
      feed.twins.set(seq, same)
      same.push(ev)
      same.sort((a, b) => (a.idHex < b.idHex ? -1 : 1))
      const current = this.forkProofs.get(ev.authorHex)
      if (current === undefined || seq < current.seq ||
          (seq === current.seq && (same[0] as SignedEvent).idHex + (same[1] as SignedEvent).idHex < current.a.idHex + current.b.idHex)) {
        const proof = makeForkProof(same[0] as SignedEvent, same[1] as SignedEvent)
        this.forkProofs.set(ev.authorHex, proof)
        res.forks.push(proof)
      }
    }
    if (seq > feed.maxSeq) feed.maxSeq = seq
    if (ev instanceof StoredEvent) {
      if (ev.parent !== null) feed.tips.delete(ev.parent.idHex)
    } else if (ev.fields.prev !== null) {
      feed.tips.delete(toHex(ev.fields.prev))
    }
    // A new event is a tip unless a child arrived first, which the pending buffer prevents.
    feed.tips.add(ev.idHex)
    res.added.push(ev)
  }

  /** Ids that pending events wait for and that are not themselves pending: what to ask peers for. */
  wantedParents (max = 256): string[] {
    return this.parked.wanted(max, (id) => this.byId.has(id))
  }

  /** The frontier, or only its rows for `authors` (what a store write of a batch needs). */
  frontier (authors?: Iterable<string>): Frontier {
    const f: Frontier = new Map()
    if (authors === undefined) {
      for (const [author, feed] of this.feeds) f.set(author, this.entryOf(feed))
      return f
    }
    for (const author of authors) {
      const feed = this.feeds.get(author)
      if (feed !== undefined) f.set(author, this.entryOf(feed))
    }
    return f
  }

  private entryOf (feed: Feed): FrontierEntry {
    const tips = [...feed.tips].map((id) => this.byId.get(id) as SignedEvent)
      .sort((a, b) => b.fields.seq - a.fields.seq || (a.idHex < b.idHex ? -1 : 1))
    const head = tips[0] as SignedEvent
    return { seq: head.fields.seq, head: head.idHex, forks: tips.slice(1).map((t) => t.idHex) }
  }

  /**
   * Events the holder of `remote` lacks, in the log's total order (parents first), at most
   * `limit`. Unforked feeds cost one lookup per missing event; a remote head unknown here at a
   * seq we hold means a fork, and we send our branch back to `forkWindow` events before it
   * (deeper history is pulled by id through `wantedParents`).
   *
   * When the remote holds heads we do not know, we cannot tell which of our events it already
   * has. A limited batch then takes the events it certainly lacks first (oldest first), and
   * fills the rest with the newest of the uncertain ones. Filling it with the oldest would
   * resend shared history forever: two replicas whose feeds differ only past the fork point
   * would exchange the same known events every round and never learn of the fork. The newest
   * uncertain event is always useful in at least one direction: if the remote already holds it,
   * the remote has a descendant with a higher lamport that we lack.
   */
  missingFor (remote: Frontier, limit = Number.POSITIVE_INFINITY, forkWindow = 64): SignedEvent[] {
    const sure: SignedEvent[] = []
    const maybe: SignedEvent[] = []
    for (const [author, feed] of this.feeds) {
      const r = remote.get(author)
      if (r === undefined) {
        for (let s = 1; s <= feed.maxSeq; s++) sure.push(...atSeq(feed, s))
        continue
      }
      const remoteTips = [r.head, ...r.forks]
      const unknown = remoteTips.filter((id) => !this.byId.has(id))
      const forked = feed.tips.size > 1 || remoteTips.length > 1
      if (!forked && unknown.length === 0) {
        for (let s = r.seq + 1; s <= feed.maxSeq; s++) sure.push(...atSeq(feed, s))
        continue
      }
      const known = this.ancestorsOf(remoteTips.filter((id) => this.byId.has(id)))
      let from = 1
      const forkSeqs = unknown.map((id) => (id === r.head ? r.seq : Number.POSITIVE_INFINITY))
      const lowestUnknown = Math.min(...forkSeqs)
      if (unknown.length > 0 && lowestUnknown <= feed.maxSeq) from = Math.max(1, lowestUnknown - forkWindow)
      else if (unknown.length > 0 && known.size === 0) continue // remote is ahead of us: pull first
      for (let s = from; s <= feed.maxSeq; s++) {
        const evs = atSeq(feed, s)
        // The remote's highest seq is r.seq: anything above it is certainly missing there.
        for (const e of evs) if (!known.has(e.idHex)) (s > r.seq ? sure : maybe).push(e)
      }
    }
    sure.sort(compareEvents)
    if (sure.length + maybe.length <= limit) return sure.concat(maybe).sort(compareEvents)
    if (sure.length >= limit) return sure.slice(0, limit)
    maybe.sort(compareEvents)
    return sure.concat(maybe.slice(maybe.length - (limit - sure.length))).sort(compareEvents)
  }

  private ancestorsOf (ids: string[]): Set<string> {
    const seen = new Set<string>()
    const stack = [...ids]
    while (stack.length > 0) {
      const id = stack.pop() as string
      if (seen.has(id)) continue
      const e = this.byId.get(id)
      if (e === undefined) continue
      seen.add(id)
      if (e.fields.prev !== null) stack.push(toHex(e.fields.prev))
    }
    return seen
  }

  /** Events by id, each with up to `ancestors` of its own feed's predecessors (oldest first). */
  getWithAncestors (ids: string[], ancestors = 0, limit = 1000): SignedEvent[] {
    const out = new Map<string, SignedEvent>()
    for (const id of ids) {
      let e = this.byId.get(id)
      const chain: SignedEvent[] = []
      for (let i = 0; e !== undefined && i <= ancestors; i++) {
        chain.push(e)
        e = e.fields.prev === null ? undefined : this.byId.get(toHex(e.fields.prev))
      }
      for (const c of chain.reverse()) out.set(c.idHex, c)
      if (out.size >= limit) break
    }
    return [...out.values()].sort(compareEvents).slice(0, limit)
  }
}

function rejection (index: number, id: string | undefined, err: unknown): Rejection {
  if (err instanceof WeftError) return { index, id, code: err.code, message: err.message }
  return { index, id, code: 'ERR_BAD_ENVELOPE', message: (err as Error).message }
}
