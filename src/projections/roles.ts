import type { SignedEvent } from '../log/event.js'
import type { Member, MembersState } from './members.js'
import type { Settings } from './settings.js'
import { comparePositions, positionOf, type Position } from './position.js'
import { Followers, countFollowing } from './followers.js'

/**
 * k3s bootstrap roles, per cluster. One member runs `k3s server --cluster-init` (the init
 * master), up to `serverCount - 1` more join as servers, the rest as agents; members that asked
 * for `client` take no k3s role.
 *
 * A decision is made at an event (the deciding event). It is stable while a majority of the
 * cluster's current members have an event that is or causally follows it (re-evaluated at every
 * step, so a member that joined concurrently makes it tentative again), tentative otherwise.
 * Only a tentative decision changes; a stable one is kept (only `dynamicRoles` hands over when
 * the master leaves or is evicted).
 */
export type K3sRole = 'init' | 'server' | 'agent' | 'none'

export interface MasterDecision {
  readonly author: string
  readonly how: 'forced' | 'auto' | 'handover'
  /** The event at which this decision was made. */
  readonly decidedAt: Position
  readonly stableAt?: Position
  /**
   * The first time it was stable. It may have been acted on since (k3s cluster-init), so when a
   * concurrent member makes it tentative again, only a node that never saw it can take it over.
   */
  readonly wasStable?: Position
}

export interface ClusterRolesState {
  master?: MasterDecision
  masterGone: boolean
  /** author → position of the event that made it ask for `master`. */
  forcedAt: Map<string, Position>
}

export interface RolesState {
  clusters: Map<string, ClusterRolesState>
  /** Deciding events and joins being watched until a majority follows them. */
  followers: Followers
  /** Joins followed by a majority of their cluster. */
  stableJoins: Set<string>
  /**
   * author → highest seq of its feed folded so far. A parent is in the view only if its seq is
   * at most this: events of an author frozen by a fork leave the view, and causality must not
   * be traced through them (a replica that never folded them could not trace it).
   */
  folded: Map<string, number>
}

export function initialRoles (): RolesState {
  return { clusters: new Map(), followers: new Followers(), stableJoins: new Set(), folded: new Map() }
}

export function cloneRoles (s: RolesState): RolesState {
  const clusters = new Map<string, ClusterRolesState>()
  for (const [k, c] of s.clusters) clusters.set(k, { ...c, forcedAt: new Map(c.forcedAt) })
  return { clusters, followers: s.followers.clone(), stableJoins: new Set(s.stableJoins), folded: new Map(s.folded) }
}

