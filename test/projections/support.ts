/**
 * A small in-memory multi-author log for projection tests: real signed events with real causal
 * structure. Every author has an identity and a set of events it has "seen" (closed under
 * causality); `append` signs the author's next event the way Replica.append does — next seq,
 * prev = its own last event, deps = the heads of every other feed it has seen (highest lamport
 * first, at most LIMITS.maxDeps), lamport = max(prev, deps) + 1 — but only from what that author
 * has seen, so partitions are just authors that have not synced.
 */
import { FoldEngine, type FoldEngineOptions } from '../../src/crdt/fold.js'
import { MergedLog } from '../../src/crdt/merged-log.js'
import { compareEvents, signEvent, type EventFields, type SignedEvent } from '../../src/log/event.js'
import { Ed25519Verifier, identityFromSeed, type NodeIdentity } from '../../src/log/identity.js'
import { toHex } from '../../src/log/bytes.js'
import { LIMITS, type BodyOf, type EventType } from '../../src/log/bodies.js'
import { networkReducer, type NetworkState } from '../../src/projections/network.js'
import { deriveRoles } from '../../src/projections/roles.js'
import { deriveRoutes } from '../../src/projections/routes.js'
import { makeSettingsChange } from '../../src/projections/settings.js'
import { cosign } from '../../src/log/auth.js'
import { NET } from '../support/fixtures.js'

export { NET }

/** Eight fixed authors (building a key is the slow part, so once per test file). */
export const IDS: readonly NodeIdentity[] = Array.from({ length: 8 }, (_, i) => identityFromSeed(new Uint8Array(32).fill(0x40 + i)))
export const verifier = new Ed25519Verifier()

export function join (hostname: string, cluster = 'default', role: BodyOf<'node.join'>['role'] = 'auto'): BodyOf<'node.join'> {
  return { hostname, cluster, os: 'linux', arch: 'amd64', version: '0.1.0', addrs: [], caps: [], role }
}

export interface AppendOptions {
  /** First learn every event appended so far by anyone. */
  seesAll?: boolean
  /** First learn everything these authors have seen. */
  sees?: readonly number[]
  time?: number
  /** Cosign the body (body.auth) with this key, bound to the event's author and seq. */
  cosigner?: NodeIdentity
}

export class LogBuilder {
  readonly ids: readonly NodeIdentity[]
  /** Every event, in the order appended. */
  readonly events: SignedEvent[] = []
  private readonly byId = new Map<string, SignedEvent>()
  /** author index → ids of the events it has seen (its own included), causally closed. */
  private readonly seen: Array<Set<string>>

  constructor (authors = 4) {
    if (authors > IDS.length) throw new Error(`at most ${IDS.length} authors`)
    this.ids = IDS.slice(0, authors)
    this.seen = this.ids.map(() => new Set())
  }

  hex (author: number): string { return (this.ids[author] as NodeIdentity).authorHex }

  /** Author `a` learns event `e` and its whole causal past. */
  learn (a: number, e: SignedEvent): void {
    const seen = this.seen[a] as Set<string>
    const stack = [e]
    while (stack.length > 0) {
      const x = stack.pop() as SignedEvent
      if (seen.has(x.idHex)) continue
      seen.add(x.idHex)
      const parents = [...(x.fields.prev === null ? [] : [x.fields.prev]), ...x.fields.deps]
      for (const p of parents) stack.push(this.byId.get(toHex(p)) as SignedEvent)
    }
  }

  /** Author `a` learns everything each of `others` has seen. */
  sync (a: number, ...others: number[]): void {
    for (const o of others) for (const id of this.seen[o] as Set<string>) this.learn(a, this.byId.get(id) as SignedEvent)
  }

  /** Everybody learns everything. */
  syncAll (): void {
    for (let a = 0; a < this.ids.length; a++) for (const e of this.events) this.learn(a, e)
  }

  /** The events author `a` has seen, in no particular order. */
  seenBy (a: number): SignedEvent[] {
    return [...(this.seen[a] as Set<string>)].map((id) => this.byId.get(id) as SignedEvent)
  }

  hasSeen (a: number, e: SignedEvent): boolean { return (this.seen[a] as Set<string>).has(e.idHex) }

