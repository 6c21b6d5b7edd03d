import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import { decodeFrontier, encodeFrontier } from '../crdt/frontier.js'
import { equalBytes, fromHex } from '../log/bytes.js'
import { WeftError } from '../log/errors.js'
import type { SignedEvent } from '../log/event.js'
import type { ReplicaPort } from './replica-port.js'
import type { MeshLogger } from './mesh-logger.js'
import { decodeSyncMessage, encodeSyncMessage, SYNC_LIMITS, takeBatch, type SyncMessage } from './sync-messages.js'

/** The part of a libp2p node the protocol needs. */
export interface ProtocolHost {
  handle: (protocol: string, handler: (stream: Stream, connection: Connection) => void | Promise<void>, opts?: { maxInboundStreams?: number, maxOutboundStreams?: number }) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  dialProtocol: (peer: PeerId, protocol: string, opts?: { signal?: AbortSignal }) => Promise<Stream>
}

export interface SyncReport {
  peer: string
  roundTrips: number
  bytesSent: number
  bytesReceived: number
  /** Events we received and stored. */
  pulled: number
  /** Events we sent. */
  pushed: number
}

/** Peers whose last completed session is remembered (for `weft peers`). */
const MAX_LAST_SESSIONS = 4_096

export interface AntiEntropyStats { sessions: number, served: number, failures: number, eventsPulled: number, lastRoundAt?: number }

export interface AntiEntropyOptions {
  host: ProtocolHost
  protocol: string
  replica: ReplicaPort
  log: MeshLogger
  /** One session's deadline. */
  timeoutMs?: number
  now: () => number
}

/**
 * Pull-based repair. The initiator sends its frontier (and ids it waits for); the responder
 * answers with its own frontier and a bounded batch of what the initiator lacks; the initiator
 * stores that and pushes a batch of what the responder lacks. Peers in sync exchange two
 * frontiers and an empty push: one round trip. Rounds repeat while either side had more, so a
 * node that joins late streams every feed from its start, one batch per round trip.
 */
export class AntiEntropy {
  readonly stats: AntiEntropyStats = { sessions: 0, served: 0, failures: 0, eventsPulled: 0 }
  private readonly active = new Map<string, Promise<SyncReport | undefined>>()
  /** When the last session we started with each peer completed (at most MAX_LAST_SESSIONS peers, oldest dropped). */
  private readonly lastSession = new Map<string, number>()

  constructor (private readonly opts: AntiEntropyOptions) {}

  async start (): Promise<void> {
    await this.opts.host.handle(this.opts.protocol, (stream, connection) => this.serve(stream, connection), { maxInboundStreams: 4, maxOutboundStreams: 4 })
  }

  async stop (): Promise<void> {
    await this.opts.host.unhandle(this.opts.protocol)
  }

  /**
   * Sync with one peer. Concurrent calls for the same peer share one session; a failure is
   * logged and reported as undefined (the next trigger tries again).
   */
  async syncWith (peer: PeerId, signal?: AbortSignal): Promise<SyncReport | undefined> {
    const key = peer.toString()
    const running = this.active.get(key)
    if (running !== undefined) return await running
    const p = this.session(peer, signal).then((r) => {
      this.lastSession.delete(key)
      this.lastSession.set(key, this.opts.now())
      if (this.lastSession.size > MAX_LAST_SESSIONS) this.lastSession.delete(this.lastSession.keys().next().value as string)
      return r
    }, (err: unknown) => {
      this.stats.failures++
      this.opts.log.debug({ peer: key, err: (err as Error).message }, 'sync session failed')
      return undefined
    }).finally(() => this.active.delete(key))
    this.active.set(key, p)
    return await p
  }

  /** When a session we started with this peer last completed (opts.now() time), if one did. */
  lastSessionAt (peerId: string): number | undefined {
    return this.lastSession.get(peerId)
  }

  private deadline (signal?: AbortSignal): AbortSignal {
    const t = AbortSignal.timeout(this.opts.timeoutMs ?? 30_000)
    return signal === undefined ? t : AbortSignal.any([t, signal])
  }

