import { randomBytes } from 'node:crypto'
import { byteStream } from '@libp2p/utils'
import type { AbortOptions, ConnectionProtector, MessageStream, MultiaddrConnection } from '@libp2p/interface'
import { silentLogger, type MeshLogger } from './mesh-logger.js'
import { RefusalLog, type RefusalLogOptions } from './refusal-log.js'
import { SealedConnection } from './sealed-connection.js'
import { TransportError } from './transport-error.js'
import { PUNCH_FIRST_BYTE, PUNCH_NONCES_OPTION, type PunchNonces } from './simultaneous-open.js'
import {
  checkTransportKey, HANDSHAKE_NONCE_BYTES, HANDSHAKE_PROOF_BYTES, sameProof, sessionSecrets,
  type TransportKey, type TransportKeys
} from './transport-keys.js'

/**
 * Weft's libp2p connection protector (replaces @libp2p/pnet; design in docs/transport.md).
 * It runs on the raw TCP (or relayed) connection before noise, so a machine without the key
 * never sees our PeerId, the network id or anything else that is ours.
 *
 *   initiator → responder   nI (32 random bytes)
 *   responder → initiator   nR (32 random bytes, sent only once nI has arrived)
 *   initiator → responder   HMAC(K, "… initiator proof" | nI | nR)
 *   responder               checks it against each key it accepts; none matches → closes
 *   responder → initiator   HMAC(K, "… responder proof" | nI | nR)
 *   initiator               checks it; else closes
 *
 * Then frames (transport-frames.ts) under two HKDF(K, nI | nR) keys, one per direction.
 */
export interface TransportProtectorInit {
  keys: TransportKeys
  /**
   * Public discovery (docs/mesh.md, "Beyond the LAN"): connections to and from public libp2p
   * nodes go unprotected (plain noise), and then reach only public protocols (public-protocols.ts).
   * `plainDial(peerId)` says whether an outbound connection to that peer skips the protection
   * (not a member); an inbound connection whose first byte is multistream-select's (0x13) is
   * taken as a plain libp2p dialler. Absent: every connection is protected (no plain peeking).
   */
  plain?: { plainDial: (peerId: string | undefined) => boolean }
  /** Where refused handshakes are reported (info, rate-limited). */
  log?: MeshLogger
  /** The whole handshake must finish within this (default 5 s). */
  handshakeTimeoutMs?: number
  /** Rate limits of the refusal lines; see RefusalLog. */
  refusals?: Omit<RefusalLogOptions, 'log'>
}

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000
/** Bytes the handshake reader may hold: a peer sending more than a handshake before it ends is cut. */
const HANDSHAKE_BUFFER_BYTES = 4_096

const epochs = new WeakMap<object, number>()
/** Raw connections left unprotected on purpose (public peers); they have no epoch. */
const plainConnections = new WeakSet<object>()

/** Whether a connection (raw, or a libp2p Connection) was left plain for a public peer. */
export function isPlainConnection (conn: object): boolean {
  return plainConnections.has((conn as { maConn?: object }).maConn ?? conn)
}
/** The first byte a plain libp2p dialler sends: the length (19) of "/multistream/1.0.0\n". */
const MULTISTREAM_FIRST_BYTE = 0x13

/**
 * Whether a libp2p Connection went through the network's protection. A Connection keeps the raw
 * connection it was upgraded from (`maConn`), which is what the protector saw.
 */
export function isProtectedConnection (conn: object): boolean {
  const raw = (conn as { maConn?: object }).maConn ?? conn
  return epochs.has(raw)
}

/**
 * The secret epoch a protected connection's handshake used, for the raw connection (what a libp2p
 * ConnectionGater is given) and for the protected one; undefined for a connection this protector
 * did not protect. A gater can refuse old-epoch connections from non-members during a rotation.
 */
export function protectedEpoch (conn: object): number | undefined {
  return epochs.get(conn)
}

interface Session { epoch: number, send: Uint8Array, receive: Uint8Array }
type Handshake = ReturnType<typeof byteStream<MultiaddrConnection>>

function isMultiaddrConnection (s: MessageStream): s is MultiaddrConnection {
  return 'remoteAddr' in s && typeof (s as { remoteAddr?: unknown }).remoteAddr === 'object'
}

