/**
 * Shared helpers for the crdt unit tests and the property suites: deterministic identities,
 * hand-built events (any prev/deps/lamport, so causal rules can be broken on purpose), an
 * append that mirrors Replica.append over a bare MergedLog, fresh folds and a canonical JSON
 * form of folded states for deep comparison.
 */
import { MergedLog, type IngestResult, type MergedLogOptions } from '../../src/crdt/merged-log.js'
import { FoldEngine, type Reducer } from '../../src/crdt/fold.js'
import { encodeFrontier } from '../../src/crdt/frontier.js'
import { signEvent, type EventFields, type SignedEvent, type Signer } from '../../src/log/event.js'
import { Ed25519Verifier, type NodeIdentity } from '../../src/log/identity.js'
import { fromHex, toHex } from '../../src/log/bytes.js'
import { LIMITS, type BodyOf, type EventType } from '../../src/log/bodies.js'
import { WeftError } from '../../src/log/errors.js'
import { members } from '../../src/projections/members.js'
import { NET, identity, joinBody } from '../support/fixtures.js'

export { NET, identity, joinBody }

export const verifier = new Ed25519Verifier()

/** Eight fixed authors, built once (key derivation is the slow part of identityFromSeed). */
export const IDS: readonly NodeIdentity[] = Array.from({ length: 8 }, (_, i) => identity(i))

export function newLog (opts: Partial<MergedLogOptions> = {}): MergedLog {
  return new MergedLog({ net: NET, verifier, ...opts })
}

export interface MkOptions<T extends EventType = EventType> {
  seq?: number
  prev?: SignedEvent | null
  deps?: readonly SignedEvent[]
  /** Defaults to the lamport rule: max(prev, deps) + 1. */
  lamport?: number
  type?: T
  body?: BodyOf<T>
  time?: number
  net?: Uint8Array
}

/** Sign an event with explicit causal fields (nothing is checked against a log). */
export function mk<T extends EventType = 'ip.claim'> (signer: Signer, o: MkOptions<T> = {}): SignedEvent {
  const prev = o.prev ?? null
  const deps = o.deps ?? []
  const seq = o.seq ?? (prev === null ? 1 : prev.fields.seq + 1)
  const lamport = o.lamport ?? Math.max(prev?.fields.lamport ?? 0, ...deps.map((d) => d.fields.lamport)) + 1
  const type = o.type ?? 'ip.claim'
  const body = o.body ?? { addr: `10.0.${seq % 256}.${lamport % 256}` }
  return signEvent({
    v: 1,
    net: o.net ?? NET,
    author: signer.publicKey,
    seq,
    prev: prev === null ? null : prev.id,
    deps: deps.map((d) => d.id),
    lamport,
    time: o.time ?? 1_700_000_000 + seq,
    type,
    body
  } as EventFields, signer)
}

/** A linear feed of `n` events by one author with no deps. */
export function chain (signer: Signer, n: number, from: SignedEvent | null = null, tag = ''): SignedEvent[] {
  const out: SignedEvent[] = []
  let prev = from
  for (let i = 0; i < n; i++) {
    const seq = prev === null ? 1 : prev.fields.seq + 1
    prev = mk(signer, { prev, body: { addr: `10.${tag.length % 200}.${Math.floor(seq / 256) % 256}.${seq % 256}` }, time: 1_700_000_000 + seq + tag.length * 1000 })
    out.push(prev)
  }
  return out
}

/**
 * What Replica.append signs, over a bare MergedLog: next seq of the own feed, deps = the heads
 * (and fork heads) of every other feed, highest lamport first, at most LIMITS.maxDeps.
 * Refuses when the own feed is frozen, as Replica.append does.
 */
