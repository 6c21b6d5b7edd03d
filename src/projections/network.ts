import type { FoldContext, Reducer } from '../crdt/fold.js'
import type { SignedEvent } from '../log/event.js'
import { toHex } from '../log/bytes.js'
import { members, type MembersState } from './members.js'
import { applySettings, cloneSettings, initialSettings, type SettingsState } from './settings.js'
import { applyRoles, cloneRoles, initialRoles, type RolesState } from './roles.js'
import { applyIpam, cloneIpam, initialIpam, releaseAll, revalidateLeases, type IpamState } from './ipam.js'
import { applyRoutes, cloneRoutes, dropRoutesOf, initialRoutes, type RoutesState } from './routes.js'
import { applyServices, cloneServices, dropExportsOf, initialServices, type ServicesState } from './services.js'
import type { EventLocator, Locate } from './followers.js'
import {
  applyAuthority, authorityOf, cloneAuthority, initialAuthority, observeAuthority, refuse, requiredAuthority,
  type AuthorityState
} from './authority.js'

/**
 * Every projection of the network, folded together because they depend on each other in a
 * fixed order for each event: settings → members → roles → ipam → routes → services. Derived
 * views (route table, DNS, imports) are computed from this state on demand (see view.ts).
 */
export interface NetworkState {
  settings: SettingsState
  members: MembersState
  roles: RolesState
  ipam: IpamState
  routes: RoutesState
  services: ServicesState
  authority: AuthorityState
}

export interface NetworkReducerOptions {
  /** The owner key the token commits to; absent: an open (legacy) network. */
  owner?: Uint8Array
  /**
   * The seq from which an author is frozen by a fork proof (the merged log knows). Such an author
   * is treated as revoked: it departs right after its last visible event, so its addresses,
   * routes, services and names go, on every replica that knows the proof.
   */
  frozenAt?: (authorHex: string) => number | undefined
  /**
   * (author, seq) of a logged event by id, from the merged log. Without it the reducer keeps its
   * own locator of every folded event. With it, a state restored from a checkpoint traces
   * parents folded before the restart, and 100,000 events cost no second index.
   */
  locate?: Locate
}

/**
 * Parents are located (event id → author, seq) outside the cloned state: through the merged log
 * (`opts.locate`), or a locator the reducer keeps. Either only grows, entries never change, and
 * lookups only ever ask about an event's parents, filtered by what this fold's state has folded
 * (`roles.folded`), so sharing it between checkpoints is safe and saves copying it.
 */
export function networkReducer (opts: NetworkReducerOptions = {}): Reducer<NetworkState> {
  const own: EventLocator | undefined = opts.locate === undefined ? new Map() : undefined
  const locate: Locate = opts.locate ?? (own as EventLocator)
  return {
    initial: () => ({
      settings: initialSettings(),
      members: members.initial(),
      roles: initialRoles(),
      ipam: initialIpam(),
      routes: initialRoutes(),
      services: initialServices(),
      authority: initialAuthority(opts.owner)
    }),
    clone: (s) => ({
      settings: cloneSettings(s.settings),
      members: members.clone(s.members),
      roles: cloneRoles(s.roles),
      ipam: cloneIpam(s.ipam),
      routes: cloneRoutes(s.routes),
      services: cloneServices(s.services),
      authority: cloneAuthority(s.authority)
    }),
    apply (s, e, ctx) {
      own?.set(e.idHex, { author: e.authorHex, seq: e.fields.seq })
      // Trace causality only through parents in this fold's view (see RolesState.folded).
      const folded = s.roles.folded
      const inView: Locate = {
        get: (id) => {
          const at = locate.get(id)
          return at !== undefined && at.seq <= (folded.get(at.author) ?? 0) ? at : undefined
        }
      }
      const followersChanged = s.roles.followers.observe(e, inView)
      observeAuthority(s.authority, e, inView)
      if (e.fields.seq > (folded.get(e.authorHex) ?? 0)) folded.set(e.authorHex, e.fields.seq)

      if (admitted(s, e)) applyAdmitted(s, e, ctx, followersChanged)
      else if (followersChanged) applyRoles(s.roles, e, s.members, s.settings.values, new Set(), true)

      const frozen = opts.frozenAt?.(e.authorHex)
      if (frozen !== undefined && e.fields.seq === frozen - 1 && s.members.active.has(e.authorHex)) {
        depart(s, e, e.authorHex, { how: 'forked', by: e.authorHex, reason: 'its feed forked (two events at one seq)' })
      }
    }
  }
}

