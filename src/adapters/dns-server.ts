import dgram from 'node:dgram'
import net from 'node:net'
import { randomInt } from 'node:crypto'
import { once } from 'node:events'
import { DNS_TTL, type DnsRecord } from '../projections/dns.js'
import { isInZone } from '../projections/dns-name.js'
import type { MeshLogger } from '../net/mesh-logger.js'
import type { DnsAnswerSource } from './dns-source.js'
import { answersQuery, dnsExchange, formatHostPort, parseHostPort, type HostPort } from './dns-client.js'
import {
  CLASS, CLASSIC_UDP_BYTES, HEADER_BYTES, MAX_TCP_MESSAGE, RCODE, TYPE, encodeResponse, headerOf, ipv4Bytes, ipv6Bytes, nameToWire,
  parseQuery, soaRdata, srvRdata, txtRdata, type Query, type ResponseSpec, type ResponseTo, type WireRecord
} from './dns-wire.js'

export type { DnsAnswerSource, DnsLookup, NetworkDnsSource } from './dns-source.js'
export { dnsTableFromView, networkDnsSource, tableDnsSource } from './dns-source.js'
export { parseHostPort, formatHostPort, type HostPort } from './dns-client.js'

/**
 * Weft's DNS server: authoritative for the network's zone and clusterset.local (answers from
 * the dns projection, AA set, NXDOMAIN for names that do not exist), a forwarder for every other
 * name (UDP to the upstream resolvers in order, the first that answers is relayed), REFUSED for
 * other names when there is no upstream. UDP and TCP on every listen address, the same port for
 * both. See docs/dns.md.
 */

export interface DnsServerLimits {
  /** Largest query accepted, UDP datagram or TCP message; larger ones are dropped (TCP: the connection is closed). */
  maxQueryBytes: number
  /** Largest UDP response sent to an EDNS client (the DNS Flag Day 2020 size); 512 without EDNS. */
  udpPayload: number
  /** Forwarded queries waiting for an upstream at once; past it, SERVFAIL at once. */
  maxInflightForwards: number
  /** How long one upstream gets to answer before the next is asked. */
  forwardTimeoutMs: number
  /** Open TCP connections; past it, new connections are closed at once. */
  maxTcpConnections: number
  /** Queries of one TCP connection being answered at once; past it, reading pauses. */
  maxTcpPipeline: number
  /** A TCP connection with nothing in flight for this long is closed (RFC 7766 6.2.3). */
  tcpIdleMs: number
  /** Unsent response bytes queued for one TCP connection; past it (a client that does not read), it is closed. */
  maxTcpWriteBuffer: number
}

export const DEFAULT_DNS_LIMITS: Readonly<DnsServerLimits> = {
  maxQueryBytes: 1232,
  udpPayload: 1232,
  maxInflightForwards: 256,
  forwardTimeoutMs: 2000,
  maxTcpConnections: 256,
  maxTcpPipeline: 32,
  tcpIdleMs: 10_000,
  maxTcpWriteBuffer: 256 * 1024
}

export interface DnsServerOptions {
  /** Addresses to listen on, UDP and TCP each. Port 0 picks a free port (the same for UDP and TCP). */
  listen: ReadonlyArray<{ host: string, port: number }>
  answer: DnsAnswerSource
  /** Resolvers for names outside Weft's zones: "ip", "ip:port", "[v6]:port". None: REFUSED. */
  upstreams?: readonly string[]
  log: MeshLogger
  signal?: AbortSignal
  limits?: Partial<DnsServerLimits>
  /**
   * Which clients are answered (their source address). Others get nothing: UDP queries are
   * dropped, TCP connections closed (counted as `denied`), so the server is no open resolver
   * and reflects nothing. Undefined: everyone.
   */
  allowClient?: (address: string) => boolean
}

export interface DnsStats {
  /** Messages received (UDP datagrams and TCP messages). */
  queries: number
  udp: number
  tcp: number
  /** Authoritative NOERROR answers with records. */
  answered: number
  /** Authoritative NOERROR answers without records (the name exists, not with that type). */
  nodata: number
  nxdomain: number
  /** Upstream answers relayed. */
  forwarded: number
  /** SERVFAIL: every upstream failed or timed out. */
  forwardFailed: number
  /** SERVFAIL: `maxInflightForwards` forwards were already waiting. */
  forwardBusy: number
  /** SERVFAIL: the answer source threw. */
  sourceErrors: number
  refused: number
  formerr: number
  notimp: number
  /** Not answered: shorter than a header, a response rather than a query, over `maxQueryBytes`. */
  dropped: number
  /** UDP responses sent with TC (too big; the client retries over TCP). */
  truncated: number
  tcpConnections: number
  tcpRejected: number
  /** Queries and connections from clients `allowClient` refused (not answered). */
  denied: number
  /** Gauge: forwards waiting for an upstream now. */
  inflightForwards: number
}

