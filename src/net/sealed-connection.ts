import { AbstractMultiaddrConnection, type SendResult } from '@libp2p/utils'
import type { AbortOptions, Logger, MultiaddrConnection, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'
import { FrameOpener, FrameSealer, MAX_FRAME_PLAINTEXT } from './transport-frames.js'
import { TransportError } from './transport-error.js'

export interface SealedConnectionInit {
  /** The raw connection, after the handshake (nothing of it is read any more but frames). */
  maConn: MultiaddrConnection
  sendKey: Uint8Array
  receiveKey: Uint8Array
  log: Logger
  /** Told about every failure that closes the connection (a bad frame, a cut mid-frame). */
  onFailure: (err: TransportError) => void
}

/**
 * A protected connection: what the layer above (noise) writes goes out as AEAD frames, what
 * arrives is opened frame by frame. Buffering is bounded in both directions:
 * - writes go out at most one frame (128 KiB) at a time (`maxMessageSize`) and stop when the raw
 *   connection reports it is full, resuming on its `drain`;
 * - reads keep at most one incomplete frame here, and a pause from above pauses the raw
 *   connection (the socket), so an unread peer fills TCP windows, not our memory;
 *   the read buffer above the frames keeps the libp2p default cap (4 MiB, then abort).
 * Every failure aborts this connection with a TransportError; nothing here throws out of an
 * event listener (which would be an uncaught exception).
 */
export class SealedConnection extends AbstractMultiaddrConnection {
  private readonly maConn: MultiaddrConnection
  private readonly sealer: FrameSealer
  private readonly opener: FrameOpener
  private readonly onFailure: (err: TransportError) => void

  constructor (init: SealedConnectionInit) {
    super({
      log: init.log,
      remoteAddr: init.maConn.remoteAddr,
      direction: init.maConn.direction,
      maxMessageSize: MAX_FRAME_PLAINTEXT
    })
    this.maConn = init.maConn
    this.sealer = new FrameSealer(init.sendKey)
    this.opener = new FrameOpener(init.receiveKey)
    this.onFailure = init.onFailure
    this.maConn.addEventListener('message', (evt: StreamMessageEvent) => { this.onFrames(evt.data) })
    this.maConn.addEventListener('drain', () => { this.onMuxerDrain() })
    this.maConn.addEventListener('close', (evt: StreamCloseEvent) => { this.onRawClose(evt) })
  }

  private onFrames (data: Uint8Array | Uint8ArrayList): void {
    // While closing, frames still carry what the layer above waits for (noise's and yamux's goodbyes).
    if (this.status === 'aborted' || this.status === 'reset' || this.status === 'closed') return
    let plain: Uint8Array[]
    try {
      plain = this.opener.push(data)
    } catch (err) {
      this.fail(err)
      return
    }
    for (const p of plain) this.onData(p)
  }

  private onRawClose (evt: StreamCloseEvent): void {
    if (evt.error != null) {
      if (evt.local) this.abort(evt.error)
      else this.onRemoteReset()
      return
    }
    try {
      this.opener.finish()
    } catch (err) {
      this.fail(err)
      return
    }
    this.onTransportClosed()
  }

  private fail (err: unknown): void {
    const e = err instanceof TransportError ? err : new TransportError('bad-frame', String(err), { cause: err })
    this.log.error('protected connection failed - %e', e)
    try { this.onFailure(e) } catch {}
    this.abort(e)
  }

  sendData (data: Uint8ArrayList): SendResult {
    let canSendMore = true
    for (const frame of this.sealer.seal(data)) canSendMore = this.maConn.send(frame)
    return { sentBytes: data.byteLength, canSendMore }
  }

  async sendClose (options?: AbortOptions): Promise<void> {
    await this.maConn.close(options)
  }

  sendReset (err: Error): void {
    this.maConn.abort(err)
  }

  sendPause (): void {
    this.maConn.pause()
  }

  sendResume (): void {
    this.maConn.resume()
  }
}
