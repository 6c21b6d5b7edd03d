import { createHash } from 'node:crypto'
import { WeftError } from '../log/errors.js'

/** IPv4/IPv6 addresses as bigints, so one code path serves both families. */
export interface Cidr {
  readonly family: 4 | 6
  readonly base: bigint
  readonly prefix: number
  readonly text: string
}

const BITS = { 4: 32, 6: 128 } as const

export function parseIp (text: string): { family: 4 | 6, value: bigint } {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(text)) {
    // Split once (this runs for every claim of every fold); no leading zeros, each <= 255.
    let v = 0
    for (const part of text.split('.')) {
      const p = Number(part)
      if (p > 255 || (part.length > 1 && part[0] === '0')) throw new WeftError('ERR_BAD_INPUT', `"${text}" is not an IPv4 address`)
      v = v * 256 + p
    }
    return { family: 4, value: BigInt(v) }
  }
  if (text.includes(':') && /^[0-9a-fA-F:]+$/.test(text)) {
    const halves = text.split('::')
    if (halves.length > 2) throw new WeftError('ERR_BAD_INPUT', `"${text}" is not an IPv6 address`)
    const head = halves[0] === '' ? [] : (halves[0] as string).split(':')
    const tail = halves.length === 2 && halves[1] !== '' ? (halves[1] as string).split(':') : []
    const missing = 8 - head.length - tail.length
    if ((halves.length === 1 && missing !== 0) || missing < 0 || (halves.length === 2 && missing < 1)) {
      throw new WeftError('ERR_BAD_INPUT', `"${text}" is not an IPv6 address`)
    }
    const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail]
    let v = 0n
    for (const g of groups) {
      if (g.length === 0 || g.length > 4) throw new WeftError('ERR_BAD_INPUT', `"${text}" is not an IPv6 address`)
      v = (v << 16n) | BigInt(parseInt(g, 16))
    }
    return { family: 6, value: v }
  }
  throw new WeftError('ERR_BAD_INPUT', `"${text}" is not an IP address`)
}

export function formatIp (family: 4 | 6, value: bigint): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 255n)).join('.')
  }
  const groups: string[] = []
  for (let i = 7; i >= 0; i--) groups.push(((value >> BigInt(i * 16)) & 0xffffn).toString(16))
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') { i++; continue }
    let j = i
    while (j < 8 && groups[j] === '0') j++
    if (j - i > bestLen) { best = i; bestLen = j - i }
    i = j
  }
  if (best < 0) return groups.join(':')
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`
}

export function parseCidr (text: string): Cidr {
  const [addr, len, extra] = text.split('/')
  if (addr === undefined || len === undefined || extra !== undefined || !/^\d{1,3}$/.test(len)) {
    throw new WeftError('ERR_BAD_INPUT', `"${text}" is not a CIDR (expected address/prefix, e.g. 10.1.0.0/16)`)
  }
  const ip = parseIp(addr)
  const prefix = Number(len)
  if (prefix > BITS[ip.family]) throw new WeftError('ERR_BAD_INPUT', `"${text}": prefix /${prefix} is too long for IPv${ip.family}`)
  const hostBits = BigInt(BITS[ip.family] - prefix)
  const base = (ip.value >> hostBits) << hostBits
  if (base !== ip.value) {
    throw new WeftError('ERR_BAD_INPUT', `"${text}" has host bits set; did you mean ${formatIp(ip.family, base)}/${prefix}?`)
  }
  return { family: ip.family, base, prefix, text: `${formatIp(ip.family, base)}/${prefix}` }
}

export function cidrSize (c: Cidr): bigint {
  return 1n << BigInt(BITS[c.family] - c.prefix)
}

export function cidrContains (c: Cidr, family: 4 | 6, value: bigint): boolean {
  return family === c.family && value >= c.base && value < c.base + cidrSize(c)
}

export function cidrsOverlap (a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.base < b.base + cidrSize(b) && b.base < a.base + cidrSize(a)
}

/** Why an address cannot be leased from `cidr`, or undefined when it can. */
export function leaseProblem (cidr: Cidr, addr: string): string | undefined {
  let ip: { family: 4 | 6, value: bigint }
  try { ip = parseIp(addr) } catch { return `"${addr}" is not an IP address` }
  if (!cidrContains(cidr, ip.family, ip.value)) return `${addr} is outside the overlay ${cidr.text}`
  if (ip.value === cidr.base) return `${addr} is the network address of ${cidr.text}`
  if (cidr.family === 4 && cidr.prefix < 31 && ip.value === cidr.base + cidrSize(cidr) - 1n) return `${addr} is the broadcast address of ${cidr.text}`
  return undefined
}

/**
 * The `attempt`-th address a node tries in `cidr`: a hash of its key, so it is stable across
 * reboots and spread evenly; the sequence continues deterministically after a lost claim.
 */
export function candidateAddress (authorHex: string, cidr: Cidr, attempt: number): string {
  const size = cidrSize(cidr)
  const usable = cidr.family === 4 ? size - 2n : size - 1n
  if (usable <= 0n) throw new WeftError('ERR_BAD_INPUT', `${cidr.text} has no address to lease`)
  const h = createHash('sha256').update(`weft-ipam/v1/${authorHex}/${attempt}`).digest()
  const n = BigInt('0x' + h.subarray(0, 16).toString('hex')) % usable
  return formatIp(cidr.family, cidr.base + 1n + n)
}
