import type { Reducer } from '../crdt/fold.js'
import type { SignedEvent } from '../log/event.js'
import { toHex } from '../log/bytes.js'
import { members, type MembersState } from './members.js'
import { applySettings, cloneSettings, initialSettings, type SettingsState } from './settings.js'
import { applyRoles, cloneRoles, initialRoles, type RolesState } from './roles.js'
import { applyIpam, cloneIpam, initialIpam, releaseAll, revalidateLeases, type IpamState } from './ipam.js'
import { applyRoutes, cloneRoutes, dropRoutesOf, initialRoutes, type RoutesState } from './routes.js'
import { applyServices, cloneServices, initialServices, type ServicesState } from './services.js'
import type { EventLocator } from './followers.js'

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
}

/**
 * The reducer keeps one locator (event id → author, seq) outside the cloned state: it only
 * grows, entries never change, and lookups only ever ask about an event's parents, so sharing
 * it between checkpoints is safe and saves copying it.
 */
export interface NetworkReducerOptions {
  /** Whether `e` carries owner or delegate authority (roles: an authorised master claim may replace a stable decision). */
  authorised?: (e: SignedEvent) => boolean
}

export function networkReducer (opts: NetworkReducerOptions = {}): Reducer<NetworkState> {
  const locate: EventLocator = new Map()
  return {
    initial: () => ({
      settings: initialSettings(),
      members: members.initial(),
      roles: initialRoles(),
      ipam: initialIpam(),
      routes: initialRoutes(),
      services: initialServices()
    }),
    clone: (s) => ({
      settings: cloneSettings(s.settings),
      members: members.clone(s.members),
      roles: cloneRoles(s.roles),
      ipam: cloneIpam(s.ipam),
      routes: cloneRoutes(s.routes),
      services: cloneServices(s.services)
    }),
    apply (s, e, ctx) {
      locate.set(e.idHex, { author: e.authorHex, seq: e.fields.seq })
      const f = e.fields
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

      // Trace causality only through parents in this fold's view (see RolesState.folded).
      const folded = s.roles.folded
      const followersChanged = s.roles.followers.observe(e, {
        get: (id) => {
          const at = locate.get(id)
          return at !== undefined && at.seq <= (folded.get(at.author) ?? 0) ? at : undefined
        }
      })
      if (f.seq > (folded.get(e.authorHex) ?? 0)) folded.set(e.authorHex, f.seq)
      applyRoles(s.roles, e, s.members, s.settings.values, touched, followersChanged, opts.authorised?.(e) ?? false)

      const isMember = (a: string): boolean => s.members.active.has(a)
      applyIpam(s.ipam, e, s.settings.values, isMember)
      applyRoutes(s.routes, e, isMember)
      applyServices(s.services, e, (a) => s.members.active.get(a)?.cluster)
    }
  }
}

export type { SignedEvent }
