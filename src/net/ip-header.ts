/**
 * IPv4 and IPv6 headers as the TUN device reads and writes them (IFF_TUN | IFF_NO_PI: a packet
 * starts with the IP header). Pure: no I/O.
 *
 * Addresses are `family` + bigint `value`, the form `projections/ip.ts` uses, so a route lookup
 * is `cidrContains(cidr, h.family, h.dst)` with no text in between; `formatIp` gives the text.
 */
import { formatIp, parseIp } from '../projections/ip.js'

export const IPPROTO_ICMP = 1
export const IPPROTO_TCP = 6
export const IPPROTO_UDP = 17
export const IPPROTO_ICMPV6 = 58

export interface IpHeader {
  readonly family: 4 | 6
  readonly src: bigint
  readonly dst: bigint
  /**
   * IPv4: the protocol field. IPv6: the Next Header field of the fixed header (extension headers
   * are not walked, so this may be e.g. 0 for hop-by-hop options).
   */
  readonly protocol: number
  /** Bytes of this IP packet per its header (IPv4 total length; IPv6 40 + payload length). */
  readonly totalLength: number
  /** Bytes before the payload (IPv4 IHL * 4; IPv6 40). */
  readonly headerLength: number
  /** IPv4 TTL or IPv6 hop limit. */
  readonly ttl: number
}

/**
 * The header of `pkt`, or undefined when `pkt` is not a well-formed IPv4/IPv6 packet: too short,
 * unknown version, IHL < 5, header or stated length past the end of the bytes, total length
 * shorter than the header. Trailing bytes after the stated length are allowed (as the kernel
 * allows them). IPv6 jumbograms (payload length 0 with a jumbo option) are not recognised: their
 * length is taken as 40. Never throws. The IPv4 header checksum is not checked here; see
 * `ipv4HeaderChecksumOk`.
 */
export function parseIpHeader (pkt: Uint8Array): IpHeader | undefined {
  if (pkt.length < 1) return undefined
  const version = pkt[0]! >> 4
  if (version === 4) {
    if (pkt.length < 20) return undefined
    const headerLength = (pkt[0]! & 0x0f) * 4
    if (headerLength < 20 || headerLength > pkt.length) return undefined
    const totalLength = (pkt[2]! << 8) | pkt[3]!
    if (totalLength < headerLength || totalLength > pkt.length) return undefined
    return {
      family: 4,
      src: BigInt(u32(pkt, 12)),
      dst: BigInt(u32(pkt, 16)),
      protocol: pkt[9]!,
      totalLength,
      headerLength,
      ttl: pkt[8]!
    }
  }
  if (version === 6) {
    if (pkt.length < 40) return undefined
    const totalLength = 40 + ((pkt[4]! << 8) | pkt[5]!)
    if (totalLength > pkt.length) return undefined
    return {
      family: 6,
      src: u128(pkt, 8),
      dst: u128(pkt, 24),
      protocol: pkt[6]!,
      totalLength,
      headerLength: 40,
      ttl: pkt[7]!
    }
  }
  return undefined
}

/** The source address as text (`formatIp`'s canonical form: dotted quad, RFC 5952). */
export function sourceText (h: IpHeader): string {
  return formatIp(h.family, h.src)
}

/** The destination address as text (`formatIp`'s canonical form). */
export function destinationText (h: IpHeader): string {
  return formatIp(h.family, h.dst)
}

