import { TopicValidatorResult, type GossipSub } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import { openEnvelope, type SignedEvent, type Verifier } from '../log/event.js'
import { LIMITS } from '../log/bodies.js'
import { isWeftError } from '../log/errors.js'
import type { ReplicaPort } from './replica-port.js'
import type { MeshLogger } from './mesh-logger.js'

export interface EventGossipStats {
  published: number
  accepted: number
  /** Duplicates, and events parked for a missing parent. */
  ignored: number
  rejected: number
  /** Ignored because the sending peer exceeded its rate; anti-entropy fetches them later. */
  rateLimited: number
}

/**
 * Why a gossiped message was accepted, ignored or rejected (for metrics). The keys are
 * `accepted`, `ignored/<reason>` and `rejected/<reason>`, where a reason is one of a fixed set
 * or a WeftError code: a bounded set whatever peers send.
 */
export type GossipOutcomes = Map<string, number>

/** Gossiped events accepted for validation per peer: a sustained rate and a burst. */
export const GOSSIP_RATE = { perSecond: 2_000, burst: 4_000 } as const

export interface EventGossipOptions {
  pubsub: GossipSub
  topic: string
  replica: ReplicaPort
  verifier: Verifier
  log: MeshLogger
  /** Called when an event from `peer` waits for parents we lack: pull them from it. */
  onMissingParents: (peer: PeerId) => void
  /** Called with every event this node accepted from gossip (for propagation measurements). */
  onAccepted?: (event: SignedEvent, from: PeerId) => void
  now: () => number
}

/**
 * Push replication: every event this node appends is published on the network's topic, and
 * every message received is validated before gossip forwards it. A bad signature or a
 * malformed event is Rejected (the sender's peer score pays for it); a duplicate, or an event
 * whose parents have not arrived, is Ignored: not forwarded, and the parents are pulled by
 * anti-entropy. An accepted event is stored before it is forwarded.
 */
export class EventGossip {
  readonly stats: EventGossipStats = { published: 0, accepted: 0, ignored: 0, rejected: 0, rateLimited: 0 }
  readonly outcomes: GossipOutcomes = new Map()
  private readonly buckets = new Map<string, { tokens: number, at: number }>()

  constructor (private readonly opts: EventGossipOptions) {}

  start (): void {
    const { pubsub, topic } = this.opts
    pubsub.topicValidators.set(topic, async (peer, msg) => await this.validate(peer, msg.data))
    pubsub.subscribe(topic)
  }

  stop (): void {
    this.opts.pubsub.topicValidators.delete(this.opts.topic)
    try { this.opts.pubsub.unsubscribe(this.opts.topic) } catch {}
  }

  async publish (events: readonly SignedEvent[]): Promise<void> {
    for (const e of events) {
      try {
        await this.opts.pubsub.publish(this.opts.topic, e.envelope)
        this.stats.published++
      } catch (err) {
        // Anti-entropy delivers it later; a failed publish loses nothing.
        this.opts.log.debug({ err: (err as Error).message, event: e.idHex }, 'publish failed')
      }
    }
  }

  /**
   * A token bucket per peer: validation costs a signature check and a synced write, so one peer
   * must not be able to spend all of it. Over the rate, messages are Ignored without penalty (an
   * honest burst is not an attack) and the events arrive later by anti-entropy.
   */
  private admit (peer: string): boolean {
    const now = this.opts.now()
    const b = this.buckets.get(peer) ?? { tokens: GOSSIP_RATE.burst, at: now }
    b.tokens = Math.min(GOSSIP_RATE.burst, b.tokens + ((now - b.at) / 1000) * GOSSIP_RATE.perSecond)
    b.at = now
    this.buckets.set(peer, b)
    if (this.buckets.size > 4096) this.buckets.delete(this.buckets.keys().next().value as string)
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }

  private count (outcome: string): void {
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1)
  }

  private async validate (peer: PeerId, data: Uint8Array): Promise<TopicValidatorResult> {
    const { replica, log } = this.opts
    if (!this.admit(peer.toString())) {
      this.stats.rateLimited++
      this.count('ignored/rate_limited')
      return TopicValidatorResult.Ignore
    }
    if (data.byteLength > LIMITS.maxEventBytes) {
      this.stats.rejected++
      this.count('rejected/too_large')
      log.warn({ peer: peer.toString(), bytes: data.byteLength, limit: LIMITS.maxEventBytes }, 'rejected gossip message: larger than an event may be')
      return TopicValidatorResult.Reject
    }
    let event: SignedEvent
    try {
      event = openEnvelope(data, replica.net, this.opts.verifier)
    } catch (err) {
      this.stats.rejected++
      this.count(`rejected/${isWeftError(err) ? err.code : 'ERR_BAD_ENVELOPE'}`)
      log.warn({ peer: peer.toString(), code: isWeftError(err) ? err.code : 'ERR_BAD_ENVELOPE', reason: (err as Error).message }, 'rejected gossip message')
      return TopicValidatorResult.Reject
    }
    if (replica.has(event.idHex)) {
      this.stats.ignored++
      this.count('ignored/duplicate')
      return TopicValidatorResult.Ignore
    }
    try {
      const res = await replica.ingest([event])
      if (res.added.some((e) => e.idHex === event.idHex)) {
        this.stats.accepted++
        this.count('accepted')
        this.opts.onAccepted?.(event, peer)
        return TopicValidatorResult.Accept
      }
      if (res.rejected.length > 0) {
        this.stats.rejected++
        const r = res.rejected[0]
        this.count(`rejected/${r?.code ?? 'ERR_REJECTED'}`)
        log.warn({ peer: peer.toString(), event: event.idHex, code: r?.code, reason: r?.message }, 'rejected gossip event')
        return TopicValidatorResult.Reject
      }
      this.stats.ignored++
      this.count(res.parked > 0 ? 'ignored/parked' : 'ignored/duplicate')
      if (res.parked > 0) this.opts.onMissingParents(peer)
      return TopicValidatorResult.Ignore
    } catch (err) {
      // Our own storage failed: not the sender's fault, so no penalty.
      this.count('ignored/store_failed')
      log.error({ err: (err as Error).message }, 'could not store a gossiped event')
      return TopicValidatorResult.Ignore
    }
  }
}