  private async session (peer: PeerId, outer?: AbortSignal): Promise<SyncReport> {
    const { replica, log } = this.opts
    const signal = this.deadline(outer)
    const stream = await this.opts.host.dialProtocol(peer, this.opts.protocol, { signal })
    const lp = lpStream(stream, { maxDataLength: SYNC_LIMITS.frameBytes })
    const report: SyncReport = { peer: peer.toString(), roundTrips: 0, bytesSent: 0, bytesReceived: 0, pulled: 0, pushed: 0 }
    const send = async (m: SyncMessage): Promise<void> => {
      const bytes = encodeSyncMessage(m)
      report.bytesSent += bytes.byteLength
      await lp.write(bytes, { signal })
    }
    try {
      this.stats.sessions++
      for (let round = 0; round < SYNC_LIMITS.rounds; round++) {
        const mine = encodeFrontier(replica.frontier())
        await send({ kind: 'hello', frontier: mine, wants: replica.wantedParents(SYNC_LIMITS.wants).map(fromHex) })
        const reply = await readMessage(lp, signal, (n) => { report.bytesReceived += n })
        if (reply.kind !== 'reply') throw new WeftError('ERR_SYNC_PROTOCOL', `expected a Reply, got a ${reply.kind}`)
        report.roundTrips++
        // An empty frontier in a Reply means "the same as yours": in-sync peers send theirs once.
        const remote = decodeFrontier(reply.frontier.byteLength === 0 ? mine : reply.frontier)
        const res = await replica.ingest(reply.events)
        report.pulled += res.added.length
        this.stats.eventsPulled += res.added.length
        if (res.rejected.length > 0) {
          log.warn({ peer: report.peer, rejected: res.rejected.length, first: res.rejected[0]?.message }, 'peer sent events that fail validation')
        }
        const missing = replica.missingFor(remote, SYNC_LIMITS.batchEvents)
        const { batch, more } = takeBatch(missing.map((e) => e.envelope))
        await send({ kind: 'push', events: batch, more: more || missing.length >= SYNC_LIMITS.batchEvents })
        report.pushed += batch.length
        const waiting = res.added.length > 0 && replica.wantedParents(1).length > 0
        if (!reply.more && !more && missing.length < SYNC_LIMITS.batchEvents && !waiting) break
      }
      this.stats.lastRoundAt = this.opts.now()
      return report
    } finally {
      await stream.close({ signal: AbortSignal.timeout(2_000) }).catch(() => { stream.abort(new Error('sync session closed')) })
    }
  }

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const { replica, log } = this.opts
    const peer = connection.remotePeer.toString()
    const signal = this.deadline()
    const lp = lpStream(stream, { maxDataLength: SYNC_LIMITS.frameBytes })
    this.stats.served++
    try {
      while (true) {
        let msg: SyncMessage
        try {
          msg = await readMessage(lp, signal, () => {})
        } catch (err) {
          if (isEndOfStream(err)) break
          throw err
        }
        if (msg.kind === 'hello') {
          const remote = decodeFrontier(msg.frontier)
          const wanted = msg.wants.length > 0 ? replica.getWithAncestors(msg.wants.map(toHexId), 16, SYNC_LIMITS.batchEvents) : []
          const missing = replica.missingFor(remote, SYNC_LIMITS.batchEvents)
          const events = dedupe([...wanted, ...missing])
          const { batch, more } = takeBatch(events.map((e) => e.envelope))
          const mine = encodeFrontier(replica.frontier())
          await lp.write(encodeSyncMessage({
            kind: 'reply',
            frontier: equalBytes(mine, msg.frontier) ? new Uint8Array(0) : mine,
            events: batch,
            more: more || missing.length >= SYNC_LIMITS.batchEvents
          }), { signal })
        } else if (msg.kind === 'push') {
          const res = await replica.ingest(msg.events)
          this.stats.eventsPulled += res.added.length
          if (res.rejected.length > 0) {
            log.warn({ peer, rejected: res.rejected.length, first: res.rejected[0]?.message }, 'peer pushed events that fail validation')
          }
        } else {
          throw new WeftError('ERR_SYNC_PROTOCOL', 'a responder never receives a Reply')
        }
      }
      await stream.close({ signal: AbortSignal.timeout(2_000) }).catch(() => {})
    } catch (err) {
      log.debug({ peer, err: (err as Error).message }, 'sync request failed')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }
}

async function readMessage (lp: LengthPrefixedStream<Stream>, signal: AbortSignal, count: (n: number) => void): Promise<SyncMessage> {
  const frame = await lp.read({ signal })
  count(frame.byteLength)
  return decodeSyncMessage(frame.subarray())
}

function isEndOfStream (err: unknown): boolean {
  return err instanceof Error && (err.name === 'UnexpectedEOFError' || /EOF|closed/i.test(err.message)) && !(err instanceof WeftError)
}

function toHexId (b: Uint8Array): string {
  return Buffer.from(b).toString('hex')
}

function dedupe (events: SignedEvent[]): SignedEvent[] {
  const seen = new Set<string>()
  return events.filter((e) => (seen.has(e.idHex) ? false : (seen.add(e.idHex), true)))
}
