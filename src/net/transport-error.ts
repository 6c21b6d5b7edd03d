import { WeftError } from '../log/errors.js'

/** Why a protected connection failed or was refused; stable, for logs and tests. */
export type TransportFailure =
  | 'bad-key' // a transport key is not 32 bytes (configuration)
  | 'bad-proof' // the other side does not hold an accepted key (wrong token, or not weft)
  | 'timeout' // the handshake did not finish in time
  | 'handshake-io' // the connection closed or failed during the handshake
  | 'bad-frame' // a frame is oversized or fails authentication (tampering, or a bug)
  | 'truncated' // the connection ended inside a frame
  | 'nonce-exhausted' // 2^53 frames in one direction
  | 'not-a-connection' // protect() was given a stream without a remote address

/** Every failure of the transport protection: it closes one connection, never the process. */
export class TransportError extends WeftError {
  readonly reason: TransportFailure
  constructor (reason: TransportFailure, message: string, options?: { cause?: unknown }) {
    super('ERR_TRANSPORT', message, options)
    this.reason = reason
    this.name = 'TransportError'
  }
}