/** RFC 1071 ones' complement sum of `bytes[start, end)`, folded and complemented. */
export function internetChecksum (bytes: Uint8Array, start = 0, end = bytes.length): number {
  let sum = 0
  let i = start
  for (; i + 1 < end; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!
  if (i < end) sum += bytes[i]! << 8
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}

/** Whether an IPv4 packet's header checksum is right (false for anything that is not IPv4). */
export function ipv4HeaderChecksumOk (pkt: Uint8Array): boolean {
  const h = parseIpHeader(pkt)
  return h !== undefined && h.family === 4 && internetChecksum(pkt, 0, h.headerLength) === 0
}

export interface IcmpEcho {
  readonly type: 'request' | 'reply'
  /** Text IPv4 addresses. */
  readonly src: string
  readonly dst: string
  readonly id: number
  readonly seq: number
  readonly payload: Uint8Array
  readonly ttl?: number
}

const ICMP_ECHO_REPLY = 0
const ICMP_ECHO_REQUEST = 8

/**
 * A minimal IPv4 ICMP echo request or reply (20-byte header, DF set, correct header and ICMP
 * checksums). For tests and diagnostics.
 */
export function buildIcmpEcho (e: IcmpEcho): Uint8Array {
  const src = parseIp(e.src)
  const dst = parseIp(e.dst)
  if (src.family !== 4 || dst.family !== 4) throw new RangeError('buildIcmpEcho builds IPv4 only')
  if (!isU16(e.id) || !isU16(e.seq)) throw new RangeError('ICMP echo id and seq are 16-bit')
  const total = 20 + 8 + e.payload.length
  if (total > 0xffff) throw new RangeError(`ICMP echo of ${total} bytes does not fit an IPv4 packet`)
  const p = new Uint8Array(total)
  p[0] = 0x45
  p[2] = total >> 8; p[3] = total & 0xff
  p[6] = 0x40 // don't fragment
  p[8] = e.ttl ?? 64
  p[9] = IPPROTO_ICMP
  putU32(p, 12, Number(src.value))
  putU32(p, 16, Number(dst.value))
  const hc = internetChecksum(p, 0, 20)
  p[10] = hc >> 8; p[11] = hc & 0xff
  p[20] = e.type === 'request' ? ICMP_ECHO_REQUEST : ICMP_ECHO_REPLY
  p[24] = e.id >> 8; p[25] = e.id & 0xff
  p[26] = e.seq >> 8; p[27] = e.seq & 0xff
  p.set(e.payload, 28)
  const ic = internetChecksum(p, 20, total)
  p[22] = ic >> 8; p[23] = ic & 0xff
  return p
}

/**
 * The ICMP echo request or reply in `pkt`, or undefined when it is not one: not IPv4, not ICMP,
 * not type 8/0 code 0, fragmented, truncated, or a bad header or ICMP checksum. Never throws.
 */
export function parseIcmpEcho (pkt: Uint8Array): IcmpEcho | undefined {
  const h = parseIpHeader(pkt)
  if (h === undefined || h.family !== 4 || h.protocol !== IPPROTO_ICMP) return undefined
  if ((pkt[6]! & 0x3f) !== 0 || pkt[7] !== 0) return undefined // a fragment (MF set or an offset)
  const o = h.headerLength
  if (h.totalLength - o < 8) return undefined
  if (internetChecksum(pkt, 0, o) !== 0 || internetChecksum(pkt, o, h.totalLength) !== 0) return undefined
  const type = pkt[o]!
  if ((type !== ICMP_ECHO_REQUEST && type !== ICMP_ECHO_REPLY) || pkt[o + 1] !== 0) return undefined
  return {
    type: type === ICMP_ECHO_REQUEST ? 'request' : 'reply',
    src: formatIp(4, h.src),
    dst: formatIp(4, h.dst),
    id: (pkt[o + 4]! << 8) | pkt[o + 5]!,
    seq: (pkt[o + 6]! << 8) | pkt[o + 7]!,
    payload: pkt.slice(o + 8, h.totalLength),
    ttl: h.ttl
  }
}

/** The echo reply to an echo request (same id, seq and payload; addresses swapped), or undefined. */
export function echoReplyTo (request: Uint8Array): Uint8Array | undefined {
  const e = parseIcmpEcho(request)
  if (e === undefined || e.type !== 'request') return undefined
  return buildIcmpEcho({ type: 'reply', src: e.dst, dst: e.src, id: e.id, seq: e.seq, payload: e.payload })
}

function u32 (b: Uint8Array, o: number): number {
  return ((b[o]! << 24) >>> 0) + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!)
}

function u128 (b: Uint8Array, o: number): bigint {
  return (BigInt(u32(b, o)) << 96n) | (BigInt(u32(b, o + 4)) << 64n) | (BigInt(u32(b, o + 8)) << 32n) | BigInt(u32(b, o + 12))
}

function putU32 (b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff; b[o + 1] = (v >>> 16) & 0xff; b[o + 2] = (v >>> 8) & 0xff; b[o + 3] = v & 0xff
}

function isU16 (n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffff
}