export interface DnsServer {
  addresses: () => Array<{ host: string, port: number, proto: 'udp' | 'tcp' }>
  close: () => Promise<void>
  /** A snapshot of the counters. */
  readonly stats: DnsStats
}

type Reply = (bytes: Buffer | undefined) => void

const emptyStats = (): DnsStats => ({
  queries: 0, udp: 0, tcp: 0, answered: 0, nodata: 0, nxdomain: 0, forwarded: 0, forwardFailed: 0, forwardBusy: 0, sourceErrors: 0,
  refused: 0, formerr: 0, notimp: 0, dropped: 0, truncated: 0, tcpConnections: 0, tcpRejected: 0, denied: 0, inflightForwards: 0
})

const TYPE_OF: Partial<Record<number, ReadonlyArray<DnsRecord['type']>>> = {
  [TYPE.A]: ['A'],
  [TYPE.AAAA]: ['AAAA'],
  [TYPE.SRV]: ['SRV'],
  [TYPE.TXT]: ['TXT'],
  [TYPE.ANY]: ['A', 'AAAA', 'SRV', 'TXT']
}
const WIRE_TYPE: Record<DnsRecord['type'], number> = { A: TYPE.A, AAAA: TYPE.AAAA, SRV: TYPE.SRV, TXT: TYPE.TXT }

/** Record data, computed once per record object (tables are immutable once derived). */
const rdataCache = new WeakMap<DnsRecord, Buffer>()
function rdataOf (r: DnsRecord): Buffer {
  let b = rdataCache.get(r)
  if (b === undefined) {
    const v = r.value
    if (r.type === 'A') b = ipv4Bytes(v as string)
    else if (r.type === 'AAAA') b = ipv6Bytes(v as string)
    else if (r.type === 'TXT') b = txtRdata(v as string)
    else {
      const s = v as { priority: number, weight: number, port: number, target: string }
      b = srvRdata(s.priority, s.weight, s.port, s.target)
    }
    rdataCache.set(r, b)
  }
  return b
}

const SOA_TIMERS = { refresh: 7200, retry: 1800, expire: 86400 }

class Server implements DnsServer {
  private readonly counters = emptyStats()
  private readonly udp: Array<{ socket: dgram.Socket, host: string, port: number }> = []
  private readonly tcp: Array<{ server: net.Server, host: string, port: number }> = []
  private readonly conns = new Set<net.Socket>()
  private readonly aborts = new Set<AbortController>()
  private upstreams: HostPort[]
  private preferred = 0
  private closing: Promise<void> | undefined
  private readonly limits: DnsServerLimits
  private readonly zoneWire = new Map<string, Buffer>()

  constructor (private readonly opts: DnsServerOptions) {
    this.limits = { ...DEFAULT_DNS_LIMITS, ...opts.limits }
    this.upstreams = (opts.upstreams ?? []).map((u) => parseHostPort(u))
  }

  get stats (): DnsStats { return { ...this.counters } }

  addresses (): Array<{ host: string, port: number, proto: 'udp' | 'tcp' }> {
    return [
      ...this.udp.map((u) => ({ host: u.host, port: u.port, proto: 'udp' as const })),
      ...this.tcp.map((t) => ({ host: t.host, port: t.port, proto: 'tcp' as const }))
    ]
  }

  async listen (): Promise<void> {
    for (const l of this.opts.listen) await this.listenOne(l.host, l.port)
    // A forward to ourselves would loop until maxInflightForwards; leave such upstreams out.
    const own = this.udp
    this.upstreams = this.upstreams.filter((u) => {
      const loop = own.some((o) => o.port === u.port && (o.host === u.host || ((o.host === '0.0.0.0' || o.host === '::') && isLoopback(u.host))))
      if (loop) this.opts.log.warn({ upstream: formatHostPort(u) }, 'DNS upstream is this server itself; ignored')
      return !loop
    })
  }

