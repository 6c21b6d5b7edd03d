import { TopicValidatorResult, type GossipSub } from '@libp2p/gossipsub'
import { decode, encode } from 'cborg'
import { authorName } from '../log/author.js'
import { concatBytes, toHex, utf8 } from '../log/bytes.js'
import type { Signer, Verifier } from '../log/event.js'
import type { MeshLogger } from './mesh-logger.js'

/**
 * Liveness, kept out of the log: the log says who is a member, presence says who is up. Each
 * node publishes a small signed beacon every `intervalMs` on the network's presence topic; a
 * member heard within `3 × intervalMs` is online. Beacons are signed by the node key, so one
 * node cannot report another as up; they carry the sender's clock only as a replay guard.
 */
export interface PresenceEntry {
  author: string
  peerId: string
  /** Local receipt time (ms) of the latest beacon. */
  lastSeen: number
  /** The sender's libp2p addresses. */
  addrs: string[]
}

export const PRESENCE_LIMITS = { beaconBytes: 4096, addrs: 16, clockSkewMs: 5 * 60_000 } as const

const DOMAIN = utf8.encode('weft/presence/v1\0')

export interface PresenceOptions {
  pubsub: GossipSub
  topic: string
  net: Uint8Array
  signer: Signer
  verifier: Verifier
  intervalMs: number
  now: () => number
  addrs: () => string[]
  log: MeshLogger
}

export class Presence {
  private readonly seen = new Map<string, PresenceEntry>()
  private readonly lastStamp = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly opts: PresenceOptions) {}

  start (): void {
    const { pubsub, topic } = this.opts
    pubsub.topicValidators.set(topic, (_peer, msg) => this.receive(msg.data))
    pubsub.subscribe(topic)
    this.timer = setInterval(() => { void this.beacon() }, this.opts.intervalMs)
    this.timer.unref()
    void this.beacon()
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.opts.pubsub.topicValidators.delete(this.opts.topic)
    try { this.opts.pubsub.unsubscribe(this.opts.topic) } catch {}
  }

  /** Publish a beacon now (also called when a peer connects, so it learns of us at once). */
  async beacon (): Promise<void> {
    const { signer, now } = this.opts
    const stamp = now()
    const addrs = this.opts.addrs().slice(0, PRESENCE_LIMITS.addrs)
    const payload = encode([signer.publicKey, stamp, addrs])
    const sig = signer.sign(concatBytes(DOMAIN, this.opts.net, payload))
    try {
      await this.opts.pubsub.publish(this.opts.topic, encode([payload, sig]))
    } catch (err) {
      this.opts.log.debug({ err: (err as Error).message }, 'presence beacon not sent')
    }
  }

  private receive (data: Uint8Array): TopicValidatorResult {
    if (data.byteLength > PRESENCE_LIMITS.beaconBytes) return TopicValidatorResult.Reject
    try {
      const outer = decode(data) as unknown
      if (!Array.isArray(outer) || outer.length !== 2 || !(outer[0] instanceof Uint8Array) || !(outer[1] instanceof Uint8Array)) return TopicValidatorResult.Reject
      const [payload, sig] = outer as [Uint8Array, Uint8Array]
      const inner = decode(payload) as unknown
      if (!Array.isArray(inner) || inner.length !== 3) return TopicValidatorResult.Reject
      const [key, stamp, addrs] = inner as [unknown, unknown, unknown]
      if (!(key instanceof Uint8Array) || key.byteLength !== 32 || !Number.isSafeInteger(stamp) ||
          !Array.isArray(addrs) || addrs.length > PRESENCE_LIMITS.addrs || !addrs.every((a) => typeof a === 'string' && a.length <= 256)) {
        return TopicValidatorResult.Reject
      }
      if (!this.opts.verifier.verify(key, concatBytes(DOMAIN, this.opts.net, payload), sig)) return TopicValidatorResult.Reject
      const author = toHex(key)
      const now = this.opts.now()
      // An old beacon replayed, or a clock far off: drop it without penalty.
      if (Math.abs((stamp as number) - now) > PRESENCE_LIMITS.clockSkewMs) return TopicValidatorResult.Ignore
      if ((this.lastStamp.get(author) ?? -1) >= (stamp as number)) return TopicValidatorResult.Ignore
      this.lastStamp.set(author, stamp as number)
      this.seen.set(author, { author, peerId: authorName(key), lastSeen: now, addrs: addrs as string[] })
      return TopicValidatorResult.Accept
    } catch {
      return TopicValidatorResult.Reject
    }
  }

  isOnline (author: string): boolean {
    const e = this.seen.get(author)
    return e !== undefined && this.opts.now() - e.lastSeen <= 3 * this.opts.intervalMs
  }

  entries (): PresenceEntry[] {
    return [...this.seen.values()]
  }

  onlineCount (): number {
    let n = 0
    for (const a of this.seen.keys()) if (this.isOnline(a)) n++
    return n
  }
}