/** The remote host (IP or DNS name, no port) a refusal is counted against. */
function remoteHost (maConn: MultiaddrConnection): string {
  const host = maConn.remoteAddr.getComponents().find((c) => c.name === 'ip4' || c.name === 'ip6' || c.name.startsWith('dns'))
  return host?.value ?? maConn.remoteAddr.toString()
}

/** The peer an outbound connection was dialled for (the last /p2p/ of its address), if named. */
function remotePeerOf (maConn: MultiaddrConnection): string | undefined {
  return maConn.remoteAddr.getComponents().findLast((c) => c.name === 'p2p')?.value
}

/** The distinct keys a responder tries, current first. */
function candidates (keys: TransportKeys): TransportKey[] {
  const out: TransportKey[] = []
  for (const k of [keys.current(), ...keys.accepted()]) {
    checkTransportKey(k)
    if (!out.some((o) => o.epoch === k.epoch && sameProof(o.key, k.key))) out.push(k)
  }
  return out
}

export class TransportProtector implements ConnectionProtector {
  readonly [Symbol.toStringTag] = '@weft/transport-protector'
  private readonly keys: TransportKeys
  private readonly timeoutMs: number
  private readonly refusals: RefusalLog
  private readonly plain: TransportProtectorInit['plain']

  constructor (init: TransportProtectorInit) {
    this.keys = init.keys
    this.plain = init.plain
    this.timeoutMs = init.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS
    this.refusals = new RefusalLog({ ...init.refusals, log: init.log ?? silentLogger })
  }

  async protect (connection: MessageStream, options?: AbortOptions): Promise<MessageStream> {
    if (!isMultiaddrConnection(connection)) {
      throw new TransportError('not-a-connection', 'the transport protector needs a raw connection with a remote address')
    }
    const maConn = connection
    const log = maConn.log.newScope('weft-transport')
    const timeout = AbortSignal.timeout(this.timeoutMs)
    const signal = options?.signal !== undefined ? AbortSignal.any([timeout, options.signal]) : timeout
    const bytes = byteStream(maConn, { maxBufferSize: HANDSHAKE_BUFFER_BYTES })
    // Roles follow the TCP connection (docs/transport.md), except for a dial told not to initiate:
    // DCUtR's second dialler (initiator: false), whose dial and its peer's cross as one TCP
    // simultaneous open, where both ends dialled (docs/mesh.md "4. Hole punching").
    const initiator = maConn.direction === 'outbound' && (options as { initiator?: boolean } | undefined)?.initiator !== false
    // A hole-punched connection whose nonces were already exchanged (simultaneous-open.ts).
    const punched = (options as { [PUNCH_NONCES_OPTION]?: PunchNonces } | undefined)?.[PUNCH_NONCES_OPTION]
    if (punched === undefined && initiator && this.plain?.plainDial(remotePeerOf(maConn)) === true) return this.leavePlain(maConn, bytes, log)
    let session: Session
    try {
      if (punched !== undefined) {
        session = punched.initiator ? await this.prove(bytes, signal, this.keys.current(), punched.nI, punched.nR) : await this.check(bytes, signal, punched.nI, punched.nR)
      } else if (initiator) {
        session = await this.initiate(bytes, signal)
      } else {
        const first = (await bytes.read({ bytes: 1, signal })).subarray()
        if (this.plain !== undefined && first[0] === MULTISTREAM_FIRST_BYTE) return this.leavePlain(maConn, bytes, log, first)
        session = await this.respond(bytes, signal, first)
      }
    } catch (err) {
      const e = this.classify(err, signal)
      // A dial we give up on ourselves (timeout, a faster address won) is no refusal.
      if (maConn.direction === 'inbound') this.refusals.refused(remoteHost(maConn), e.reason)
      else if (e.reason === 'bad-proof') this.refusals.refused(remoteHost(maConn), 'dialled peer refused or failed the proof')
      log('handshake failed - %e', e)
      maConn.abort(e)
      throw e
    }
    const raw = bytes.unwrap()
    const sealed = new SealedConnection({
      maConn: raw,
      sendKey: session.send,
      receiveKey: session.receive,
      log,
      onFailure: (e) => { log('protected connection closed - %e', e) }
    })
    epochs.set(maConn, session.epoch)
    epochs.set(sealed, session.epoch)
    log('protected with the key of epoch %d', session.epoch)
    return sealed
  }

