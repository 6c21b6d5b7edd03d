import type { BodyOf } from '../log/bodies.js'
import type { NetworkState } from './network.js'
import { chooseAddress, leaseOf } from './ipam.js'
import { currentDelegates, routeAllowed } from './authority.js'
import { deriveRoles } from './roles.js'
import { fromHex, toHex } from '../log/bytes.js'

/** What the operator asked of this node (its flags and config). */
export interface DesiredNode {
  hostname: string
  cluster: string
  role: BodyOf<'node.join'>['role']
  os: string
  arch: string
  version: string
  addrs: string[]
  caps: string[]
  /** Networks this node routes for (canonical CIDR text). */
  advertise?: string[]
  /** X25519 public key that rotated transport keys are sealed to. */
  seal?: Uint8Array
}

export type AgentStep =
  | { type: 'node.join', body: BodyOf<'node.join'>, why: string }
  | { type: 'role.claim', body: BodyOf<'role.claim'>, why: string }
  | { type: 'role.ack', body: BodyOf<'role.ack'>, why: string }
  | { type: 'ip.claim', body: BodyOf<'ip.claim'>, why: string }
  | { type: 'route.advertise', body: BodyOf<'route.advertise'>, why: string }
  | { type: 'route.withdraw', body: BodyOf<'route.withdraw'>, why: string }

export interface AgentPlan {
  steps: AgentStep[]
  /** Why the agent does nothing when it would otherwise act (an eviction, a full overlay). */
  blocked?: string
}

/**
 * The node agent's decision, as a pure function of the folded state: what this node must append
 * so the log says what its flags say. Called after every change; when the log already agrees it
 * returns no step, so the agent never loops. One kind of step at a time: an address is claimed
 * only once the join is in the state, so the claim sees the membership it depends on.
 */
export function planAgent (s: NetworkState, author: string, want: DesiredNode): AgentPlan {
  const departed = s.members.departed.get(author)
  const revoked = s.authority.revoked.get(author)
  if (revoked !== undefined) {
    return { steps: [], blocked: `this node was revoked by ${revoked.by.slice(0, 12)} (${revoked.reason}); its events are ignored by every member and it can never join again` }
  }
  if ((departed?.how === 'forked') && !s.members.active.has(author)) {
    return { steps: [], blocked: 'this node\'s feed forked (was its data dir restored from an old copy?); every member treats it as revoked: start it with a new --data-dir to join as a new node' }
  }
  if (departed?.how === 'evict' && !s.members.active.has(author)) {
    return { steps: [], blocked: `this node was evicted by ${departed.by.slice(0, 12)}${departed.reason !== undefined ? ` (${departed.reason})` : ''}; it does not rejoin on its own: start it with a new --data-dir to join as a new node` }
  }
  const me = s.members.active.get(author)
  const joinBody: BodyOf<'node.join'> = {
    hostname: want.hostname,
    cluster: want.cluster,
    os: want.os,
    arch: want.arch,
    version: want.version,
    addrs: want.addrs,
    caps: want.caps,
    role: want.role,
    ...(want.seal !== undefined ? { seal: want.seal } : {})
  }
  if (me === undefined) return { steps: [{ type: 'node.join', body: joinBody, why: departed !== undefined ? 'rejoining after a leave' : 'first start' }] }
  // Listen addresses change with every restart on a random port; they are advisory (presence
  // carries the live ones), so they alone do not call for a new join.
  const changed = (['hostname', 'cluster', 'os', 'arch', 'version'] as const).filter((k) => me[k] !== want[k])
  if (me.caps.join(',') !== want.caps.join(',')) changed.push('caps' as never)
  if (want.seal !== undefined && me.seal !== toHex(want.seal)) changed.push('seal key' as never)
  if (changed.length > 0) return { steps: [{ type: 'node.join', body: joinBody, why: `${changed.join(', ')} changed` }] }
  if (me.role !== want.role) {
    return { steps: [{ type: 'role.claim', body: { cluster: want.cluster, role: want.role }, why: `role changed from ${me.role} to ${want.role}` }] }
  }
  const ack = planAck(s, author, me.cluster)
  if (ack !== undefined) return { steps: [ack] }
  // A route outside the policy needs the owner's cosignature: appending it unsigned would be
  // refused by every replica, and again after every change.
  const mayRoute = s.authority.owner === undefined || currentDelegates(s.authority).includes(author)
  const refused = mayRoute ? [] : (want.advertise ?? []).filter((c) => !routeAllowed(c))
  const routeSteps = planRoutes(s, author, (want.advertise ?? []).filter((c) => !refused.includes(c)))
  if (routeSteps.length > 0) return { steps: routeSteps }
  // One address per configured family: IPv4 always, IPv6 once the network sets overlayCidr6.
  const blocked: string[] = refused.length > 0 ? [`--advertise ${refused.join(', ')}: outside the route policy (private ranges); only the owner or a delegate may route it`] : []
  const v = s.settings.values
  for (const family of [4, 6] as const) {
    const overlay = family === 4 ? v.overlayCidr : v.overlayCidr6
    if (overlay === null || leaseOf(s.ipam, author, family) !== undefined) continue
    const addr = chooseAddress(s.ipam, v, author, family)
    if (addr === undefined) { blocked.push(`no free address in the overlay ${overlay}`); continue }
    const last = s.ipam.claims.get(`${author}/${family}`)
    if (last !== undefined && last.addr === addr && last.status === 'invalid') {
      blocked.push(`the claim of ${addr} is invalid: ${last.reason ?? 'unknown reason'}`)
      continue
    }
    const why = last === undefined ? `no IPv${family} address yet` : `claim of ${last.addr} is ${last.status}${last.holder !== undefined ? ` (held by ${last.holder.slice(0, 12)})` : ''}`
    return { steps: [{ type: 'ip.claim', body: { addr }, why }] }
  }
  return blocked.length > 0 ? { steps: [], blocked: blocked.join('; ') } : { steps: [] }
}

/**
 * Vote for the k3s master this replica shows (roles): only when this node's latest vote names
 * another master (or none), so at most one ack per change of the decision, and none at all
 * while there is no decision (waiting, master gone). Without it a decision made in a quiet
 * network would stay tentative until unrelated traffic came along.
 */
function planAck (s: NetworkState, author: string, cluster: string): AgentStep | undefined {
  const view = deriveRoles(s.roles, s.members, s.settings.values).find((c) => c.cluster === cluster)
  const master = view?.status === 'master-gone' ? undefined : view?.master?.author
  if (master === undefined) return undefined
  const mine = s.roles.clusters.get(cluster)?.votes.get(author)
  if (mine?.master === master) return undefined
  const why = `the ${view?.status ?? ''} k3s master of cluster ${cluster} is ${master.slice(0, 12)}${mine === undefined ? '' : ` (this node last acknowledged ${mine.master.slice(0, 12)})`}`
  return { type: 'role.ack', body: { cluster, master: fromHex(master) }, why }
}

/** Advertise what the flags name and the log lacks; withdraw what the log has and the flags dropped. */
function planRoutes (s: NetworkState, author: string, want: readonly string[]): AgentStep[] {
  const mine = new Set<string>()
  for (const a of s.routes.adverts.values()) if (a.author === author) mine.add(a.cidr)
  const steps: AgentStep[] = []
  for (const cidr of want) if (!mine.has(cidr)) steps.push({ type: 'route.advertise', body: { cidr }, why: 'named by --advertise' })
  const wanted = new Set(want)
  for (const cidr of mine) if (!wanted.has(cidr)) steps.push({ type: 'route.withdraw', body: { cidr }, why: 'no longer named by --advertise' })
  return steps
}
