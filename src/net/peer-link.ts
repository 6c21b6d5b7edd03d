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

/**
 * One way to carry packet frames to a peer: the libp2p packet stream ('mesh', always possible,
 * relayed or not) or the direct path ('direct', direct-path.ts).
 */
export interface PacketChannel {
  readonly kind: 'direct' | 'mesh'
  /** Writes encoded frames; false = back-pressure, wait for onDrain. Throws when closed. */
  send: (bytes: Uint8Array) => boolean
  onDrain: (fn: () => void) => void
  /** Called once when the channel is gone (closed by either side or failed). */
  onClose: (fn: () => void) => void
  close: () => void
}

export type PathKind = 'direct' | 'mesh' | 'none'

export interface PeerLinkOptions {
  /** Opens the libp2p packet stream. */
  dial: (peer: PeerId, signal: AbortSignal) => Promise<PacketChannel>
  /** Opens the direct path, when there may be one (docs/vpn.md "Direct path"). */
  direct?: (peer: PeerId, signal: AbortSignal) => Promise<PacketChannel>
  peer: PeerId
  counters: LinkCounters
  drop: (reason: DropReason, n?: number) => void
  now: () => number
  log: MeshLogger
}

/** A direct path that failed or closed is tried again after this; the mesh carries meanwhile. */
export const DIRECT_RETRY_MS = 30_000

const RESOLVED = Promise.resolve()

/**
 * Packets to one peer over ONE long-lived channel: the direct path when it is up, else the
 * libp2p stream. Packets queue while a channel opens, and every packet queued while the TUN is
 * being drained leaves in one write (a microtask after the drain: batching without waiting for
 * another turn of the event loop). The queue is bounded; when the channel reports back-pressure
 * we wait for its drain and drop what overflows meanwhile. A closed stream is reopened on the
 * next packet; a failed dial makes packets fail fast for `retryMs`. The direct path is tried once
 * the stream is up, and again DIRECT_RETRY_MS after it fails or closes.
 */
export class PeerLink {
  private queue: Uint8Array[] = []
  private queuedBytes = 0
  private mesh: PacketChannel | undefined
  private direct: PacketChannel | undefined
  private opening = false
  private directOpening = false
  private failedAt = Number.NEGATIVE_INFINITY
  private directFailedAt = Number.NEGATIVE_INFINITY
  /** The channel whose drain we wait for, if any. */
  private draining: PacketChannel | undefined
  private scheduled = false
  private closed = false

  constructor (private readonly opts: PeerLinkOptions) {}

  private readonly flushScheduled = (): void => { this.scheduled = false; this.flush() }

  get connected (): boolean { return this.channel() !== undefined }

  get path (): PathKind { return this.direct !== undefined ? 'direct' : this.mesh !== undefined ? 'mesh' : 'none' }

  private channel (): PacketChannel | undefined { return this.direct ?? this.mesh }

  send (pkt: Uint8Array): void {
    if (this.closed) return
    if (this.channel() === undefined && !this.opening && this.opts.now() - this.failedAt < LINK_LIMITS.retryMs) {
      this.opts.drop('no_connection')
      return
    }
    if (this.queue.length >= LINK_LIMITS.queuePackets || this.queuedBytes + pkt.byteLength > LINK_LIMITS.queueBytes) {
      this.opts.drop('queue_full')
      return
    }
    this.queue.push(pkt)
    this.queuedBytes += pkt.byteLength
    if (this.channel() === undefined) void this.open()
    else {
      this.schedule()
      if (this.direct === undefined) this.tryDirect()
    }
  }

  private schedule (): void {
    if (this.scheduled || this.draining !== undefined || this.channel() === undefined) return
    this.scheduled = true
    // A promise job, not queueMicrotask: Node wraps each of those in an AsyncResource, which
    // showed in the per-packet profile; flush never throws (send failures are caught inside).
    void RESOLVED.then(this.flushScheduled)
  }

