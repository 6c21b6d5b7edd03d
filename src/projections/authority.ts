import type { SignedEvent } from '../log/event.js'
import { toHex } from '../log/bytes.js'
import { Followers, type Locate } from './followers.js'
import { cidrContains, cidrSize, parseCidr } from './ip.js'
import { comparePositions, positionOf, type Position } from './position.js'

/**
 * Who may change the network for others. The token commits to the owner's key; the owner may
 * make members delegates (`admin.grant`) and take that back (`admin.ungrant`). An event that
 * changes the network for others (settings, evicting or revoking a member, rotating the
 * transport key, routes outside the policy, granting) needs authority: a cosignature in
 * `body.auth` by the owner or a delegate, or a delegate as its author.
 *
 * Delegation is judged in the event's causal past, never by arrival or fold order: a member is a
 * delegate at its event when that event follows an owner-signed grant of it and the latest such
 * grant or ungrant it follows (by log order) is a grant. An ungrant concurrent with a delegate's
 * event therefore does not undo it, on any replica.
 *
 * A network without an owner (a legacy `weft1` token) keeps the first behaviour: every member
 * may do everything (docs/trust.md says why that is unsafe).
 */
export type Authority = 'owner' | 'delegate' | 'open'

export interface RefusedEvent {
  readonly id: string
  readonly author: string
  readonly type: string
  readonly code: 'ERR_UNAUTHORISED'
  readonly reason: string
  readonly at: Position
}

export interface Revocation { readonly author: string, readonly by: string, readonly reason: string, readonly at: Position }

export interface SealedKey { readonly to: string, readonly box: Uint8Array }
export interface Rotation { readonly epoch: number, readonly ephemeral: Uint8Array, readonly sealed: readonly SealedKey[], readonly at: Position }

interface GrantMark { readonly id: string, readonly grant: boolean, readonly at: Position }

export interface AuthorityState {
  /** Owner key (hex) from the token; undefined: an open (legacy) network. */
  readonly owner?: string
  /** delegate author hex → its grants and ungrants (owner-authorised ones only). */
  marks: Map<string, GrantMark[]>
  /** Grants and ungrants, watched until forever (there are few of them). */
  followers: Followers
  revoked: Map<string, Revocation>
  /** epoch → rotation (the first authorised one of an epoch wins). */
  rotations: Map<number, Rotation>
  /** The latest refused events (bounded), and how many there were in all. */
  refused: RefusedEvent[]
  refusedTotal: number
}

export const MAX_REFUSED = 64

export function initialAuthority (owner?: Uint8Array): AuthorityState {
  return {
    ...(owner !== undefined ? { owner: toHex(owner) } : {}),
    marks: new Map(),
    followers: new Followers(),
    revoked: new Map(),
    rotations: new Map(),
    refused: [],
    refusedTotal: 0
  }
}

export function cloneAuthority (s: AuthorityState): AuthorityState {
  const marks = new Map<string, GrantMark[]>()
  for (const [k, v] of s.marks) marks.set(k, [...v])
  return {
    ...(s.owner !== undefined ? { owner: s.owner } : {}),
    marks,
    followers: s.followers.clone(),
    revoked: new Map(s.revoked),
    rotations: new Map(s.rotations),
    refused: s.refused,
    refusedTotal: s.refusedTotal
  }
}

/** Ranges any member may route through itself without authority (first advertisement wins). */
export const DEFAULT_ROUTE_POLICY: readonly string[] = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', 'fc00::/7']
const POLICY = DEFAULT_ROUTE_POLICY.map((c) => parseCidr(c))

export function routeAllowed (cidr: string): boolean {
  let c
  try { c = parseCidr(cidr) } catch { return true } // not a network: the routes projection reports it
  const last = c.base + cidrSize(c) - 1n
  return POLICY.some((p) => cidrContains(p, c.family, c.base) && cidrContains(p, c.family, last))
}

/** What an event needs: 'owner' (the owner's own cosignature), 'admin' (owner or delegate), or nothing. */
export function requiredAuthority (e: Pick<SignedEvent['fields'], 'type' | 'body'> | SignedEvent): 'owner' | 'admin' | undefined {
  const f = 'fields' in e ? e.fields : e
  switch (f.type) {
    case 'settings.change':
    case 'node.evict':
    case 'node.revoke':
    case 'network.rotate':
      return 'admin'
    case 'admin.grant':
    case 'admin.ungrant':
      return 'owner'
    case 'route.advertise':
      return routeAllowed((f.body as { cidr: string }).cidr) ? undefined : 'admin'
    default:
      return undefined
  }
}