  private async listenOne (host: string, port: number): Promise<void> {
    const family = net.isIP(host)
    if (family === 0) throw new Error(`DNS listen address "${host}" is not an IP address`)
    for (let attempt = 0; ; attempt++) {
      const socket = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 })
      socket.on('error', (err) => { this.opts.log.warn({ err: err.message }, 'DNS UDP socket error') })
      try {
        await new Promise<void>((resolve, reject) => {
          socket.once('error', reject)
          socket.bind(port, host, () => { socket.off('error', reject); resolve() })
        })
      } catch (err) {
        socket.close()
        throw err
      }
      const udpPort = socket.address().port
      const server = net.createServer({ allowHalfOpen: true }, (c) => { this.onConnection(c) })
      server.maxConnections = this.limits.maxTcpConnections
      server.on('drop', () => { this.counters.tcpRejected++ })
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject)
          server.listen({ host, port: udpPort, ipv6Only: family === 6, exclusive: true }, () => { server.off('error', reject); resolve() })
        })
      } catch (err) {
        socket.close()
        // Port 0: the kernel's free UDP port may be taken for TCP; try another.
        if (port === 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < 10) continue
        throw err
      }
      server.on('error', (err) => { this.opts.log.warn({ err: err.message }, 'DNS TCP server error') })
      socket.on('message', (msg, rinfo) => { this.onDatagram(socket, msg, rinfo) })
      this.udp.push({ socket, host, port: udpPort })
      this.tcp.push({ server, host, port: udpPort })
      return
    }
  }

  // ---- transports ------------------------------------------------------------------------------

  private denied (address: string | undefined): boolean {
    const allow = this.opts.allowClient
    if (allow === undefined || (address !== undefined && allow(address))) return false
    this.counters.denied++
    return true
  }

  private onDatagram (socket: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.denied(rinfo.address)) return
    this.counters.udp++
    this.handle(msg, 'udp', (bytes) => {
      if (bytes === undefined || this.closing !== undefined) return
      socket.send(bytes, rinfo.port, rinfo.address, (err) => {
        if (err !== null) this.opts.log.debug({ err: err.message, to: rinfo.address }, 'DNS UDP send failed')
      })
    })
  }

  private onConnection (sock: net.Socket): void {
    if (this.denied(sock.remoteAddress)) {
      sock.destroy()
      return
    }
    if (this.closing !== undefined || this.conns.size >= this.limits.maxTcpConnections) {
      this.counters.tcpRejected++
      sock.destroy()
      return
    }
    this.counters.tcpConnections++
    this.conns.add(sock)
    sock.on('close', () => { this.conns.delete(sock) })
    sock.on('error', () => { sock.destroy() })
    sock.setNoDelay(true)
    sock.setTimeout(this.limits.tcpIdleMs, () => { if (pending === 0) sock.destroy() })
    let buf: Buffer = Buffer.alloc(0)
    let pending = 0
    let ended = false
    let paused = false
    const done = (): void => {
      pending--
      if (paused && pending < this.limits.maxTcpPipeline) {
        paused = false
        sock.resume()
        drain()
      }
      if (ended && pending === 0 && buf.length === 0 && !sock.destroyed) sock.end()
    }
    const drain = (): void => {
      while (buf.length >= 2 && !sock.destroyed) {
        if (pending >= this.limits.maxTcpPipeline) {
          paused = true
          sock.pause()
          return
        }
        const len = buf.readUInt16BE(0)
        if (len > this.limits.maxQueryBytes) {
          this.counters.tcp++
          this.counters.queries++
          this.counters.dropped++
          sock.destroy()
          return
        }
        if (buf.length < 2 + len) return
        const msg = buf.subarray(2, 2 + len)
        buf = buf.subarray(2 + len)
        pending++
        this.counters.tcp++
        let answered = false
        this.handle(msg, 'tcp', (bytes) => {
          if (answered) return
          answered = true
          if (bytes !== undefined && !sock.destroyed && sock.writable) {
            const frame = Buffer.allocUnsafe(2 + bytes.length)
            frame.writeUInt16BE(bytes.length, 0)
            bytes.copy(frame, 2)
            sock.write(frame)
            if (sock.writableLength > this.limits.maxTcpWriteBuffer) sock.destroy()
          }
          done()
        })
      }
      if (ended && pending === 0 && !sock.destroyed) {
        // Half-closed mid-message: nothing more can complete it.
        sock.end()
      }
    }
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      if (!paused) drain()
    })
    sock.on('end', () => {
      ended = true
      if (pending === 0) sock.end()
    })
  }

  // ---- one query -------------------------------------------------------------------------------

  private handle (msg: Buffer, proto: 'udp' | 'tcp', reply: Reply): void {
    const c = this.counters
    c.queries++
    if (msg.length > this.limits.maxQueryBytes) {
      c.dropped++
      reply(undefined)
      return
    }
    const parsed = parseQuery(msg)
    if (!parsed.ok) {
      if (parsed.reply === undefined) {
        c.dropped++
        reply(undefined)
        return
      }
      if (parsed.reply.rcode === RCODE.NOTIMP) c.notimp++
      else c.formerr++
      this.opts.log.debug({ reason: parsed.reason, proto }, 'DNS malformed query')
      reply(encodeResponse(parsed.reply, { rcode: parsed.reply.rcode, aa: false, ra: this.ra }, CLASSIC_UDP_BYTES).bytes)
      return
    }
    const q = parsed.query
    const maxBytes = proto === 'tcp'
      ? MAX_TCP_MESSAGE
      : q.edns !== undefined ? Math.min(Math.max(q.edns.payload, CLASSIC_UDP_BYTES), this.limits.udpPayload) : CLASSIC_UDP_BYTES
    const edns = q.edns !== undefined ? this.limits.udpPayload : undefined
    const send = (spec: ResponseSpec, to: ResponseTo = q): void => {
      const r = encodeResponse(to, { ...spec, ednsPayload: edns }, maxBytes)
      if (r.truncated) c.truncated++
      reply(r.bytes)
    }
    if (q.edns !== undefined && q.edns.version > 0) {
      // RFC 6891 6.1.3: only EDNS version 0; BADVERS, no question.
      send({ rcode: RCODE.BADVERS, aa: false, ra: this.ra }, { id: q.id, opcode: q.opcode, rd: q.rd, cd: q.cd })
      return
    }
    let zone: string | undefined
    try {
      zone = this.opts.answer.zones().find((z) => isInZone(q.name, z))
      if (zone !== undefined) {
        send(this.authoritative(q, zone))
        return
      }
    } catch (err) {
      // The answer source failed (a bug, or a state being rebuilt): say so rather than crash.
      this.opts.log.error({ err: (err as Error).message, name: q.name }, 'DNS answer source failed')
      c.sourceErrors++
      send({ rcode: RCODE.SERVFAIL, aa: false, ra: this.ra })
      return
    }
    if (this.upstreams.length === 0) {
      c.refused++
      send({ rcode: RCODE.REFUSED, aa: false, ra: false })
      return
    }
    if (c.inflightForwards >= this.limits.maxInflightForwards) {
      c.forwardBusy++
      send({ rcode: RCODE.SERVFAIL, aa: false, ra: true })
      return
    }
    c.inflightForwards++
    void this.forward(msg, q, proto).then((resp) => {
      if (resp === undefined) {
        c.forwardFailed++
        send({ rcode: RCODE.SERVFAIL, aa: false, ra: true })
        return
      }
      c.forwarded++
      const out = Buffer.from(resp)
      out.writeUInt16BE(q.id, 0)
      if (out.length > maxBytes) {
        // An upstream that ignored the client's size: the client must ask again over TCP.
        c.truncated++
        const h = headerOf(out)
        const t = encodeResponse(q, { rcode: h.rcode, aa: h.aa, ra: true, ednsPayload: edns }, CLASSIC_UDP_BYTES)
        t.bytes[2] = (t.bytes[2] as number) | 0x02
        reply(t.bytes)
        return
      }
      reply(out)
    }, (err: unknown) => {
      this.opts.log.error({ err: (err as Error).message }, 'DNS forward failed')
      c.forwardFailed++
      send({ rcode: RCODE.SERVFAIL, aa: false, ra: true })
    }).finally(() => { c.inflightForwards-- })
  }

  /** RA: recursion is available when there is an upstream to forward to. */
  private get ra (): boolean { return this.upstreams.length > 0 }

  private authoritative (q: Query, zone: string): ResponseSpec {
    const c = this.counters
    const src = this.opts.answer
    if (q.qclass !== CLASS.IN && q.qclass !== CLASS.ANY) {
      c.refused++
      return { rcode: RCODE.REFUSED, aa: false, ra: this.ra }
    }
    if (q.qtype === TYPE.AXFR || q.qtype === TYPE.IXFR) {
      // Zone transfers are not served: every node derives the zone from the log itself.
      c.refused++
      return { rcode: RCODE.REFUSED, aa: false, ra: this.ra }
    }
    const answers: WireRecord[] = []
    let nxdomain = false
    const types = TYPE_OF[q.qtype]
    if (types !== undefined) {
      for (const t of types) {
        const r = src.lookup(q.name, t)
        nxdomain = r.nxdomain
        for (const rec of r.records) answers.push({ type: WIRE_TYPE[rec.type], ttl: rec.ttl, rdata: rdataOf(rec) })
      }
    } else {
      nxdomain = src.lookup(q.name, 'A').nxdomain
    }
    const soa = (): WireRecord => ({ owner: this.wireOf(zone), type: TYPE.SOA, ttl: DNS_TTL, rdata: this.soaOf(zone) })
    if ((q.qtype === TYPE.SOA || q.qtype === TYPE.ANY) && q.name === zone) answers.push({ type: TYPE.SOA, ttl: DNS_TTL, rdata: this.soaOf(zone) })
    if (nxdomain) {
      c.nxdomain++
      return { rcode: RCODE.NXDOMAIN, aa: true, ra: this.ra, authority: [soa()] }
    }
    if (answers.length === 0) {
      c.nodata++
      // RFC 2308: the SOA in the authority section makes the negative answer cacheable (for DNS_TTL).
      return { rcode: RCODE.NOERROR, aa: true, ra: this.ra, authority: [soa()] }
    }
    c.answered++
    return { rcode: RCODE.NOERROR, aa: true, ra: this.ra, answers }
  }

  private wireOf (zone: string): Buffer {
    let w = this.zoneWire.get(zone)
    if (w === undefined) {
      w = nameToWire(zone)
      this.zoneWire.set(zone, w)
    }
    return w
  }

  private soaOf (zone: string): Buffer {
    return soaRdata({ mname: `ns.dns.${zone}`, rname: `hostmaster.${zone}`, serial: this.opts.answer.serial?.() ?? 1, ...SOA_TIMERS, minimum: DNS_TTL })
  }

  // ---- forwarding ------------------------------------------------------------------------------

  /**
   * Ask the upstreams in order, starting with the one that answered last, each for at most
   * `forwardTimeoutMs`. The first answer that is not SERVFAIL or REFUSED is relayed; if every
   * upstream says SERVFAIL or REFUSED, the last such answer is; if none answers, undefined.
   * A truncated answer to a TCP client is fetched again over TCP from the same upstream.
   */
  private async forward (msg: Buffer, q: Query, proto: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    let fallback: Buffer | undefined
    const n = this.upstreams.length
    const start = this.preferred % n
    for (let k = 0; k < n && this.closing === undefined; k++) {
      const i = (start + k) % n
      const up = this.upstreams[i] as HostPort
      const id = randomInt(0x10000)
      const query = Buffer.from(msg)
      query.writeUInt16BE(id, 0)
      const questionEnd = HEADER_BYTES + q.question.length
      let resp = await this.exchange(up, query, questionEnd, 'udp')
      if (resp !== undefined && proto === 'tcp' && headerOf(resp).tc) resp = await this.exchange(up, query, questionEnd, 'tcp') ?? resp
      if (resp === undefined) continue
      const rcode = headerOf(resp).rcode
      if (rcode === RCODE.SERVFAIL || rcode === RCODE.REFUSED) {
        fallback = resp
        continue
      }
      this.preferred = i
      return resp
    }
    return fallback
  }

  /** One query to one upstream: the reply with our id, QR set and our question, or undefined. */
  private async exchange (up: HostPort, query: Buffer, questionEnd: number, proto: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    const ac = new AbortController()
    this.aborts.add(ac)
    try {
      return await dnsExchange(up, query, { proto, timeoutMs: this.limits.forwardTimeoutMs, signal: ac.signal, accept: (b) => answersQuery(b, query, questionEnd) })
    } finally {
      this.aborts.delete(ac)
    }
  }

  // ---- shutdown --------------------------------------------------------------------------------

  async close (): Promise<void> {
    this.closing ??= (async () => {
      for (const a of [...this.aborts]) a.abort()
      for (const c of this.conns) c.destroy()
      await Promise.all([
        ...this.udp.map(async (u) => { const p = once(u.socket, 'close'); u.socket.close(); await p }),
        ...this.tcp.map(async (t) => { await new Promise<void>((resolve) => { t.server.close(() => { resolve() }) }) })
      ])
      this.opts.log.info({}, 'DNS server stopped')
    })()
    await this.closing
  }
}

function isLoopback (host: string): boolean {
  return host === '::1' || host.startsWith('127.')
}

/**
 * Start the DNS server. Resolves once every listen address is bound (UDP and TCP); a failed bind
 * closes what was opened and rejects. Aborting `signal` closes the server.
 */
export async function startDnsServer (opts: DnsServerOptions): Promise<DnsServer> {
  const s = new Server(opts)
  try {
    await s.listen()
  } catch (err) {
    await s.close()
    throw err
  }
  if (opts.signal !== undefined) {
    if (opts.signal.aborted) await s.close()
    else opts.signal.addEventListener('abort', () => { void s.close() }, { once: true })
  }
  opts.log.info({ listen: s.addresses().map((a) => `${a.proto}://${formatHostPort(a)}`), upstreams: (opts.upstreams ?? []).length }, 'DNS server listening')
  return s
}
