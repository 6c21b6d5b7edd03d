import type { SignedEvent } from '../log/event.js'
import { toHex } from '../log/bytes.js'
import type { Member, MembersState } from './members.js'
import type { Settings } from './settings.js'
import { comparePositions, positionOf, type Position } from './position.js'
import { Followers } from './followers.js'

/**
 * k3s bootstrap roles, per cluster. One member runs `k3s server --cluster-init` (the init
 * master), up to `serverCount - 1` more join as servers, the rest as agents; members that asked
 * for `client` take no k3s role.
 *
 * Two layers (docs/projections.md "roles"):
 * - the **tentative** decision: a rule over the log's total order (the first forced claim, else
 *   the earliest-joined eligible member once `minNodes` have joined). Every node acknowledges
 *   the decision its replica shows with a `role.ack` naming that master: its vote.
 * - the **stable** decision: a master voted for by a majority of its *electorate* (its voters and
 *   every member one of those votes had seen join). Votes are fixed facts of the log (a member's
 *   latest ack), and an event that none of the voters had seen cannot enter the electorate, so
 *   nothing concurrent with a stable decision (an earlier-sorting join, a forced claim, a whole
 *   group of new nodes that never ack) can make it tentative or change its master. Once stable,
 *   only an authorised master claim that follows it, or `dynamicRoles` after the master is gone,
 *   replaces it. Two stable decisions exist at once only when their voters never saw each other
 *   (two partitions that grew apart): the one with more votes wins, then the one voted for first.
 */
export type K3sRole = 'init' | 'server' | 'agent' | 'none'

export interface MasterDecision {
  readonly author: string
  readonly how: 'forced' | 'auto' | 'handover'
  /** The event at which this master was first chosen (by the rule, or by a vote). */
  readonly decidedAt: Position
  /** The event at which this fold found it stable; absent while tentative. */
  readonly stableAt?: Position
}

/** A member's latest acknowledgement: the master its replica showed when it wrote it. */
export interface Vote { readonly master: string, readonly at: Position }

export interface ClusterRolesState {
  master?: MasterDecision
  masterGone: boolean
  /** author → position of the event that made it ask for `master`. */
  forcedAt: Map<string, Position>
  /** member → its latest `role.ack` for this cluster (members only; dropped when it leaves). */
  votes: Map<string, Vote>
  /** An authorised master claim that followed the stable decision: it replaces it. */
  override?: { readonly author: string, readonly at: Position }
}

export interface RolesState {
  clusters: Map<string, ClusterRolesState>
  /**
   * The joins of active members, watched for as long as the member stays: "had this voter seen
   * that member join when it voted?" decides who is in a decision's electorate.
   */
  followers: Followers
  /** author → its watched join (to end the watch when it leaves or moves). */
  joins: Map<string, string>
  /**
   * author → highest seq of its feed folded so far. A parent is in the view only if its seq is
   * at most this: events of an author frozen by a fork leave the view, and causality must not
   * be traced through them (a replica that never folded them could not trace it).
   */
  folded: Map<string, number>
}

export function initialRoles (): RolesState {
  return { clusters: new Map(), followers: new Followers(), joins: new Map(), folded: new Map() }
}

export function cloneRoles (s: RolesState): RolesState {
  const clusters = new Map<string, ClusterRolesState>()
  for (const [k, c] of s.clusters) clusters.set(k, { ...c, forcedAt: new Map(c.forcedAt), votes: new Map(c.votes) })
  return { clusters, followers: s.followers.clone(), joins: new Map(s.joins), folded: new Map(s.folded) }
}

function clusterOf (s: RolesState, name: string): ClusterRolesState {
  let c = s.clusters.get(name)
  if (c === undefined) {
    c = { masterGone: false, forcedAt: new Map(), votes: new Map() }
    s.clusters.set(name, c)
  }
  return c
}

export function clusterMembers (members: MembersState, cluster: string): Member[] {
  return [...members.active.values()].filter((m) => m.cluster === cluster)
    .sort((a, b) => a.joinedLamport - b.joinedLamport || (a.author < b.author ? -1 : 1))
}

const eligible = (m: Member): boolean => m.role !== 'worker' && m.role !== 'client'

