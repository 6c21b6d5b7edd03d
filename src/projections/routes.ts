import type { SignedEvent } from '../log/event.js'
import { cidrContains, cidrSize, parseCidr, parseIp, type Cidr } from './ip.js'
import { comparePositions, positionOf, type Position } from './position.js'
import type { IpamState } from './ipam.js'
import type { Settings } from './settings.js'

/**
 * Advertised CIDRs (a LAN or a cluster's pod/service range reachable through a member). The
 * route table is derived: advertisements are taken in the order of the log; one that overlaps
 * an accepted one, or the overlay itself, is marked conflicting and not used. Withdrawing or
 * leaving lets the next advertisement in line take over.
 */
export interface Advertisement { readonly author: string, readonly cidr: string, readonly at: Position }

export interface InvalidAdvertisement { readonly author: string, readonly cidr: string, readonly reason: string, readonly at: Position }

export interface RoutesState {
  /** `${author} ${cidr}` → advertisement */
  adverts: Map<string, Advertisement>
  /**
   * `${author} ${text}` → an advertisement the log's schema admits but that is no network (host
   * bits set, e.g. 192.168.1.7/24): reported so its author learns why it is not routed.
   */
  invalid: Map<string, InvalidAdvertisement>
}

export function initialRoutes (): RoutesState { return { adverts: new Map(), invalid: new Map() } }
export function cloneRoutes (s: RoutesState): RoutesState { return { adverts: new Map(s.adverts), invalid: new Map(s.invalid) } }

export function applyRoutes (s: RoutesState, e: SignedEvent, isMember: (a: string) => boolean): void {
  const f = e.fields
  if (f.type !== 'route.advertise' && f.type !== 'route.withdraw') return
  let cidr: Cidr
  try {
    cidr = parseCidr(f.body.cidr)
  } catch (err) {
    const key = `${e.authorHex} ${f.body.cidr}`
    if (f.type === 'route.withdraw') s.invalid.delete(key)
    else if (isMember(e.authorHex)) s.invalid.set(key, { author: e.authorHex, cidr: f.body.cidr, reason: (err as Error).message, at: positionOf(e) })
    return
  }
  const key = `${e.authorHex} ${cidr.text}`
  if (f.type === 'route.withdraw') { s.adverts.delete(key); return }
  if (!isMember(e.authorHex) || s.adverts.has(key)) return
  s.adverts.set(key, { author: e.authorHex, cidr: cidr.text, at: positionOf(e) })
}

export function dropRoutesOf (s: RoutesState, author: string): void {
  for (const [k, a] of s.adverts) if (a.author === author) s.adverts.delete(k)
  for (const [k, a] of s.invalid) if (a.author === author) s.invalid.delete(k)
}

export interface Route { readonly cidr: string, readonly peer: string, readonly kind: 'lease' | 'advertised' }
export interface RouteConflict { readonly cidr: string, readonly peer: string, readonly clashesWith: string, readonly holder: string }

export interface RouteTable {
  routes: Route[]
  conflicts: RouteConflict[]
  /** Advertisements that are not a network (see RoutesState.invalid). */
  invalid: Array<{ readonly cidr: string, readonly peer: string, readonly reason: string }>
}

interface AcceptedRange { readonly cidr: Cidr, readonly peer: string, readonly end: bigint, readonly order: number }

/**
 * The accepted CIDRs, per family sorted by base. They never overlap one another (one that
 * would is a conflict), so their ends are sorted too and the ones a new CIDR overlaps are
 * found by a binary search: a log advertising 1,400 CIDRs took 80–170 ms to derive by
 * comparing each with every accepted one (the start's address filter and every `GET /state`).
 */
class AcceptedRanges {
  private readonly lists = { 4: [] as AcceptedRange[], 6: [] as AcceptedRange[] }
  private count = 0

  /** The first accepted (in the order accepted) that overlaps `cidr`, as a linear search finds. */
  firstOverlap (cidr: Cidr): AcceptedRange | undefined {
    const list = this.lists[cidr.family]
    const end = cidr.base + cidrSize(cidr)
    let lo = 0
    let hi = list.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if ((list[mid] as AcceptedRange).end > cidr.base) hi = mid
      else lo = mid + 1
    }
    let first: AcceptedRange | undefined
    for (let i = lo; i < list.length && (list[i] as AcceptedRange).cidr.base < end; i++) {
      const r = list[i] as AcceptedRange
      if (first === undefined || r.order < first.order) first = r
    }
    return first
  }

  /** Add a CIDR that overlaps none accepted. */
  add (cidr: Cidr, peer: string): void {
    const list = this.lists[cidr.family]
    let lo = 0
    let hi = list.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if ((list[mid] as AcceptedRange).cidr.base < cidr.base) lo = mid + 1
      else hi = mid
    }
    list.splice(lo, 0, { cidr, peer, end: cidr.base + cidrSize(cidr), order: this.count++ })
  }
}

export function deriveRoutes (s: RoutesState, ipam: IpamState, settings: Settings): RouteTable {
  const routes: Route[] = []
  const conflicts: RouteConflict[] = []
  for (const l of ipam.leases.values()) routes.push({ cidr: `${l.addr}/${l.family === 4 ? 32 : 128}`, peer: l.author, kind: 'lease' })
  const accepted = new AcceptedRanges()
  for (const text of [settings.overlayCidr, settings.overlayCidr6]) {
    if (text !== null) {
      const cidr = parseCidr(text)
      if (accepted.firstOverlap(cidr) === undefined) accepted.add(cidr, 'overlay')
    }
  }
  const adverts = [...s.adverts.values()].sort((a, b) => comparePositions(a.at, b.at))
  for (const a of adverts) {
    const cidr = parseCidr(a.cidr)
    const clash = accepted.firstOverlap(cidr)
    if (clash !== undefined) {
      conflicts.push({ cidr: a.cidr, peer: a.author, clashesWith: clash.cidr.text, holder: clash.peer })
      continue
    }
    accepted.add(cidr, a.author)
    routes.push({ cidr: a.cidr, peer: a.author, kind: 'advertised' })
  }
  routes.sort((x, y) => (x.cidr < y.cidr ? -1 : x.cidr > y.cidr ? 1 : 0))
  const invalid = [...s.invalid.values()].sort((a, b) => comparePositions(a.at, b.at))
    .map((a) => ({ cidr: a.cidr, peer: a.author, reason: a.reason }))
  return { routes, conflicts, invalid }
}

/** Longest-prefix match: the one peer that carries packets to `addr`, or undefined. */
export function lookupRoute (table: RouteTable, addr: string): Route | undefined {
  let ip: { family: 4 | 6, value: bigint }
  try { ip = parseIp(addr) } catch { return undefined }
  let best: { route: Route, prefix: number } | undefined
  for (const r of table.routes) {
    const c = parseCidr(r.cidr)
    if (cidrContains(c, ip.family, ip.value) && (best === undefined || c.prefix > best.prefix)) best = { route: r, prefix: c.prefix }
  }
  return best?.route
}
