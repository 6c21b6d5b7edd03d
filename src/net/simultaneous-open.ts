/**
 * Roles for a hole-punched TCP connection between two members (docs/mesh.md "4. Hole punching").
 *
 * DCUtR makes both peers dial each other at once; through two NATs the SYNs cross and the kernel
 * makes ONE connection of them (a TCP simultaneous open), on which both ends dialled. Every layer
 * above needs one initiator and one responder (the transport handshake, multistream-select,
 * noise, yamux). DCUtR asks its second dialler to act as responder (`initiator: false`), but
 * libp2p's dial queue drops that option (libp2p 3.x, dial-queue.js keeps only peerId, priority,
 * multiaddrs, signal, onProgress), so both ends would initiate and the connection fails.
 *
 * The roles are settled on the wire instead, before anything else is sent: a punch dial sends the
 * 32-byte nonce of the transport handshake (transport-protector.ts) with the first byte
 * PUNCH_FIRST_BYTE and reads 32 bytes.
 * - The peer's listener accepted the dial (no simultaneous open): it answers as any responder,
 *   with its nonce nR, whose first byte is never PUNCH_FIRST_BYTE. We initiate.
 * - The peer dialled too: it sent its own punch nonce. The larger nonce initiates; each side
 *   knows nI and nR and the handshake goes on from its proofs.
 * The result travels to the upgrader and the protector in the dial options (the same object
 * @libp2p/tcp passes to `upgradeOutbound`): `initiator: false` makes libp2p's upgrade act as the
 * responder (multistream server, noise responder, yamux server), `weftPunchNonces` skips the
 * protector's nonce exchange.
 */
import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import { TransportError } from './transport-error.js'
import { HANDSHAKE_NONCE_BYTES } from './transport-keys.js'

/** First byte of a punch dial's nonce; other nonces are re-drawn away from it. */
export const PUNCH_FIRST_BYTE = 0x14
/** The dial option carrying the settled nonces to the protector. */
export const PUNCH_NONCES_OPTION = 'weftPunchNonces'

export interface PunchNonces { initiator: boolean, nI: Uint8Array, nR: Uint8Array }

/** A punch dial's nonce. */
export function punchNonce (): Uint8Array {
  const n = randomBytes(HANDSHAKE_NONCE_BYTES)
  n[0] = PUNCH_FIRST_BYTE
  return n
}

/** Who initiates, given our punch nonce and the 32 bytes the peer sent first. */
export function settleRoles (own: Uint8Array, other: Uint8Array): PunchNonces {
  if (other[0] !== PUNCH_FIRST_BYTE) return { initiator: true, nI: own, nR: other }
  const c = Buffer.compare(own, other)
  if (c === 0) throw new TransportError('handshake-io', 'a hole-punched connection sent our own nonce back')
  return c > 0 ? { initiator: true, nI: own, nR: other } : { initiator: false, nI: other, nR: own }
}

/** Sends our punch nonce on a freshly connected socket and settles the roles from the peer's first 32 bytes. */
export async function settleOnSocket (socket: Socket, signal: AbortSignal): Promise<PunchNonces> {
  const own = punchNonce()
  socket.write(own)
  return settleRoles(own, await readExactly(socket, HANDSHAKE_NONCE_BYTES, signal))
}

/**
 * Reads `n` bytes from a socket nobody else reads yet. Paused mode ('readable' and read(n)): the
 * bytes after them stay in the socket's buffer, and once the 'readable' listener is gone the
 * socket is neither flowing nor paused, so the next 'data' listener (libp2p's) starts the flow.
 */
async function readExactly (socket: Socket, n: number, signal: AbortSignal): Promise<Uint8Array> {
  return await new Promise<Uint8Array>((resolve, reject) => {
    const cleanup = (): void => {
      socket.off('readable', onReadable)
      socket.off('end', onEnd)
      socket.off('error', onError)
      signal.removeEventListener('abort', onAbort)
    }
    const onReadable = (): void => {
      const got = socket.read(n) as Buffer | null
      if (got === null) return
      cleanup()
      if (got.byteLength < n) { reject(new TransportError('handshake-io', 'a hole-punched connection closed before the peer sent its nonce')); return }
      resolve(new Uint8Array(got))
    }
    const onEnd = (): void => { cleanup(); reject(new TransportError('handshake-io', 'a hole-punched connection closed before the peer sent its nonce')) }
    const onError = (err: Error): void => { cleanup(); reject(err) }
    const onAbort = (): void => { cleanup(); reject(signal.reason) }
    if (signal.aborted) { onAbort(); return }
    socket.on('readable', onReadable)
    socket.once('end', onEnd)
    socket.once('error', onError)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