  private flush (): void {
    let ch = this.channel()
    while (ch !== undefined && this.queue.length > 0 && this.draining === undefined) {
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
        ok = ch.send(encodeFrames(batch))
      } catch (err) {
        this.opts.drop('no_connection', batch.length)
        this.lost(ch, err)
        ch = this.channel()
        continue
      }
      this.opts.counters.txPackets += batch.length
      // Count IP bytes, as the receiver does (each frame also carries a 10-byte virtio header).
      this.opts.counters.txBytes += payload - 10 * batch.length
      if (!ok) {
        const waitingOn = ch
        this.draining = ch
        ch.onDrain(() => {
          if (this.draining !== waitingOn) return
          this.draining = undefined
          this.flush()
        })
      }
    }
  }

  private async open (): Promise<void> {
    if (this.opening || this.closed) return
    this.opening = true
    try {
      const ch = await this.opts.dial(this.opts.peer, AbortSignal.timeout(5_000))
      if (this.closed) { ch.close(); return }
      this.mesh = ch
      ch.onClose(() => { this.lost(ch) })
      this.flush()
      this.tryDirect()
    } catch (err) {
      this.failedAt = this.opts.now()
      this.opts.log.debug({ peer: this.opts.peer.toString(), err: (err as Error).message }, 'cannot open a packet stream')
      if (this.direct === undefined) {
        this.opts.drop('no_connection', this.queue.length)
        this.queue = []
        this.queuedBytes = 0
      }
    } finally {
      this.opening = false
    }
  }

  private tryDirect (): void {
    const open = this.opts.direct
    if (open === undefined || this.direct !== undefined || this.directOpening || this.closed) return
    if (this.opts.now() - this.directFailedAt < DIRECT_RETRY_MS) return
    this.directOpening = true
    open(this.opts.peer, AbortSignal.timeout(5_000)).then((ch) => {
      if (this.closed) { ch.close(); return }
      this.direct = ch
      this.draining = undefined // the mesh's back-pressure is not the direct path's
      ch.onClose(() => { this.lost(ch) })
      this.flush()
    }, (err: Error) => {
      this.directFailedAt = this.opts.now()
      this.opts.log.debug({ peer: this.opts.peer.toString(), err: err.message }, 'no direct path; packets stay on the mesh')
    }).finally(() => { this.directOpening = false })
  }

  private lost (ch: PacketChannel, err?: unknown): void {
    if (this.draining === ch) this.draining = undefined
    if (this.direct === ch) {
      this.direct = undefined
      this.directFailedAt = this.opts.now()
      if (err !== undefined) this.opts.log.debug({ peer: this.opts.peer.toString(), err: (err as Error).message }, 'direct path lost; back to the mesh')
    } else if (this.mesh === ch) {
      this.mesh = undefined
      if (err !== undefined) this.opts.log.debug({ peer: this.opts.peer.toString(), err: (err as Error).message }, 'packet stream lost')
    } else {
      return
    }
    if (this.closed || this.queue.length === 0) return
    // Queued packets go on over what is left, or wait for the stream to reopen.
    if (this.channel() !== undefined) this.schedule()
    else void this.open()
  }

  close (): void {
    this.closed = true
    this.queue = []
    this.queuedBytes = 0
    const chans = [this.direct, this.mesh]
    this.direct = undefined
    this.mesh = undefined
    for (const c of chans) c?.close()
  }
}

/** The libp2p packet stream as a channel. */
export function streamChannel (stream: Stream): PacketChannel {
  return {
    kind: 'mesh',
    send: (bytes) => stream.send(bytes),
    onDrain: (fn) => { stream.addEventListener('drain', fn, { once: true }) },
    onClose: (fn) => {
      if (stream.status === 'closed' || stream.status === 'aborted' || stream.status === 'reset') { queueMicrotask(fn); return }
      stream.addEventListener('close', fn, { once: true })
    },
    close: () => { void stream.close().catch(() => { stream.abort(new Error('link closed')) }) }
  }
}