function clusterOf (s: RolesState, name: string): ClusterRolesState {
  let c = s.clusters.get(name)
  if (c === undefined) {
    c = { masterGone: false, forcedAt: new Map() }
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
 */
export function applyRoles (s: RolesState, e: SignedEvent, members: MembersState, settings: Settings, touched: ReadonlySet<string>, followersChanged = true): void {
  // Stability only moves when a watched event gains a follower or membership changes: settling
  // on every other event made a 100,000-event refold take over a minute.
  let dirty = followersChanged || touched.size > 0
  const f = e.fields
  if (f.type === 'node.join' || f.type === 'role.claim') {
    const m = members.active.get(e.authorHex)
    if (m !== undefined) {
      const c = clusterOf(s, m.cluster)
      if (m.role === 'master') {
        if (!c.forcedAt.has(e.authorHex)) c.forcedAt.set(e.authorHex, positionOf(e))
      } else {
        c.forcedAt.delete(e.authorHex)
      }
      if (f.type === 'node.join' && !s.stableJoins.has(m.joinId) && m.joinId === e.idHex) { s.followers.watch(e); dirty = true }
    }
  }
  // Settle first so a decision that a new concurrent member just made tentative can be
  // reconsidered by this very event, then again to promote what this event decided.
  if (!dirty) return
  settle(s, e, members)
  for (const name of touched) decide(s, clusterOf(s, name), name, e, members, settings)
  settle(s, e, members)
}

function decide (s: RolesState, c: ClusterRolesState, name: string, e: SignedEvent, members: MembersState, settings: Settings): void {
  const ms = clusterMembers(members, name)
  const present = new Set(ms.map((m) => m.author))
  for (const a of [...c.forcedAt.keys()]) if (!present.has(a)) c.forcedAt.delete(a)

  const cur = c.master
  if (cur !== undefined && (cur.stableAt ?? cur.wasStable) !== undefined) {
    if (present.has(cur.author)) {
      c.masterGone = false // it came back (a rejoin after a leave or an eviction)
      if (cur.stableAt !== undefined) return
      // Stable once, tentative again (a member joined that never saw it): it changes only to a
      // forced master that has not seen it either, never for what a node that saw it does
      // (its own request to be a worker, or a withdrawn claim).
      const seen = s.followers.get(cur.decidedAt.id)
      const unseen = [...c.forcedAt].filter(([a]) => a !== cur.author && seen?.has(a) !== true)
        .sort(([, a], [, b]) => comparePositions(a, b))[0]
      if (unseen !== undefined) {
        setMaster(s, c, { author: unseen[0], how: 'forced', decidedAt: positionOf(e) }, e)
      } else {
        const how = c.forcedAt.has(cur.author) ? 'forced' : cur.how === 'forced' ? 'auto' : cur.how
        if (how !== cur.how) c.master = { ...cur, how }
      }
      return
    }
    // A master that was stable left. Without dynamicRoles nothing flips: a human decides.
    if (!settings.dynamicRoles) { c.masterGone = true; return }
    const servers = serversFor(ms, undefined, c, settings.serverCount)
    const next = servers[0]
    if (next === undefined) { c.masterGone = true; return }
    setMaster(s, c, { author: next, how: 'handover', decidedAt: positionOf(e) }, e)
    c.masterGone = false
    return
  }

  const forced = [...c.forcedAt].sort(([, a], [, b]) => comparePositions(a, b))[0]
  let wanted: MasterDecision | undefined
  if (forced !== undefined) {
    wanted = { author: forced[0], how: 'forced', decidedAt: positionOf(e) }
  } else if (c.master !== undefined && present.has(c.master.author) && c.master.how !== 'forced') {
    // Later joiners never displace a chosen master, and neither does its own later request to
    // be a worker or client (requests count for decisions still to be made).
    wanted = c.master
  } else if (ms.filter((m) => m.role !== 'client').length >= settings.minNodes) {
    const first = ms.find(eligible)
    if (first !== undefined) wanted = { author: first.author, how: 'auto', decidedAt: positionOf(e) }
  }
  if (wanted === undefined) {
    c.master = undefined
    return
  }
  if (c.master?.author !== wanted.author) {
    setMaster(s, c, wanted, e)
  } else if (c.master.how !== wanted.how) {
    // Same master, now also asked for (or no longer forced): the decision, and whoever has
    // already seen it, stay; only how it is justified changes.
    c.master = { ...c.master, how: wanted.how }
  }
}

/**
 * Watches are never dropped here: the deciding event may also be a join still being watched,
 * or the deciding event of another cluster (one settings change can decide several). `settle`
 * drops a watch once nothing needs it.
 */
function setMaster (s: RolesState, c: ClusterRolesState, d: MasterDecision, e: SignedEvent): void {
  c.master = d
  s.followers.watch(e)
}

/** Promote tentative decisions and joins that a majority of their cluster now follows. */
function settle (s: RolesState, e: SignedEvent, members: MembersState): void {
  // One pass over the members (no sorting: a count needs none); settle runs on many events.
  const byCluster = new Map<string, string[]>()
  const byJoin = new Map<string, Member>()
  for (const m of members.active.values()) {
    const list = byCluster.get(m.cluster)
    if (list === undefined) byCluster.set(m.cluster, [m.author])
    else list.push(m.author)
    byJoin.set(m.joinId, m)
  }
  for (const [name, c] of s.clusters) {
    if (c.master === undefined) continue
    // Re-evaluated at every step against the current members: a member whose join was
    // concurrent with the decision never saw it, so its arrival makes the decision tentative
    // again (and open to a forced master) until a majority follows it once more.
    const ms = byCluster.get(name) ?? []
    if (!members.active.has(c.master.author) || members.active.get(c.master.author)?.cluster !== name) continue
    const majority = countFollowing(s.followers, c.master.decidedAt.id, ms) * 2 > ms.length
    if (majority && c.master.stableAt === undefined) c.master = { ...c.master, stableAt: positionOf(e), wasStable: c.master.wasStable ?? positionOf(e) }
    else if (!majority && c.master.stableAt !== undefined) c.master = { ...c.master, stableAt: undefined }
  }
  if (s.followers.size === 0) return
  // Current decisions keep their watch (stability is re-evaluated at every step).
  const decisions = new Set<string>()
  for (const c of s.clusters.values()) if (c.master !== undefined) decisions.add(c.master.decidedAt.id)
  for (const id of [...s.followers.keys()]) {
    const joiner = byJoin.get(id)
    if (joiner !== undefined && !s.stableJoins.has(id)) {
      const ms = byCluster.get(joiner.cluster) ?? []
      if (countFollowing(s.followers, id, ms) * 2 > ms.length) s.stableJoins.add(id)
    }
    const joinWatched = joiner !== undefined && !s.stableJoins.has(id)
    if (!joinWatched && !decisions.has(id)) s.followers.delete(id)
  }
}

/** Init master first, then forced masters that lost, then eligible members by join order. */
function serversFor (ms: Member[], master: string | undefined, c: ClusterRolesState, serverCount: number): string[] {
  const out: string[] = master === undefined ? [] : [master]
  const forced = [...c.forcedAt].sort(([, a], [, b]) => comparePositions(a, b)).map(([a]) => a)
  for (const a of forced) if (!out.includes(a)) out.push(a)
  for (const m of ms) if (eligible(m) && !out.includes(m.author)) out.push(m.author)
  return out.slice(0, serverCount)
}

export interface MemberRole { author: string, hostname: string, role: K3sRole, stable: boolean }

export interface ClusterRolesView {
  cluster: string
  status: 'waiting' | 'tentative' | 'stable' | 'master-gone'
  master?: MasterDecision
  /** Forced masters that lost to an earlier claim. */
  conflicts: Array<{ author: string, reason: string }>
  members: MemberRole[]
  reason?: string
}

export function deriveRoles (s: RolesState, members: MembersState, settings: Settings): ClusterRolesView[] {
  const clusters = new Set<string>([...s.clusters.keys()])
  for (const m of members.active.values()) clusters.add(m.cluster)
  const out: ClusterRolesView[] = []
  for (const name of [...clusters].sort()) {
    const c: ClusterRolesState = s.clusters.get(name) ?? { masterGone: false, forcedAt: new Map() }
    const ms = clusterMembers(members, name)
    if (ms.length === 0 && c.master === undefined) continue
    const master = c.master !== undefined && (ms.some((m) => m.author === c.master?.author)) ? c.master : undefined
    // Master gone (dynamicRoles off): nothing flips. Nobody is init, and everyone else keeps the
    // role it had under the gone master (its server slot stays counted), so no agent stops
    // and no server is promoted behind the operator's back.
    const gone = c.masterGone && master === undefined ? c.master : undefined
    const stable = (master ?? gone)?.stableAt !== undefined
    const slotHolder = master?.author ?? gone?.author
    const servers = new Set(slotHolder === undefined ? [] : serversFor(ms, slotHolder, c, settings.serverCount))
    const conflicts = [...c.forcedAt].filter(([a]) => a !== master?.author)
      .sort(([, x], [, y]) => comparePositions(x, y))
      .map(([a]) => ({ author: a, reason: `also claims master; ${master?.author.slice(0, 12) ?? 'another node'} claimed first` }))
    const view: ClusterRolesView = {
      cluster: name,
      status: c.masterGone ? 'master-gone' : master === undefined ? 'waiting' : stable ? 'stable' : 'tentative',
      master,
      conflicts,
      members: ms.map((m) => ({
        author: m.author,
        hostname: m.hostname,
        // The master is init whatever it asked for since it was chosen (see decide).
        role: m.author === master?.author ? 'init' : m.role === 'client' || slotHolder === undefined ? 'none' : servers.has(m.author) ? 'server' : 'agent',
        stable: stable && (m.author === master?.author || s.stableJoins.has(m.joinId))
      }))
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
