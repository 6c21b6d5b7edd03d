import type { SignedEvent } from '../log/event.js'
import { candidateAddress, formatIp, leaseProblem, parseCidr, parseIp, type Cidr } from './ip.js'
import { positionOf, type Position } from './position.js'
import type { Settings } from './settings.js'

/**
 * Overlay address leases. The first claim of an address in the log's order wins; a later claim
 * of a held address is `lost` (its agent tries the next candidate). One lease per member and
 * family: a new claim moves it. Leases end on `ip.release`, leave or evict, or when a settings
 * change moves the overlay away from them.
 */
export interface Lease { readonly author: string, readonly addr: string, readonly family: 4 | 6, readonly since: Position }

export interface ClaimStatus {
  readonly addr: string
  readonly status: 'held' | 'lost' | 'invalid' | 'released'
  readonly reason?: string
  /** Who holds it, when lost. */
  readonly holder?: string
  readonly at: Position
}

export interface IpamState {
  /** canonical address text → lease */
  leases: Map<string, Lease>
  /**
   * `${author}/${family}` → the address that member holds. Kept apart from `claims`: a claim
   * that loses (or is invalid) is the latest claim, yet the member still holds its old lease.
   */
  held: Map<string, string>
  /** `${author}/${family}` → latest claim status */
  claims: Map<string, ClaimStatus>
}

export function initialIpam (): IpamState {
  return { leases: new Map(), held: new Map(), claims: new Map() }
}

export function cloneIpam (s: IpamState): IpamState {
  return { leases: new Map(s.leases), held: new Map(s.held), claims: new Map(s.claims) }
}

/** Parsed overlays by text: the overlay is parsed for every claim, and changes rarely. */
const overlays = new Map<string, Cidr>()

function overlayFor (settings: Settings, family: 4 | 6): Cidr | undefined {
  const text = family === 4 ? settings.overlayCidr : settings.overlayCidr6
  if (text === null) return undefined
  let c = overlays.get(text)
  if (c === undefined) {
    c = parseCidr(text)
    if (overlays.size > 64) overlays.clear()
    overlays.set(text, c)
  }
  return c
}

/**
 * One text per address (RFC 5952 for IPv6): "fd00::1", "fd00:0::1" and "FD00::0001" are the
 * same address and must be the same lease key.
 */
function canonical (addr: string): { family: 4 | 6, text: string } | undefined {
  try {
    const ip = parseIp(addr)
    return { family: ip.family, text: formatIp(ip.family, ip.value) }
  } catch { return undefined }
}

export function leaseOf (s: IpamState, author: string, family: 4 | 6): Lease | undefined {
  const addr = s.held.get(`${author}/${family}`)
  if (addr === undefined) return undefined
  const l = s.leases.get(addr)
  return l?.author === author ? l : undefined
}

function dropLease (s: IpamState, l: Lease): void {
  s.leases.delete(l.addr)
  s.held.delete(`${l.author}/${l.family}`)
}

export function releaseAll (s: IpamState, author: string, e: SignedEvent, reason: string): void {
  for (const family of [4, 6] as const) {
    const l = leaseOf(s, author, family)
    if (l === undefined) continue
    dropLease(s, l)
    s.claims.set(`${author}/${family}`, { addr: l.addr, status: 'released', reason, at: positionOf(e) })
  }
}

/** `isMember(author)`: only active members may hold addresses. */
export function applyIpam (s: IpamState, e: SignedEvent, settings: Settings, isMember: (a: string) => boolean): void {
  const f = e.fields
  if (f.type === 'ip.claim') {
    const at = positionOf(e)
    const c = canonical(f.body.addr)
    if (c === undefined) {
      // The log's schema admits forms this projection does not lease (IPv4-mapped IPv6, zones).
      const family = f.body.addr.includes(':') ? 6 : 4
      s.claims.set(`${e.authorHex}/${family}`, { addr: f.body.addr, status: 'invalid', reason: `"${f.body.addr}" is not a plain IPv${family} address`, at })
      return
    }
    const key = `${e.authorHex}/${c.family}`
    const status = (st: Omit<ClaimStatus, 'addr' | 'at'>): void => { s.claims.set(key, { addr: c.text, at, ...st }) }
    if (!isMember(e.authorHex)) { status({ status: 'invalid', reason: 'only members hold addresses: append node.join first' }); return }
    const overlay = overlayFor(settings, c.family)
    if (overlay === undefined) { status({ status: 'invalid', reason: 'no IPv6 overlay is configured (settings overlayCidr6)' }); return }
    const problem = leaseProblem(overlay, c.text)
    if (problem !== undefined) { status({ status: 'invalid', reason: problem }); return }
    const holder = s.leases.get(c.text)
    if (holder !== undefined && holder.author !== e.authorHex) {
      status({ status: 'lost', reason: `${c.text} is already held`, holder: holder.author })
      return
    }
    if (holder?.author === e.authorHex) {
      // Its own address again (after a claim elsewhere that lost): the lease and its age stay.
      status({ status: 'held' })
      return
    }
    const old = leaseOf(s, e.authorHex, c.family)
    if (old !== undefined) dropLease(s, old)
    s.leases.set(c.text, { author: e.authorHex, addr: c.text, family: c.family, since: at })
    s.held.set(key, c.text)
    status({ status: 'held' })
  } else if (f.type === 'ip.release') {
    const c = canonical(f.body.addr)
    if (c === undefined) return
    const l = s.leases.get(c.text)
    if (l === undefined || l.author !== e.authorHex) return
    dropLease(s, l)
    s.claims.set(`${e.authorHex}/${c.family}`, { addr: c.text, status: 'released', reason: 'released by its holder', at: positionOf(e) })
  }
}

/** After the overlay CIDR changed: leases outside it end and their holders must claim again. */
export function revalidateLeases (s: IpamState, e: SignedEvent, settings: Settings): void {
  for (const l of [...s.leases.values()]) {
    const overlay = overlayFor(settings, l.family)
    if (overlay === undefined || leaseProblem(overlay, l.addr) !== undefined) {
      dropLease(s, l)
      s.claims.set(`${l.author}/${l.family}`, { addr: l.addr, status: 'lost', reason: `the overlay is now ${overlay?.text ?? 'unset'}`, at: positionOf(e) })
    }
  }
}

/**
 * The address an agent should claim next: the first free one of its deterministic candidate
 * sequence. The first candidate is stable across reboots because it hashes the node's key.
 */
export function chooseAddress (s: IpamState, settings: Settings, author: string, family: 4 | 6 = 4): string | undefined {
  const overlay = overlayFor(settings, family)
  if (overlay === undefined) return undefined
  const current = leaseOf(s, author, family)
  if (current !== undefined) return current.addr
  for (let attempt = 0; attempt < 4096; attempt++) {
    const addr = candidateAddress(author, overlay, attempt)
    if (!s.leases.has(addr)) return addr
  }
  return undefined
}
