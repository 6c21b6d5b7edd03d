import { StreamState, YamuxStream } from '@libp2p/yamux/stream'

/**
 * yamux window updates the way go-yamux and hashicorp/yamux send them: once half the receive
 * window is used, not after every data frame.
 *
 * @libp2p/yamux (8.0.3) answers every data frame it reads with a window update for exactly the
 * bytes read. On an idle network most frames are a few bytes (a presence heartbeat, a DHT
 * message), so every one of them cost a second TCP segment back, 50 bytes of frame (yamux 12,
 * noise 18, the token's protection 20) plus 66 of headers: about a third of an idle node's
 * segments on the wire (docs/operations.md, "Idle traffic on the wire"). Updates that carry a
 * flag (SYN/ACK of a new stream) and those of a paused stream (the library's own path) still go
 * at once, and a sender whose window is spent is always updated: a spent window is a whole
 * window used, past the half.
 */

interface WindowFields {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
}

/** Whether a window update can wait: no flag to send and less than half the window used. */
export function windowUpdateCanWait (state: StreamState, recvWindow: number, recvWindowCapacity: number): boolean {
  if (state !== StreamState.Established && state !== StreamState.Finished) return false
  return recvWindow - recvWindowCapacity < recvWindow / 2
}

let installed = false

/** Installs the rule on @libp2p/yamux's streams (once per process; later calls do nothing). */
export function thinYamuxWindowUpdates (): void {
  if (installed) return
  installed = true
  // The fields are private in the library's types, plain properties at run time.
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: (this: WindowFields) => void }
  const original = proto.sendWindowUpdate
  // Another release without this method: its own behaviour stands (nothing to thin).
  if (typeof original !== 'function') return
  proto.sendWindowUpdate = function (this: WindowFields): void {
    if (windowUpdateCanWait(this.state, this.recvWindow, this.recvWindowCapacity)) return
    original.call(this)
  }
}