  append<T extends EventType> (a: number, type: T, body: BodyOf<T>, opts: AppendOptions = {}): SignedEvent {
    if (opts.seesAll === true) for (const e of this.events) this.learn(a, e)
    if (opts.sees !== undefined) this.sync(a, ...opts.sees)
    const id = this.ids[a] as NodeIdentity
    const me = id.authorHex
    // Heads of every feed this author has seen: its own (prev) and the others (deps).
    const heads = new Map<string, SignedEvent>()
    for (const x of this.seenBy(a)) {
      const h = heads.get(x.authorHex)
      if (h === undefined || x.fields.seq > h.fields.seq) heads.set(x.authorHex, x)
    }
    const prev = heads.get(me)
    heads.delete(me)
    const deps = [...heads.values()].sort((x, y) => y.fields.lamport - x.fields.lamport).slice(0, LIMITS.maxDeps)
    const lamport = Math.max(prev?.fields.lamport ?? 0, ...deps.map((d) => d.fields.lamport)) + 1
    const seq = (prev?.fields.seq ?? 0) + 1
    if (opts.cosigner !== undefined) body = { ...body, auth: cosign({ net: NET, author: id.publicKey, seq, type, body }, opts.cosigner) }
    const ev = signEvent({
      v: 1,
      net: NET,
      author: id.publicKey,
      seq,
      prev: prev?.id ?? null,
      deps: deps.map((d) => d.id),
      lamport,
      time: opts.time ?? 1_700_000_000 + this.events.length,
      type,
      body
    } as EventFields, id)
    this.events.push(ev)
    this.byId.set(ev.idHex, ev)
    this.learn(a, ev)
    return ev
  }

  /** Fold with this owner key (undefined: an open network, as before owners existed). */
  owner?: Uint8Array

  /** The network state as author `a` sees it (its own replica). */
  stateOf (a: number): NetworkState {
    return foldNetwork(this.seenBy(a), {}, this.owner)
  }

  /**
   * A settings change made the way a node makes it: on top of the Automerge document of its own
   * replica, with its own actor id.
   */
  setting (a: number, key: string, value: unknown, opts: AppendOptions = {}): SignedEvent {
    if (opts.seesAll === true) for (const e of this.events) this.learn(a, e)
    if (opts.sees !== undefined) this.sync(a, ...opts.sees)
    const change = makeSettingsChange(this.stateOf(a).settings, this.hex(a), key, value)
    return this.append(a, 'settings.change', { change }, { time: opts.time, ...(opts.cosigner !== undefined ? { cosigner: opts.cosigner } : {}) })
  }
}

/** One fold of `events` (any order) through the network reducer. */
export function foldNetwork (events: readonly SignedEvent[], opts: FoldEngineOptions = {}, owner?: Uint8Array): NetworkState {
  const f = new FoldEngine({ network: networkReducer(owner !== undefined ? { owner } : {}) }, opts)
  f.insert(events)
  return f.states().network
}

/** Events in the log's total order. */
export function ordered (events: readonly SignedEvent[]): SignedEvent[] {
  return [...events].sort(compareEvents)
}

export function newMergedLog (): MergedLog {
  return new MergedLog({ net: NET, verifier })
}

/**
 * A JSON-able summary of everything the projections in this suite decide, in a deterministic
 * order: what replicas must agree on.
 */
export function derivedView (s: NetworkState): unknown {
  const settings = s.settings.values
  return {
    settings: { values: settings, origin: s.settings.origin, problems: s.settings.problems },
    members: [...s.members.active.values()].sort((a, b) => (a.author < b.author ? -1 : 1)),
    departed: [...s.members.departed.values()].sort((a, b) => (a.author < b.author ? -1 : 1)),
    roles: deriveRoles(s.roles, s.members, settings),
    leases: [...s.ipam.leases.values()].sort((a, b) => (a.addr < b.addr ? -1 : 1)),
    claims: [...s.ipam.claims.entries()].sort(([a], [b]) => (a < b ? -1 : 1)),
    routes: deriveRoutes(s.routes, s.ipam, settings)
  }
}

export function viewJson (s: NetworkState): string {
  return JSON.stringify(derivedView(s), (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))
}

export { rng, shuffle } from '../support/random.js'