export function nextEvent<T extends EventType> (log: MergedLog, signer: Signer, type: T, body: BodyOf<T>, time = 1_700_000_000, opts: { lamportDelta?: number, net?: Uint8Array } = {}): SignedEvent {
  const me = toHex(signer.publicKey)
  if (log.freezeSeq(me) !== undefined) throw new WeftError('ERR_AUTHOR_FROZEN', 'own feed is forked')
  const seq = log.maxSeqOf(me) + 1
  const prevEv = seq > 1 ? log.eventsOf(me, seq - 1)[0] : undefined
  const heads: SignedEvent[] = []
  for (const [author, entry] of log.frontier()) {
    if (author === me) continue
    for (const id of [entry.head, ...entry.forks]) heads.push(log.get(id) as SignedEvent)
  }
  heads.sort((a, b) => b.fields.lamport - a.fields.lamport)
  const deps = heads.slice(0, LIMITS.maxDeps)
  const lamport = Math.max(prevEv?.fields.lamport ?? 0, ...deps.map((d) => d.fields.lamport)) + 1 + (opts.lamportDelta ?? 0)
  return signEvent({
    v: 1,
    net: opts.net ?? log.net,
    author: signer.publicKey,
    seq,
    prev: prevEv?.id ?? null,
    deps: deps.map((d) => fromHex(d.idHex)),
    lamport,
    time,
    type,
    body
  } as EventFields, signer)
}

/** A reducer that records the exact order (and ctx.index) it was fed: any misordering shows. */
export interface TraceState { seen: string[] }
export const trace: Reducer<TraceState> = {
  initial: () => ({ seen: [] }),
  clone: (s) => ({ seen: [...s.seen] }),
  apply (s, e, ctx) { s.seen.push(`${ctx.index}:${e.idHex.slice(0, 16)}`) }
}

export const foldReducers = { members, trace }

/** A fresh fold of the log's visible events, from nothing. */
export function freshFold (log: MergedLog): ReturnType<FoldEngine<typeof foldReducers>['states']> {
  const f = new FoldEngine(foldReducers)
  f.insert([...log.events()].filter((e) => log.isVisible(e)))
  return f.states()
}

/** Canonical JSON of any state: maps and sets sorted, bytes as hex. */
export function stateJson (value: unknown): string {
  return JSON.stringify(normalize(value))
}

function normalize (v: unknown): unknown {
  if (v instanceof Uint8Array) return `bytes:${toHex(v)}`
  if (v instanceof Map) {
    return { $map: [...v.entries()].map(([k, x]) => [normalize(k), normalize(x)]).sort((a, b) => (JSON.stringify(a[0]) < JSON.stringify(b[0]) ? -1 : 1)) }
  }
  if (v instanceof Set) return { $set: [...v].map(normalize).map((x) => JSON.stringify(x)).sort() }
  if (Array.isArray(v)) return v.map(normalize)
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k]
      if (x !== undefined) out[k] = normalize(x)
    }
    return out
  }
  return v
}

export const idSet = (log: MergedLog): string[] => [...log.events()].map((e) => e.idHex).sort()
export const frontierHex = (log: MergedLog): string => toHex(encodeFrontier(log.frontier()))
export const envelopes = (evs: readonly SignedEvent[]): Uint8Array[] => evs.map((e) => e.envelope)

export { rng, shuffle } from '../support/random.js'

/** Newly accepted or newly parked: either way the exchange moved forward. */
const progress = (r: IngestResult): number => r.added.length + r.parked

/**
 * Anti-entropy between two logs until neither learns anything: each side sends what the other's
 * frontier lacks (in batches of `limit`), then answers the other's wantedParents with
 * getWithAncestors. Returns the number of rounds; throws if it does not settle.
 */
export function syncPair (a: MergedLog, b: MergedLog, opts: { limit?: number, ancestors?: number, maxRounds?: number } = {}): number {
  const limit = opts.limit ?? Number.POSITIVE_INFINITY
  const ancestors = opts.ancestors ?? 16
  const maxRounds = opts.maxRounds ?? 200
  for (let round = 1; round <= maxRounds; round++) {
    let changed = 0
    for (const [from, to] of [[a, b], [b, a]] as const) {
      const batch = from.missingFor(to.frontier(), limit)
      if (batch.length > 0) changed += progress(to.ingest(envelopes(batch)))
      const want = to.wantedParents()
      if (want.length > 0) changed += progress(to.ingest(envelopes(from.getWithAncestors(want, ancestors))))
    }
    if (changed === 0) return round
  }
  throw new Error(`syncPair did not settle in ${maxRounds} rounds`)
}
