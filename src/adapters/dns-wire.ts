/**
 * The part of the DNS wire format (RFC 1035, 2782, 3596, 6891) Weft's DNS server needs: parse
 * one query, and encode a response carrying A, AAAA, SRV, TXT and SOA records, with EDNS.
 *
 * Every read is bounds-checked: a malformed message gives a result that says how to reply
 * (FORMERR, NOTIMP) or that it must be dropped, never an exception. A hand-written codec rather
 * than dns2's `Packet`: dns2 reads and writes one bit at a time (about 12,000 parse + encode
 * per second on one core here, against 270,000 for a byte codec), and the server's hot path is
 * exactly one parse and one encode per query. dns2 is used by `weft dns query` and by the tests,
 * as an independent decoder of what this one writes.
 */

export const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, IXFR: 251, AXFR: 252, ANY: 255 } as const
export const CLASS = { IN: 1, CH: 3, ANY: 255 } as const
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 } as const
export const RCODE_NAMES: Record<number, string> = {
  0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED', 16: 'BADVERS'
}

export const HEADER_BYTES = 12
/** RFC 1035 2.3.4: a name is at most 255 octets on the wire, a label at most 63. */
export const MAX_NAME_OCTETS = 255
export const MAX_LABEL_OCTETS = 63
/** RFC 1035 4.2.1: a UDP message without EDNS is at most 512 bytes. */
export const CLASSIC_UDP_BYTES = 512
/** A TCP message carries a 16-bit length. */
export const MAX_TCP_MESSAGE = 65535

export interface Edns {
  /** The requestor's UDP payload size (the OPT record's class). */
  payload: number
  version: number
}

export interface Query {
  id: number
  opcode: number
  rd: boolean
  cd: boolean
  /**
   * The question name in presentation form: lowercase, no trailing dot, '' for the root. A byte
   * outside `[a-z0-9_-]` (after folding A-Z) is written `\DDD`, so a label holding a `.` can
   * never be mistaken for two labels.
   */
  name: string
  qtype: number
  qclass: number
  /** The question section as received (name, type, class): echoed as is in the response. */
  question: Buffer
  edns?: Edns
}

/** What a reply to a message that is not a well-formed query looks like. */
export interface ErrorReply { id: number, opcode: number, rd: boolean, cd: boolean, rcode: number }

export type ParseResult =
  | { ok: true, query: Query }
  /** `reply` undefined: drop the message (shorter than a header, or a response). */
  | { ok: false, reason: string, reply?: ErrorReply }

class Malformed extends Error {}

function u16 (b: Buffer, off: number): number {
  if (off + 2 > b.length) throw new Malformed('truncated')
  return (b[off] as number) << 8 | (b[off + 1] as number)
}

/** The end offset of the (possibly compressed) name at `off`, without decoding it. */
function skipName (b: Buffer, off: number): number {
  for (let labels = 0; labels <= 128; labels++) {
    if (off >= b.length) throw new Malformed('name runs past the end')
    const len = b[off] as number
    if (len === 0) return off + 1
    const kind = len & 0xc0
    if (kind === 0xc0) {
      if (off + 2 > b.length) throw new Malformed('truncated pointer')
      return off + 2
    }
    if (kind !== 0) throw new Malformed(`reserved label type 0x${len.toString(16)}`)
    off += 1 + len
  }
  throw new Malformed('too many labels')
}

function labelText (b: Buffer, start: number, end: number): string {
  let s = ''
  for (let i = start; i < end; i++) {
    let c = b[i] as number
    if (c >= 0x41 && c <= 0x5a) c += 0x20
    if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f) s += String.fromCharCode(c)
    else s += '\\' + String(c).padStart(3, '0')
  }
  return s
}

/** The question name at offset 12: uncompressed labels only (nothing precedes it to point to). */
function readQuestionName (b: Buffer, off: number): { name: string, end: number } {
  const labels: string[] = []
  let octets = 1
  for (;;) {
    if (off >= b.length) throw new Malformed('question name runs past the end')
    const len = b[off] as number
    if (len === 0) return { name: labels.join('.'), end: off + 1 }
    if ((len & 0xc0) !== 0) throw new Malformed('compressed or reserved label in the question')
    octets += len + 1
    if (octets > MAX_NAME_OCTETS) throw new Malformed('question name over 255 octets')
    if (off + 1 + len > b.length) throw new Malformed('label runs past the end')
    labels.push(labelText(b, off + 1, off + 1 + len))
    off += 1 + len
  }
}

