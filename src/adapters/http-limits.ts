import type { Server, ServerOptions } from 'node:http'
import type { Socket } from 'node:net'

/**
 * The HTTP API's resource bounds, in one place so docs/api.md can quote them. The API listens on
 * loopback or a unix socket, but any local process (or a misbehaving client) can still open
 * connections and send headers one byte a second; none of that may hold the daemon's memory or
 * lock out the operator's own `weft status`.
 */
export const API_LIMITS = {
  /** Open connections at most; past it the oldest connection with no request in progress goes. */
  maxConnections: 128,
  /** A request's headers must arrive within this (slowloris). */
  headersTimeoutMs: 10_000,
  /** The whole request, body included, must arrive within this. */
  requestTimeoutMs: 30_000,
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: 5_000,
  /** A connection with no traffic at all in either direction is closed after this. */
  socketIdleMs: 60_000,
  /** How often Node checks the two timeouts above (its default, 30 s, let slow headers live ≥ 40 s). */
  checkIntervalMs: 1_000,
  /** Request line and headers, bytes. */
  maxHeaderBytes: 16 * 1024,
  /** Request bodies buffered at once across all connections, bytes (each is ≤ MAX_BODY_BYTES). */
  bodyBudgetBytes: 16 * 1024 * 1024
} as const

/** Options for node:http's createServer that enforce the timeouts and header size. */
export function serverLimits (): ServerOptions {
  return {
    headersTimeout: API_LIMITS.headersTimeoutMs,
    requestTimeout: API_LIMITS.requestTimeoutMs,
    keepAliveTimeout: API_LIMITS.keepAliveTimeoutMs,
    connectionsCheckingInterval: API_LIMITS.checkIntervalMs,
    maxHeaderSize: API_LIMITS.maxHeaderBytes
  }
}

/**
 * Caps open connections. `server.maxConnections` alone would refuse the operator's request
 * while slow clients hold every slot; instead, at the cap, the oldest connection that has no
 * request in progress (still sending headers, or idle between requests) is closed to make room.
 * Only when every connection is serving a request is the new one refused.
 */
export function capConnections (server: Server, max: number = API_LIMITS.maxConnections): { open: () => number } {
  /** Insertion order is age order: the first idle one found is the oldest. */
  const sockets = new Map<Socket, { busy: number }>()
  server.on('connection', (socket: Socket) => {
    if (sockets.size >= max) {
      let victim: Socket | undefined
      for (const [s, st] of sockets) if (st.busy === 0) { victim = s; break }
      if (victim === undefined) { socket.destroy(); return }
      sockets.delete(victim)
      victim.destroy()
    }
    const st = { busy: 0 }
    sockets.set(socket, st)
    // Silence while a request is being handled (a long POST /events) is the server's, not the client's.
    socket.setTimeout(API_LIMITS.socketIdleMs, () => { if (st.busy === 0) socket.destroy() })
    socket.once('close', () => { sockets.delete(socket) })
  })
  server.on('request', (req, res) => {
    const st = sockets.get(req.socket)
    if (st === undefined) return
    st.busy++
    res.once('close', () => { st.busy-- })
  })
  return { open: () => sockets.size }
}

/** A budget of bytes shared by every request body being read. */
export class BodyBudget {
  private used = 0
  get bytes (): number { return this.used }
  constructor (readonly limit: number = API_LIMITS.bodyBudgetBytes) {}

  /** Take `n` bytes, or return false when that would go over the budget. */
  take (n: number): boolean {
    if (this.used + n > this.limit) return false
    this.used += n
    return true
  }

  give (n: number): void {
    this.used = Math.max(0, this.used - n)
  }
}
