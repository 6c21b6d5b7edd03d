import type { PeerId, Stream } from '@libp2p/interface'
import { encodeFrames } from './packet-frames.js'
import type { MeshLogger } from './mesh-logger.js'

export type DropReason = 'no_route' | 'queue_full' | 'no_connection' | 'spoofed' | 'malformed' | 'device_full'

export interface LinkCounters { txPackets: number, txBytes: number, rxPackets: number, rxBytes: number }

export const LINK_LIMITS = {
  /** Packets waiting for one peer's stream; beyond this they are dropped, as a full NIC queue does. */
  queuePackets: 1024,
  /** 32 segments of 64 KiB when the device offloads segmentation. */
  queueBytes: 2 * 1024 * 1024,
  /** Bytes of frames in one write. */
  batchBytes: 64 * 1024,
  /** After a failed dial, packets to that peer are dropped at once for this long (fail fast). */
  retryMs: 1_000
} as const

export interface PeerLinkOptions {
  dial: (peer: PeerId, signal: AbortSignal) => Promise<Stream>
  peer: PeerId
  counters: LinkCounters
  drop: (reason: DropReason, n?: number) => void
  now: () => number
  log: MeshLogger
}

/**
 * Packets to one peer over ONE long-lived stream: packets queue while the stream opens, and
 * every packet queued in one turn of the event loop leaves in one write. The queue is bounded;
 * when the stream reports back-pressure we wait for its 'drain' event (the `onDrain()` promise
 * does not re-arm in libp2p v3) and drop what overflows meanwhile. A closed stream is reopened
 * on the next packet; a failed dial makes packets fail fast for `retryMs`.
 */
export class PeerLink {
  private queue: Uint8Array[] = []
  private queuedBytes = 0
  private stream: Stream | undefined
  private opening = false
  private failedAt = Number.NEGATIVE_INFINITY
  private waitingDrain = false
  private scheduled = false
  private closed = false

  constructor (private readonly opts: PeerLinkOptions) {}

  get connected (): boolean { return this.stream !== undefined }

  send (pkt: Uint8Array): void {
    if (this.closed) return
    if (this.stream === undefined && !this.opening && this.opts.now() - this.failedAt < LINK_LIMITS.retryMs) {
      this.opts.drop('no_connection')
      return
    }
    if (this.queue.length >= LINK_LIMITS.queuePackets || this.queuedBytes + pkt.byteLength > LINK_LIMITS.queueBytes) {
      this.opts.drop('queue_full')
      return
    }
    this.queue.push(pkt)
    this.queuedBytes += pkt.byteLength
    if (this.stream === undefined) void this.open()
    else this.schedule()
  }

  private schedule (): void {
    if (this.scheduled || this.waitingDrain || this.stream === undefined) return
    this.scheduled = true
    setImmediate(() => { this.scheduled = false; this.flush() })
  }

  private flush (): void {
    const stream = this.stream
    while (stream !== undefined && this.queue.length > 0 && !this.waitingDrain) {
      let bytes = 0
      let n = 0
      while (n < this.queue.length && (n === 0 || bytes + 4 + (this.queue[n] as Uint8Array).byteLength <= LINK_LIMITS.batchBytes)) {
        bytes += 4 + (this.queue[n] as Uint8Array).byteLength
        n++
      }
      const batch = this.queue.splice(0, n)
      let payload = 0
      for (const p of batch) payload += p.byteLength
      this.queuedBytes -= payload
      let ok: boolean
      try {
        ok = stream.send(encodeFrames(batch))
      } catch (err) {
        this.opts.drop('no_connection', batch.length)
        this.lost(stream, err)
        return
      }
      this.opts.counters.txPackets += batch.length
      // Count IP bytes, as the receiver does (each frame also carries a 10-byte virtio header).
      this.opts.counters.txBytes += payload - 10 * batch.length
      if (!ok) {
        this.waitingDrain = true
        stream.addEventListener('drain', () => {
          this.waitingDrain = false
          this.flush()
        }, { once: true })
      }
    }
  }

  private async open (): Promise<void> {
    if (this.opening || this.closed) return
    this.opening = true
    try {
      const stream = await this.opts.dial(this.opts.peer, AbortSignal.timeout(5_000))
      if (this.closed) { stream.abort(new Error('link closed')); return }
      this.stream = stream
      stream.addEventListener('close', () => { this.lost(stream) }, { once: true })
      this.flush()
    } catch (err) {
      this.failedAt = this.opts.now()
      this.opts.log.debug({ peer: this.opts.peer.toString(), err: (err as Error).message }, 'cannot open a packet stream')
      this.opts.drop('no_connection', this.queue.length)
      this.queue = []
      this.queuedBytes = 0
    } finally {
      this.opening = false
    }
  }

  private lost (stream: Stream, err?: unknown): void {
    if (this.stream !== stream) return
    this.stream = undefined
    this.waitingDrain = false
    if (err !== undefined) this.opts.log.debug({ peer: this.opts.peer.toString(), err: (err as Error).message }, 'packet stream lost')
    // Queued packets wait for the next one to reopen the stream.
    if (this.queue.length > 0 && !this.closed) void this.open()
  }

  close (): void {
    this.closed = true
    this.queue = []
    this.queuedBytes = 0
    const s = this.stream
    this.stream = undefined
    if (s !== undefined) void s.close().catch(() => { s.abort(new Error('link closed')) })
  }
}
