/**
 * Typed errors with stable codes. Callers branch on `code`, never on message text;
 * messages say what is wrong and how to fix it.
 */
export type WeftErrorCode =
  // token
  | 'ERR_TOKEN_PREFIX'
  | 'ERR_TOKEN_ENCODING'
  | 'ERR_TOKEN_LENGTH'
  | 'ERR_TOKEN_CHECKSUM'
  // identity
  | 'ERR_KEY_PERMISSIONS'
  | 'ERR_KEY_CONTENT'
  // event validation (intrinsic)
  | 'ERR_EVENT_TOO_LARGE'
  | 'ERR_NOT_CBOR'
  | 'ERR_NOT_CANONICAL'
  | 'ERR_BAD_ENVELOPE'
  | 'ERR_BAD_FIELD'
  | 'ERR_BAD_VERSION'
  | 'ERR_WRONG_NETWORK'
  | 'ERR_BAD_SIGNATURE'
  | 'ERR_BAD_AUTH' // a body.auth cosignature that does not verify
  | 'ERR_STALE_SEQ' // a cosignature bound to a seq the node has moved past
  | 'ERR_UNAUTHORISED' // an administrative event without owner or delegate authority
  | 'ERR_BAD_BODY'
  | 'ERR_UNKNOWN_TYPE'
  | 'ERR_TOO_MANY_DEPS'
  | 'ERR_BAD_DEPS'
  | 'ERR_BAD_CHAIN'
  // event validation (causal)
  | 'ERR_BAD_PREV'
  | 'ERR_BAD_DEP'
  | 'ERR_BAD_LAMPORT'
  | 'ERR_BAD_ID'
  // fork proofs
  | 'ERR_BAD_FORK_PROOF'
  // author state
  | 'ERR_AUTHOR_FROZEN'
  // storage and input
  | 'ERR_STORE'
  | 'ERR_STORE_LOCKED'
  | 'ERR_CHECKPOINT' // a fold checkpoint that cannot be written or read (the replica refolds instead)
  | 'ERR_NOT_FOUND'
  | 'ERR_BAD_INPUT'
  | 'ERR_BAD_CONFIG'
  | 'ERR_PENDING_FULL'
  // mesh
  | 'ERR_SYNC_PROTOCOL'
  | 'ERR_NETWORK'
  | 'ERR_TUN' // vpn: the TUN device, its address and routes (ip command)
  | 'ERR_TRANSPORT' // the connection protection: refused handshake, bad or oversized frame

export class WeftError extends Error {
  readonly code: WeftErrorCode
  constructor (code: WeftErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = 'WeftError'
  }
}

export function isWeftError (err: unknown, code?: WeftErrorCode): err is WeftError {
  return err instanceof WeftError && (code === undefined || err.code === code)
}