/**
 * Parse a query. Well-formed means: a header with QR = 0, exactly one question whose name is
 * uncompressed and at most 255 octets, and resource records (if any) that fit in the message,
 * with at most one OPT record, owned by the root, in the additional section. Bytes after the
 * last record are ignored.
 */
export function parseQuery (b: Buffer): ParseResult {
  if (b.length < HEADER_BYTES) return { ok: false, reason: `message of ${b.length} bytes is shorter than a header` }
  const id = u16(b, 0)
  const f1 = b[2] as number
  const f2 = b[3] as number
  if ((f1 & 0x80) !== 0) return { ok: false, reason: 'a response, not a query' }
  const opcode = (f1 >> 3) & 0x0f
  const rd = (f1 & 0x01) !== 0
  const cd = (f2 & 0x10) !== 0
  const fail = (rcode: number, reason: string): ParseResult => ({ ok: false, reason, reply: { id, opcode, rd, cd, rcode } })
  if (opcode !== 0) return fail(RCODE.NOTIMP, `opcode ${opcode} is not QUERY`)
  const qd = u16(b, 4)
  const an = u16(b, 6)
  const ns = u16(b, 8)
  const ar = u16(b, 10)
  if (qd !== 1) return fail(RCODE.FORMERR, `${qd} questions (exactly 1 is supported)`)
  try {
    const { name, end } = readQuestionName(b, HEADER_BYTES)
    const qtype = u16(b, end)
    const qclass = u16(b, end + 2)
    let off = end + 4
    const question = b.subarray(HEADER_BYTES, off)
    let edns: Edns | undefined
    for (let i = 0; i < an + ns + ar; i++) {
      const nameStart = off
      off = skipName(b, off)
      const type = u16(b, off)
      const cls = u16(b, off + 2)
      const ttlHigh = u16(b, off + 4)
      const rdlen = u16(b, off + 8)
      off += 10 + rdlen
      if (off > b.length) throw new Malformed('record data runs past the end')
      if (type === TYPE.OPT && i >= an + ns) {
        if (edns !== undefined) throw new Malformed('more than one OPT record')
        if (b[nameStart] !== 0) throw new Malformed('OPT record not owned by the root')
        edns = { payload: cls, version: ttlHigh & 0xff }
      }
    }
    const query: Query = { id, opcode, rd, cd, name, qtype, qclass, question }
    if (edns !== undefined) query.edns = edns
    return { ok: true, query }
  } catch (err) {
    if (err instanceof Malformed) return fail(RCODE.FORMERR, err.message)
    throw err
  }
}

/** A resource record to write. `owner` undefined: the question's name (a pointer to offset 12). */
export interface WireRecord {
  owner?: Buffer
  type: number
  ttl: number
  rdata: Buffer
}

export interface ResponseSpec {
  rcode: number
  aa: boolean
  ra: boolean
  answers?: readonly WireRecord[]
  authority?: readonly WireRecord[]
  /** Add an OPT record advertising this UDP payload size (when the query carried EDNS). */
  ednsPayload?: number
}

/** The header fields a response copies from its query (a parsed Query or an ErrorReply). */
export interface ResponseTo { id: number, opcode: number, rd: boolean, cd: boolean, question?: Buffer }

const POINTER_TO_QUESTION = Buffer.from([0xc0, HEADER_BYTES])

/**
 * Encode a response of at most `maxBytes`. When the records do not fit, the answer and
 * authority sections are left out and TC is set (RFC 1035 4.2.1, RFC 2181 9): the client asks
 * again over TCP. Returns the bytes and whether they were truncated.
 */
