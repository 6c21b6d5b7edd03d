import dgram from 'node:dgram'
import net from 'node:net'
import { HEADER_BYTES, headerOf, sameQuestion } from './dns-wire.js'

export interface HostPort { host: string, port: number, family: 4 | 6 }

/** "ip", "ip:port", "[v6]:port" or a bare IPv6 address → host and port (`defaultPort` when absent). */
export function parseHostPort (text: string, defaultPort = 53): HostPort {
  const s = text.trim()
  let host = s
  let port = defaultPort
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(s)
  if (bracket !== null) {
    host = bracket[1] as string
    if (bracket[2] !== undefined) port = Number(bracket[2])
  } else if (net.isIPv6(s)) {
    host = s
  } else {
    const i = s.lastIndexOf(':')
    if (i >= 0) {
      host = s.slice(0, i)
      if (!/^\d{1,5}$/.test(s.slice(i + 1))) throw new Error(`"${text}": the port must be a number`)
      port = Number(s.slice(i + 1))
    }
  }
  const family = net.isIP(host)
  if (family === 0) throw new Error(`"${text}": not an IP address (expected ip, ip:port or [ipv6]:port)`)
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`"${text}": port out of range 1-65535`)
  return { host, port, family: family as 4 | 6 }
}

/** `host:port`, with brackets around an IPv6 host. */
export function formatHostPort (h: { host: string, port: number }): string {
  return `${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`
}

/**
 * Whether `resp` answers `query`: same id, QR set, and the same question (ASCII case ignored);
 * or, for an error without a question section (FORMERR and the like), same id and QR.
 */
export function answersQuery (resp: Buffer, query: Buffer, questionEnd: number): boolean {
  if (resp.length < HEADER_BYTES || query.length < HEADER_BYTES) return false
  const h = headerOf(resp)
  if (h.id !== query.readUInt16BE(0) || !h.qr) return false
  if (h.qdcount === 0) return h.rcode !== 0
  return sameQuestion(resp, query.subarray(HEADER_BYTES, questionEnd))
}

export interface ExchangeOptions {
  proto: 'udp' | 'tcp'
  timeoutMs: number
  signal?: AbortSignal
  /** Which reply to take; the others are ignored. Default: any reply with the query's id and QR set. */
  accept?: (resp: Buffer) => boolean
}

/**
 * Send one query, return the first acceptable reply, or undefined after a timeout, an error or
 * an abort. UDP uses a fresh connected socket (a random source port, and the kernel drops
 * datagrams from anyone but `to`); TCP a fresh connection with a 2-byte length prefix.
 */
export async function dnsExchange (to: HostPort, query: Buffer, opts: ExchangeOptions): Promise<Buffer | undefined> {
  const id = query.readUInt16BE(0)
  const accept = opts.accept ?? ((b: Buffer) => b.length >= HEADER_BYTES && b.readUInt16BE(0) === id && ((b[2] as number) & 0x80) !== 0)
  if (opts.signal?.aborted === true) return undefined
  return await new Promise<Buffer | undefined>((resolve) => {
    let finished = false
    let cleanup = (): void => {}
    const onAbort = (): void => { finish(undefined) }
    const timer = setTimeout(onAbort, opts.timeoutMs)
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    function finish (b: Buffer | undefined): void {
      if (finished) return
      finished = true
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onAbort)
      cleanup()
      resolve(b)
    }
    if (opts.proto === 'udp') {
      const s = dgram.createSocket(to.family === 6 ? 'udp6' : 'udp4')
      cleanup = () => { try { s.close() } catch { /* already closed */ } }
      s.on('error', () => { finish(undefined) })
      s.on('message', (m) => { if (accept(m)) finish(m) })
      s.connect(to.port, to.host, () => {
        if (!finished) s.send(query, (err) => { if (err !== null) finish(undefined) })
      })
    } else {
      const s = net.connect({ host: to.host, port: to.port })
      cleanup = () => { s.destroy() }
      let buf: Buffer = Buffer.alloc(0)
      s.on('error', () => { finish(undefined) })
      s.on('close', () => { finish(undefined) })
      s.on('data', (chunk: Buffer) => {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const m = Buffer.from(buf.subarray(2, 2 + buf.readUInt16BE(0)))
          buf = buf.subarray(2 + m.length)
          if (accept(m)) {
            finish(m)
            return
          }
        }
      })
      const frame = Buffer.allocUnsafe(2 + query.length)
      frame.writeUInt16BE(query.length, 0)
      query.copy(frame, 2)
      s.write(frame)
    }
  })
}