  /** A public peer: no protection; the bytes already read go back in front of the stream. */
  private leavePlain (maConn: MultiaddrConnection, bytes: Handshake, log: { (f: string, ...a: unknown[]): void }, read?: Uint8Array): MultiaddrConnection {
    const raw = bytes.unwrap()
    if (read !== undefined) raw.unshift(read)
    plainConnections.add(maConn)
    log('left unprotected: a public libp2p peer (only public protocols)')
    return raw
  }

  private async initiate (bytes: Handshake, signal: AbortSignal): Promise<Session> {
    const key = this.keys.current()
    checkTransportKey(key)
    const nI = randomBytes(HANDSHAKE_NONCE_BYTES)
    // A responder that accepts plain libp2p diallers tells them apart by this first byte; a
    // punch dial's nonce starts with its own (simultaneous-open.ts).
    if (nI[0] === MULTISTREAM_FIRST_BYTE || nI[0] === PUNCH_FIRST_BYTE) nI[0] ^= 0x80
    await bytes.write(nI, { signal })
    const nR = (await bytes.read({ bytes: HANDSHAKE_NONCE_BYTES, signal })).subarray()
    return await this.prove(bytes, signal, key, nI, nR)
  }

  /** The initiator's half once both nonces are known: our proof, then the responder's. */
  private async prove (bytes: Handshake, signal: AbortSignal, key: TransportKey, nI: Uint8Array, nR: Uint8Array): Promise<Session> {
    checkTransportKey(key)
    const s = sessionSecrets(key.key, nI, nR)
    await bytes.write(s.initiatorProof, { signal })
    let proof: Uint8Array
    try {
      proof = (await bytes.read({ bytes: HANDSHAKE_PROOF_BYTES, signal })).subarray()
    } catch (err) {
      if (signal.aborted) throw err
      // A responder closes without a word when our proof does not match any key it accepts.
      throw new TransportError('bad-proof', 'the dialled peer closed the connection on our proof (a different network token?)', { cause: err })
    }
    if (!sameProof(proof, s.responderProof)) {
      throw new TransportError('bad-proof', 'the dialled peer does not hold our transport key (a different network token)')
    }
    return { epoch: key.epoch, send: s.initiatorToResponder, receive: s.responderToInitiator }
  }

  private async respond (bytes: Handshake, signal: AbortSignal, first: Uint8Array): Promise<Session> {
    const nI = new Uint8Array(HANDSHAKE_NONCE_BYTES)
    nI.set(first, 0)
    nI.set((await bytes.read({ bytes: HANDSHAKE_NONCE_BYTES - first.byteLength, signal })).subarray(), first.byteLength)
    const nR = randomBytes(HANDSHAKE_NONCE_BYTES)
    // A punch dial that reached our listener reads this as a responder's nonce, never as a punch nonce.
    if (nR[0] === PUNCH_FIRST_BYTE) nR[0] ^= 0x80
    // Random bytes only: nothing key-dependent goes out before the initiator's proof checks.
    await bytes.write(nR, { signal })
    return await this.check(bytes, signal, nI, nR)
  }

  /** The responder's half once both nonces are known: the initiator's proof against every accepted key, then ours. */
  private async check (bytes: Handshake, signal: AbortSignal, nI: Uint8Array, nR: Uint8Array): Promise<Session> {
    const proof = (await bytes.read({ bytes: HANDSHAKE_PROOF_BYTES, signal })).subarray()
    // Read the keys now, not at startup: a rotation applies to the next connection.
    for (const key of candidates(this.keys)) {
      const s = sessionSecrets(key.key, nI, nR)
      if (sameProof(proof, s.initiatorProof)) {
        await bytes.write(s.responderProof, { signal })
        return { epoch: key.epoch, send: s.responderToInitiator, receive: s.initiatorToResponder }
      }
    }
    throw new TransportError('bad-proof', 'the dialling machine does not hold an accepted transport key (wrong network token, or not weft)')
  }

  private classify (err: unknown, signal: AbortSignal): TransportError {
    if (err instanceof TransportError) return err
    if (signal.aborted) return new TransportError('timeout', `the transport handshake did not finish within ${this.timeoutMs} ms`, { cause: err })
    return new TransportError('handshake-io', `the connection failed during the transport handshake: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

/** The libp2p `connectionProtector` factory. */
export function transportProtector (init: TransportProtectorInit): () => ConnectionProtector {
  return () => new TransportProtector(init)
}