/**
 * Called after members and settings have applied `e`. `touched` names the clusters whose
 * decision `e` may change (a join, claim, leave or eviction there, or a roles setting).
 * `authorised`: `e` carries owner or delegate authority (see docs/projections.md "roles"): only
 * then may a master claim replace a stable decision.
 */
export function applyRoles (s: RolesState, e: SignedEvent, members: MembersState, settings: Settings, touched: ReadonlySet<string>, _followersChanged = true, authorised = false): void {
  const f = e.fields
  const me = e.authorHex
  const todo = new Set(touched)
  if (f.type === 'node.join' || f.type === 'role.claim') {
    const m = members.active.get(me)
    if (m !== undefined) {
      const c = clusterOf(s, m.cluster)
      if (m.role === 'master') {
        if (!c.forcedAt.has(me)) c.forcedAt.set(me, positionOf(e))
      } else {
        c.forcedAt.delete(me)
      }
      if (f.type === 'node.join' && m.joinId === e.idHex && s.joins.get(me) !== e.idHex) {
        // A new membership (first join, rejoin, or a move): earlier votes were for another life.
        forget(s, me)
        s.joins.set(me, e.idHex)
        s.followers.watch(e)
      }
      if (f.type === 'role.claim' && f.body.role === 'master' && authorised && m.cluster === f.body.cluster) {
        // It replaces the stable decision only if it follows it: its author acknowledged that
        // master before claiming (a feed is a chain, so the claim follows the ack).
        const cur = c.master
        if (cur?.stableAt !== undefined && cur.author !== me && c.votes.get(me)?.master === cur.author) c.override = { author: me, at: positionOf(e) }
      }
    }
  } else if (f.type === 'role.ack') {
    const m = members.active.get(me)
    if (m !== undefined && m.cluster === f.body.cluster) {
      clusterOf(s, m.cluster).votes.set(me, { master: toHex(f.body.master), at: positionOf(e) })
      todo.add(m.cluster)
    }
  }
  if (f.type === 'node.leave' || f.type === 'node.evict') {
    for (const a of [...s.joins.keys()]) if (!members.active.has(a)) forget(s, a)
  }
  for (const name of todo) resolve(s, clusterOf(s, name), name, e, members, settings)
}

/** End the watch of `author`'s join and drop its votes (it left, or starts a new membership). */
function forget (s: RolesState, author: string): void {
  const j = s.joins.get(author)
  if (j !== undefined) s.followers.delete(j)
  s.joins.delete(author)
  for (const c of s.clusters.values()) c.votes.delete(author)
}

interface Candidate {
  readonly master: string
  readonly voters: readonly string[]
  /** Its voters plus every member one of their votes had seen join. */
  readonly electorate: number
  /** The earliest of its current votes. */
  readonly first: Position
  readonly stable: boolean
}

/**
 * Every master some current member votes for, best first: more votes, then the earliest vote.
 * Only votes of current members count. The electorate of a master is its voters and every
 * member whose join one of those votes causally follows: a member that none of them had seen
 * when voting (it joined concurrently, or later) counts only once it votes itself, so members
 * who never saw the decision cannot make it tentative. Members that are offline count like any
 * other (presence is not in the log): that is what keeps a partition from deciding. A master is
 * stable when more than half of its electorate votes for it.
 */
export function tallyVotes (s: RolesState, c: ClusterRolesState, ms: readonly Member[]): Candidate[] {
  const byMaster = new Map<string, string[]>()
  for (const m of ms) {
    const v = c.votes.get(m.author)
    if (v === undefined) continue
    const list = byMaster.get(v.master)
    if (list === undefined) byMaster.set(v.master, [m.author])
    else list.push(m.author)
  }
  const out: Candidate[] = []
  for (const [master, voters] of byMaster) {
    let electorate = voters.length
    const voting = new Set(voters)
    for (const m of ms) {
      if (voting.has(m.author)) continue
      const seen = s.followers.get(m.joinId)
      if (seen !== undefined && voters.some((v) => (seen.get(v) ?? Infinity) <= (c.votes.get(v) as Vote).at.seq)) electorate++
    }
    const first = voters.map((v) => (c.votes.get(v) as Vote).at).sort(comparePositions)[0] as Position
    out.push({ master, voters, electorate, first, stable: voters.length * 2 > electorate })
  }
  return out.sort((a, b) => b.voters.length - a.voters.length || comparePositions(a.first, b.first))
}