export function encodeResponse (to: ResponseTo, spec: ResponseSpec, maxBytes: number): { bytes: Buffer, truncated: boolean } {
  const question = to.question
  const answers = spec.answers ?? []
  const authority = spec.authority ?? []
  const optBytes = spec.ednsPayload !== undefined ? 11 : 0
  const recordBytes = (r: WireRecord): number => (r.owner ?? POINTER_TO_QUESTION).length + 10 + r.rdata.length
  const base = HEADER_BYTES + (question?.length ?? 0) + optBytes
  let size = base
  for (const r of answers) size += recordBytes(r)
  for (const r of authority) size += recordBytes(r)
  const truncated = size > maxBytes
  const an = truncated ? [] : answers
  const ns = truncated ? [] : authority
  if (truncated) size = base
  const b = Buffer.allocUnsafe(size)
  b.writeUInt16BE(to.id & 0xffff, 0)
  b[2] = 0x80 | ((to.opcode & 0x0f) << 3) | (spec.aa ? 0x04 : 0) | (truncated ? 0x02 : 0) | (to.rd ? 0x01 : 0)
  b[3] = (spec.ra ? 0x80 : 0) | (to.cd ? 0x10 : 0) | (spec.rcode & 0x0f)
  b.writeUInt16BE(question !== undefined ? 1 : 0, 4)
  b.writeUInt16BE(an.length, 6)
  b.writeUInt16BE(ns.length, 8)
  b.writeUInt16BE(optBytes > 0 ? 1 : 0, 10)
  let off = HEADER_BYTES
  if (question !== undefined) off += question.copy(b, off)
  for (const r of [...an, ...ns]) {
    off += (r.owner ?? POINTER_TO_QUESTION).copy(b, off)
    b.writeUInt16BE(r.type, off)
    b.writeUInt16BE(CLASS.IN, off + 2)
    b.writeUInt32BE(r.ttl >>> 0, off + 4)
    b.writeUInt16BE(r.rdata.length, off + 8)
    off += 10
    off += r.rdata.copy(b, off)
  }
  if (spec.ednsPayload !== undefined) {
    b[off] = 0 // root
    b.writeUInt16BE(TYPE.OPT, off + 1)
    b.writeUInt16BE(spec.ednsPayload, off + 3)
    // TTL: extended RCODE (the high 8 bits of a 12-bit rcode), version 0, no DO bit.
    b.writeUInt32BE(((spec.rcode >> 4) & 0xff) << 24 >>> 0, off + 5)
    b.writeUInt16BE(0, off + 9)
    off += 11
  }
  return { bytes: b, truncated }
}

// ---- record data ----------------------------------------------------------------------------

/** A presentation-form name (no escapes: Weft's names are RFC 1123 plus `_` labels) → wire, case kept. */
export function nameToWire (name: string): Buffer {
  const labels = name === '' || name === '.' ? [] : (name.endsWith('.') ? name.slice(0, -1) : name).split('.')
  const parts: Buffer[] = []
  let octets = 1
  for (const l of labels) {
    const bytes = Buffer.from(l, 'latin1')
    if (bytes.length === 0 || bytes.length > MAX_LABEL_OCTETS) throw new Error(`label "${l}" is not 1-${MAX_LABEL_OCTETS} octets`)
    octets += bytes.length + 1
    parts.push(Buffer.from([bytes.length]), bytes)
  }
  if (octets > MAX_NAME_OCTETS) throw new Error(`name "${name}" is over ${MAX_NAME_OCTETS} octets`)
  parts.push(Buffer.from([0]))
  return Buffer.concat(parts)
}

export function ipv4Bytes (addr: string): Buffer {
  const parts = addr.split('.')
  if (parts.length !== 4) throw new Error(`not an IPv4 address: ${addr}`)
  return Buffer.from(parts.map((p) => {
    const n = Number(p)
    if (!/^\d{1,3}$/.test(p) || n > 255) throw new Error(`not an IPv4 address: ${addr}`)
    return n
  }))
}

/** RFC 4291 text (with `::` and an optional trailing dotted quad) → 16 bytes. */
export function ipv6Bytes (addr: string): Buffer {
  const bad = (): Error => new Error(`not an IPv6 address: ${addr}`)
  let text = addr
  const tail: number[] = []
  const lastColon = text.lastIndexOf(':')
  if (lastColon >= 0 && text.slice(lastColon + 1).includes('.')) {
    const v4 = ipv4Bytes(text.slice(lastColon + 1))
    tail.push(v4.readUInt16BE(0), v4.readUInt16BE(2))
    // "::ffff:1.2.3.4" → "::ffff", "::1.2.3.4" → "::": drop the colon before the quad unless it ends a "::".
    text = text.slice(0, lastColon + 1)
    if (!text.endsWith('::')) text = text.slice(0, -1)
  }
  const halves = text.split('::')
  if (halves.length > 2) throw bad()
  const groups = (s: string): number[] => {
    if (s === '') return []
    return s.split(':').map((g) => {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw bad()
      return Number.parseInt(g, 16)
    })
  }
  const head = groups(halves[0] as string)
  const rest = halves.length === 2 ? groups(halves[1] as string) : []
  const explicit = head.length + rest.length + tail.length
  let all: number[]
  if (halves.length === 2) {
    if (explicit > 7) throw bad()
    all = [...head, ...new Array<number>(8 - explicit).fill(0), ...rest, ...tail]
  } else {
    if (explicit !== 8) throw bad()
    all = [...head, ...tail]
  }
  const b = Buffer.alloc(16)
  all.forEach((g, i) => b.writeUInt16BE(g, i * 2))
  return b
}