/** Whether an event may take effect: its author is not revoked and it has the authority it needs. */
function admitted (s: NetworkState, e: SignedEvent): boolean {
  if (s.authority.revoked.has(e.authorHex)) return false
  const need = requiredAuthority(e)
  if (need === undefined) return true
  const has = authorityOf(s.authority, e)
  if (has === 'open' || has === 'owner' || (has === 'delegate' && need === 'admin')) return true
  refuse(s.authority, e, need === 'owner'
    ? `${e.fields.type} needs the owner's cosignature`
    : `${e.fields.type}${e.fields.type === 'route.advertise' ? ' outside the route policy' : ''} needs the owner's or a delegate's authority`)
  return false
}

interface DepartureOf { how: 'leave' | 'evict' | 'revoke' | 'forked', by: string, reason?: string }

/** A member goes: its addresses, routes and service exports go with it. */
function depart (s: NetworkState, e: SignedEvent, author: string, d: DepartureOf): void {
  const m = s.members.active.get(author)
  if (m !== undefined) {
    s.members.active.delete(author)
    s.members.departed.set(author, { author, how: d.how, by: d.by, reason: d.reason, lamport: e.fields.lamport })
  }
  releaseAll(s.ipam, author, e, d.how === 'leave' ? 'the member left' : `the member was ${d.how === 'forked' ? 'frozen by a fork' : d.how === 'revoke' ? 'revoked' : 'evicted'}`)
  dropRoutesOf(s.routes, author)
  if (d.how === 'revoke' || d.how === 'forked') dropExportsOf(s.services, author)
  const touched = new Set<string>(m !== undefined ? [m.cluster] : [])
  applyRoles(s.roles, e, s.members, s.settings.values, touched, false)
}

function applyAdmitted (s: NetworkState, e: SignedEvent, ctx: FoldContext, followersChanged: boolean): void {
  const f = e.fields
  applyAuthority(s.authority, e)
  if (f.type === 'node.revoke') {
    const target = toHex(f.body.peer)
    if (s.authority.revoked.get(target)?.at.id === e.idHex) depart(s, e, target, { how: 'revoke', by: e.authorHex, reason: f.body.reason })
    return
  }
  const before = f.type === 'settings.change' ? { ...s.settings.values } : undefined
  applySettings(s.settings, e)

  const touched = new Set<string>()
  const clusterBefore = (a: string): string | undefined => s.members.active.get(a)?.cluster
  let departed: string | undefined
  if (f.type === 'node.join' || f.type === 'role.claim' || f.type === 'node.leave') {
    const c = clusterBefore(e.authorHex)
    if (c !== undefined) touched.add(c)
    if (f.type === 'node.leave') departed = e.authorHex
  } else if (f.type === 'node.evict') {
    const target = toHex(f.body.peer)
    const c = clusterBefore(target)
    if (c !== undefined && s.members.active.has(e.authorHex) && target !== e.authorHex) { touched.add(c); departed = target }
  }
  members.apply(s.members, e, ctx)
  if (f.type === 'node.join') touched.add(f.body.cluster)
  if (departed !== undefined && !s.members.active.has(departed)) {
    releaseAll(s.ipam, departed, e, 'the member left')
    dropRoutesOf(s.routes, departed)
  }

  if (before !== undefined) {
    const v = s.settings.values
    if (v.minNodes !== before.minNodes || v.serverCount !== before.serverCount || v.dynamicRoles !== before.dynamicRoles) {
      for (const c of s.roles.clusters.keys()) touched.add(c)
      for (const m of s.members.active.values()) touched.add(m.cluster)
    }
    if (v.overlayCidr !== before.overlayCidr || v.overlayCidr6 !== before.overlayCidr6) revalidateLeases(s.ipam, e, v)
  }

  // A forced master claim replaces a stable decision only with real authority (an open network
  // has none to give).
  const has = requiredAuthority(e) === undefined ? authorityOf(s.authority, e) : undefined
  applyRoles(s.roles, e, s.members, s.settings.values, touched, followersChanged, has === 'owner' || has === 'delegate')

  const isMember = (a: string): boolean => s.members.active.has(a)
  applyIpam(s.ipam, e, s.settings.values, isMember)
  applyRoutes(s.routes, e, isMember)
  applyServices(s.services, e, (a) => s.members.active.get(a)?.cluster)
}

export type { SignedEvent }