/**
 * Is `subject` a delegate as seen by `observer`'s event at `seq`? Only grants and ungrants the
 * observer's feed follows at that seq count; the latest of them in log order decides.
 */
function isDelegateAt (s: AuthorityState, subject: string, observer: string, seq: number): boolean {
  if (s.revoked.has(subject)) return false
  const marks = s.marks.get(subject)
  if (marks === undefined) return false
  let latest: GrantMark | undefined
  for (const m of marks) {
    const first = s.followers.get(m.id)?.get(observer)
    if (first === undefined || first > seq) continue
    if (latest === undefined || comparePositions(m.at, latest.at) > 0) latest = m
  }
  return latest?.grant === true
}

/** The authority an event carries, judged in its causal past; undefined when it has none. */
export function authorityOf (s: AuthorityState, e: SignedEvent): Authority | undefined {
  if (s.owner === undefined) return 'open'
  const author = e.authorHex
  const auth = (e.fields.body as { auth?: { by: Uint8Array } }).auth
  if (auth !== undefined) {
    // The cosignature itself was verified on entry to the log (openEnvelope).
    const by = toHex(auth.by)
    if (by === s.owner) return 'owner'
    if (isDelegateAt(s, by, author, e.fields.seq)) return 'delegate'
  }
  if (isDelegateAt(s, author, author, e.fields.seq)) return 'delegate'
  return undefined
}

/**
 * Causality bookkeeping for one event; call for every folded event, authorised or not, before
 * judging it (its own deps may bring a grant into its past).
 */
export function observeAuthority (s: AuthorityState, e: SignedEvent, locate: Locate): void {
  s.followers.observe(e, locate)
}

export function refuse (s: AuthorityState, e: SignedEvent, reason: string): void {
  const entry: RefusedEvent = { id: e.idHex, author: e.authorHex, type: e.fields.type, code: 'ERR_UNAUTHORISED', reason, at: positionOf(e) }
  s.refused = s.refused.length >= MAX_REFUSED ? [...s.refused.slice(s.refused.length - MAX_REFUSED + 1), entry] : [...s.refused, entry]
  s.refusedTotal++
}

/** Apply an authorised administrative event's own bookkeeping (grants, revocations, rotations). */
export function applyAuthority (s: AuthorityState, e: SignedEvent): void {
  const f = e.fields
  const at = positionOf(e)
  switch (f.type) {
    case 'admin.grant':
    case 'admin.ungrant': {
      const subject = toHex(f.body.peer)
      const list = s.marks.get(subject) ?? []
      s.marks.set(subject, [...list, { id: e.idHex, grant: f.type === 'admin.grant', at }])
      s.followers.watch(e)
      break
    }
    case 'node.revoke': {
      const target = toHex(f.body.peer)
      if (target === s.owner || s.revoked.has(target)) break
      s.revoked.set(target, { author: target, by: e.authorHex, reason: f.body.reason, at })
      break
    }
    case 'network.rotate': {
      if (s.rotations.has(f.body.epoch)) break
      s.rotations.set(f.body.epoch, {
        epoch: f.body.epoch,
        ephemeral: f.body.ephemeral,
        sealed: f.body.sealed.map((x) => ({ to: toHex(x.to), box: x.box })),
        at
      })
      break
    }
    default:
      break
  }
}

/** The delegates in force at the end of the log (for status and the CLI), owner-granted and not revoked. */
export function currentDelegates (s: AuthorityState): string[] {
  const out: string[] = []
  for (const [subject, marks] of s.marks) {
    if (s.revoked.has(subject)) continue
    const latest = [...marks].sort((a, b) => comparePositions(a.at, b.at)).pop()
    if (latest?.grant === true) out.push(subject)
  }
  return out.sort()
}

/** The newest rotation epoch in the log (0 when none). */
export function latestEpoch (s: AuthorityState): number {
  let max = 0
  for (const k of s.rotations.keys()) if (k > max) max = k
  return max
}
