import type { Connection } from '@libp2p/interface'
import { byteStream } from '@libp2p/utils'
import type { MeshLogger } from './mesh-logger.js'

/**
 * Round trips and liveness of the connections presence does not cover, in place of libp2p's
 * connection monitor (which opened a ping stream on every connection every 30 s: half of an
 * idle node's streams). A member's presence link measures the connection it rides from its
 * heartbeats (presence.ts); the others (a second path to a member, a relayed connection, plain
 * connections to public DHT and relay nodes) are pinged once soon after they open, so path
 * choice has a round trip for each, and again every `everyMs`. A ping that fails closes the
 * connection, as the connection monitor did.
 */
export interface ConnectionProbeHost {
  getConnections: () => Connection[]
  addEventListener: (type: 'connection:open', fn: (evt: CustomEvent<Connection>) => void) => void
  removeEventListener: (type: 'connection:open', fn: (evt: CustomEvent<Connection>) => void) => void
}

export interface ConnectionProbeOptions {
  host: ConnectionProbeHost
  /** Whether presence measures this connection (then it is not pinged). */
  measured: (conn: Connection) => boolean
  /** How long after a connection opens it is pinged (presence attaches in the meantime). */
  firstAfterMs?: number
  /** How often unmeasured connections are pinged again. */
  everyMs?: number
  /** How long a ping may take before its connection counts as dead (default 10 s). */
  timeoutMs?: number
  log: MeshLogger
}

const PING_PROTOCOL = '/ipfs/ping/1.0.0'
const PING_BYTES = 32
const PING_TIMEOUT_MS = 10_000
/** Pings in flight at once (a node with many public connections pings them a few at a time). */
const MAX_IN_FLIGHT = 8

export class ConnectionProbe {
  private timer: NodeJS.Timeout | undefined
  private readonly first = new Set<NodeJS.Timeout>()
  private inFlight = 0
  private readonly controller = new AbortController()
  private readonly onOpen = (evt: CustomEvent<Connection>): void => {
    const t = setTimeout(() => {
      this.first.delete(t)
      const c = evt.detail
      if (c.status === 'open' && c.rtt === undefined && !this.opts.measured(c)) void this.probe(c)
    }, this.opts.firstAfterMs ?? 2_000)
    t.unref()
    this.first.add(t)
  }

  constructor (private readonly opts: ConnectionProbeOptions) {}

  start (): void {
    this.opts.host.addEventListener('connection:open', this.onOpen)
    this.timer = setInterval(() => { this.round() }, this.opts.everyMs ?? 5 * 60_000)
    this.timer.unref()
  }

  stop (): void {
    this.opts.host.removeEventListener('connection:open', this.onOpen)
    if (this.timer !== undefined) clearInterval(this.timer)
    for (const t of this.first) clearTimeout(t)
    this.first.clear()
    this.controller.abort()
  }

  private round (): void {
    for (const c of this.opts.host.getConnections()) {
      if (c.status === 'open' && !this.opts.measured(c)) void this.probe(c)
    }
  }

  /** One ping on this connection: its round trip, or the connection closed. */
  async probe (conn: Connection): Promise<number | undefined> {
    if (this.inFlight >= MAX_IN_FLIGHT || this.controller.signal.aborted) return undefined
    this.inFlight++
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.opts.timeoutMs ?? PING_TIMEOUT_MS)])
    const opened = performance.now()
    try {
      const stream = await conn.newStream(PING_PROTOCOL, { signal, runOnLimitedConnection: true }).catch((err: Error) => {
        // A peer without the ping protocol answered the negotiation (two round trips): alive.
        if (err.name === 'UnsupportedProtocolError') return (performance.now() - opened) / 2
        throw err
      })
      if (typeof stream === 'number') {
        conn.rtt = Math.round(stream * 100) / 100
        return conn.rtt
      }
      try {
        const bs = byteStream(stream)
        const start = performance.now()
        const data = crypto.getRandomValues(new Uint8Array(PING_BYTES))
        const [, back] = await Promise.all([bs.write(data, { signal }), bs.read({ bytes: PING_BYTES, signal })])
        if (back === null || !back.subarray().every((b, i) => b === data[i])) throw new Error('the ping came back different')
        conn.rtt = Math.round((performance.now() - start) * 100) / 100
        await stream.close({ signal })
      } catch (err) {
        stream.abort(err as Error)
        throw err
      }
      return conn.rtt
    } catch (err) {
      if (this.controller.signal.aborted) return undefined
      this.opts.log.debug({ peer: conn.remotePeer.toString(), err: (err as Error).message }, 'connection ping failed: closing it')
      conn.abort(err as Error)
      return undefined
    } finally {
      this.inFlight--
    }
  }
}