export function srvRdata (priority: number, weight: number, port: number, target: string): Buffer {
  const head = Buffer.alloc(6)
  head.writeUInt16BE(priority, 0)
  head.writeUInt16BE(weight, 2)
  head.writeUInt16BE(port, 4)
  // RFC 2782: the target is never compressed.
  return Buffer.concat([head, nameToWire(target)])
}

/** One TXT value as character-strings of at most 255 bytes each. */
export function txtRdata (text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8')
  if (bytes.length === 0) return Buffer.from([0])
  const parts: Buffer[] = []
  for (let i = 0; i < bytes.length; i += 255) {
    const chunk = bytes.subarray(i, i + 255)
    parts.push(Buffer.from([chunk.length]), chunk)
  }
  return Buffer.concat(parts)
}

export interface SoaFields { mname: string, rname: string, serial: number, refresh: number, retry: number, expire: number, minimum: number }

export function soaRdata (s: SoaFields): Buffer {
  const nums = Buffer.alloc(20)
  nums.writeUInt32BE(s.serial >>> 0, 0)
  nums.writeUInt32BE(s.refresh, 4)
  nums.writeUInt32BE(s.retry, 8)
  nums.writeUInt32BE(s.expire, 12)
  nums.writeUInt32BE(s.minimum, 16)
  return Buffer.concat([nameToWire(s.mname), nameToWire(s.rname), nums])
}

// ---- helpers for relaying and clients --------------------------------------------------------

/** The header fields of any message of at least 12 bytes. */
export function headerOf (b: Buffer): { id: number, qr: boolean, opcode: number, aa: boolean, tc: boolean, rcode: number, qdcount: number, ancount: number } {
  return {
    id: b.readUInt16BE(0),
    qr: ((b[2] as number) & 0x80) !== 0,
    opcode: ((b[2] as number) >> 3) & 0x0f,
    aa: ((b[2] as number) & 0x04) !== 0,
    tc: ((b[2] as number) & 0x02) !== 0,
    rcode: (b[3] as number) & 0x0f,
    qdcount: b.readUInt16BE(4),
    ancount: b.readUInt16BE(6)
  }
}

/** True when `resp` carries `question` as its first question (ASCII case ignored: DNS 0x20). */
export function sameQuestion (resp: Buffer, question: Buffer): boolean {
  if (resp.length < HEADER_BYTES + question.length || resp.readUInt16BE(4) < 1) return false
  for (let i = 0; i < question.length; i++) {
    let x = resp[HEADER_BYTES + i] as number
    let y = question[i] as number
    if (x >= 0x41 && x <= 0x5a) x += 0x20
    if (y >= 0x41 && y <= 0x5a) y += 0x20
    if (x !== y) return false
  }
  return true
}

/** Build a query (for clients, tests and benches). `edns`: add an OPT with this payload size. */
export function encodeQuery (id: number, name: string, qtype: number, opts: { rd?: boolean, edns?: number } = {}): Buffer {
  const q = Buffer.concat([nameToWire(name), Buffer.from([qtype >> 8, qtype & 0xff, 0, CLASS.IN])])
  return queryMessage(id, opts.rd ?? true, q, opts.edns)
}

function queryMessage (id: number, rd: boolean, question: Buffer, edns: number | undefined): Buffer {
  const b = Buffer.alloc(HEADER_BYTES + question.length + (edns !== undefined ? 11 : 0))
  b.writeUInt16BE(id, 0)
  b[2] = rd ? 0x01 : 0
  b.writeUInt16BE(1, 4)
  b.writeUInt16BE(edns !== undefined ? 1 : 0, 10)
  question.copy(b, HEADER_BYTES)
  if (edns !== undefined) {
    const off = HEADER_BYTES + question.length
    b[off] = 0
    b.writeUInt16BE(TYPE.OPT, off + 1)
    b.writeUInt16BE(edns, off + 3)
  }
  return b
}