function resolve (s: RolesState, c: ClusterRolesState, name: string, e: SignedEvent, members: MembersState, settings: Settings): void {
  const ms = clusterMembers(members, name)
  const present = new Set(ms.map((m) => m.author))
  for (const a of [...c.forcedAt.keys()]) if (!present.has(a)) c.forcedAt.delete(a)
  if (c.override !== undefined && !present.has(c.override.author)) c.override = undefined
  const tally = tallyVotes(s, c, ms)
  const ranked = tally.filter((x) => x.stable)

  if (c.override !== undefined) {
    const o = c.override.author
    c.masterGone = false
    set(c, o, 'forced', e, ranked.some((x) => x.master === o))
    return
  }
  let top = ranked[0]
  if (top !== undefined && !present.has(top.master)) {
    // The stable master left or was evicted, and its voters still stand by it.
    if (!settings.dynamicRoles) {
      c.masterGone = true
      set(c, top.master, c.master?.author === top.master ? c.master.how : 'auto', e, true)
      return
    }
    top = ranked.find((x) => present.has(x.master))
    if (top === undefined) {
      // dynamicRoles: the first server takes over (a tentative decision, stable once voted for).
      const next = c.master !== undefined && present.has(c.master.author) && c.master.how === 'handover' ? c.master.author : serversFor(ms, undefined, c, settings.serverCount)[0]
      c.masterGone = next === undefined
      if (next === undefined) return
      set(c, next, 'handover', e, false)
      return
    }
  }
  c.masterGone = false
  if (top !== undefined) {
    const how = c.master?.author === top.master ? c.master.how : c.forcedAt.has(top.master) ? 'forced' : 'auto'
    set(c, top.master, how, e, true)
    return
  }
  // Tentative. Once members have voted, the master most of them voted for is shown (so the
  // others' agents join that vote instead of splitting it); before any vote, the rule.
  const lead = tally.find((x) => present.has(x.master))
  if (lead !== undefined) {
    set(c, lead.master, c.master?.author === lead.master ? c.master.how : c.forcedAt.has(lead.master) ? 'forced' : 'auto', e, false)
    return
  }
  decideTentative(c, ms, present, e, settings)
}

/** Set the decision; a new master is decided at `e`, the same one keeps its position. */
function set (c: ClusterRolesState, author: string, how: MasterDecision['how'], e: SignedEvent, stable: boolean): void {
  const cur = c.master?.author === author ? c.master : undefined
  const decidedAt = cur?.decidedAt ?? positionOf(e)
  const stableAt = stable ? (cur?.stableAt ?? positionOf(e)) : undefined
  c.master = stableAt === undefined ? { author, how, decidedAt } : { author, how, decidedAt, stableAt }
}

/** No stable decision: the rule over the total order, which every replica's agent then votes for. */
function decideTentative (c: ClusterRolesState, ms: Member[], present: Set<string>, e: SignedEvent, settings: Settings): void {
  const forced = [...c.forcedAt].sort(([, a], [, b]) => comparePositions(a, b))[0]
  if (forced !== undefined) { set(c, forced[0], 'forced', e, false); return }
  const cur = c.master
  if (cur !== undefined && present.has(cur.author) && cur.how !== 'forced') {
    // Later joiners never displace a chosen master, and neither does its own later request to
    // be a worker or client (requests count for decisions still to be made).
    set(c, cur.author, cur.how, e, false)
    return
  }
  const first = ms.filter((m) => m.role !== 'client').length >= settings.minNodes ? ms.find(eligible) : undefined
  if (first === undefined) { c.master = undefined; return }
  set(c, first.author, 'auto', e, false)
}

/**
 * Init master first, then forced masters that lost, then eligible members by join order. Once
 * the decision is stable, the members that voted for it come first (in that same order): a
 * member that never saw the decision (a late, earlier-sorting join) cannot take the server slot
 * of one that acted on it.
 */
function serversFor (ms: Member[], master: string | undefined, c: ClusterRolesState, serverCount: number, voters?: ReadonlySet<string>): string[] {
  const out: string[] = master === undefined ? [] : [master]
  const forced = [...c.forcedAt].sort(([, a], [, b]) => comparePositions(a, b)).map(([a]) => a)
  const groups = voters === undefined ? [() => true] : [(a: string) => voters.has(a), (a: string) => !voters.has(a)]
  for (const inGroup of groups) {
    for (const a of forced) if (inGroup(a) && !out.includes(a)) out.push(a)
    for (const m of ms) if (inGroup(m.author) && eligible(m) && !out.includes(m.author)) out.push(m.author)
  }
  return out.slice(0, serverCount)
}

export interface MemberRole { author: string, hostname: string, role: K3sRole, stable: boolean }

export interface ClusterRolesView {
  cluster: string
  status: 'waiting' | 'tentative' | 'stable' | 'master-gone'
  master?: MasterDecision
  /** Members whose latest acknowledgement names the master, and how many votes it needs to be stable. */
  votes?: { for: number, electorate: number }
  /** Forced masters that lost to an earlier claim or to a stable decision. */
  conflicts: Array<{ author: string, reason: string }>
  members: MemberRole[]
  reason?: string
}

export function deriveRoles (s: RolesState, members: MembersState, settings: Settings): ClusterRolesView[] {
  const clusters = new Set<string>([...s.clusters.keys()])
  for (const m of members.active.values()) clusters.add(m.cluster)
  const out: ClusterRolesView[] = []
  for (const name of [...clusters].sort()) {
    const c: ClusterRolesState = s.clusters.get(name) ?? { masterGone: false, forcedAt: new Map(), votes: new Map() }
    const ms = clusterMembers(members, name)
    if (ms.length === 0 && c.master === undefined) continue
    const master = c.master !== undefined && !c.masterGone && (ms.some((m) => m.author === c.master?.author)) ? c.master : undefined
    // Master gone (dynamicRoles off): nothing flips. Nobody is init, and everyone else keeps the
    // role it had under the gone master (its server slot stays counted), so no agent stops
    // and no server is promoted behind the operator's back.
    const gone = c.masterGone ? c.master : undefined
    const decision = master ?? gone
    const stable = decision?.stableAt !== undefined
    const voters = new Set(ms.filter((m) => decision !== undefined && c.votes.get(m.author)?.master === decision.author).map((m) => m.author))
    const servers = new Set(decision === undefined ? [] : serversFor(ms, decision.author, c, settings.serverCount, stable ? voters : undefined))
    const conflicts = [...c.forcedAt].filter(([a]) => a !== master?.author)
      .sort(([, x], [, y]) => comparePositions(x, y))
      .map(([a]) => ({ author: a, reason: `also claims master; ${master?.author.slice(0, 12) ?? 'another node'} ${stable ? 'is the stable decision' : 'claimed first'}` }))
    const view: ClusterRolesView = {
      cluster: name,
      status: c.masterGone ? 'master-gone' : master === undefined ? 'waiting' : stable ? 'stable' : 'tentative',
      master,
      conflicts,
      members: ms.map((m) => ({
        author: m.author,
        hostname: m.hostname,
        // The master is init whatever it asked for since it was chosen (see decideTentative).
        role: m.author === master?.author ? 'init' : m.role === 'client' || decision === undefined ? 'none' : servers.has(m.author) ? 'server' : 'agent',
        // A member's own role is stable once the decision is and it has acknowledged it.
        stable: stable && voters.has(m.author)
      }))
    }
    if (decision !== undefined) {
      const cand = tallyVotes(s, c, ms).find((x) => x.master === decision.author)
      view.votes = { for: voters.size, electorate: cand?.electorate ?? ms.length }
    }
    if (master === undefined && !c.masterGone) {
      const n = ms.filter((m) => m.role !== 'client').length
      view.reason = n < settings.minNodes ? `waiting for ${settings.minNodes - n} more node(s) (minNodes=${settings.minNodes})` : 'no member may be master (all are workers or clients)'
    }
    if (c.masterGone) view.reason = settings.dynamicRoles ? 'the master left and no server can take over' : 'the init master left; dynamicRoles is off, so nothing flips (evict it and set dynamicRoles, or re-add it)'
    out.push(view)
  }
  return out
}
