import { createHash, hkdfSync, randomBytes } from 'node:crypto'
import { base58btc } from 'multiformats/bases/base58'
import { WeftError } from './errors.js'
import { concatBytes, equalBytes, toHex, utf8 } from './bytes.js'

/**
 * The network token: the only thing a node needs to join. Two text forms:
 * - `weft2` + base58btc(root[32] || owner[32] || epoch[u32] || key[32] if epoch > 0 || checksum[4]):
 *   the current form. It commits to the network's owner key, so every node knows from the token
 *   alone whose signature governs the network (no trust on first use), and carries the
 *   admission epoch: after a revocation the transport key is replaced (sealed to the remaining
 *   members in the log) and `weft token show` prints a token with the new epoch and key.
 * - `weft1` + base58btc(root[32] || checksum[4]): the first form. It has no owner: such a network
 *   accepts no administrative event (settings stay at their defaults, nobody can evict or
 *   revoke); create a new network with `weft token new` to get one.
 * The checksum lets a mistyped token be told apart from a token of another network.
 *
 * The root secret never changes: the network id, gossip topic, DHT prefix, mDNS name, rendezvous
 * keys and k3s cluster tokens derive from it. Admission (the transport key) derives from the
 * root at epoch 0 and is a fresh random key from each rotation on (see docs/trust.md).
 */
export const TOKEN_PREFIX = 'weft2'
export const LEGACY_TOKEN_PREFIX = 'weft1'
export const SECRET_BYTES = 32
const CHECKSUM_BYTES = 4
const HKDF_SALT = utf8.encode('weft/v1')

/** Seconds per rendezvous epoch; keys rotate with a previous/next grace window. */
export const RENDEZVOUS_EPOCH_SECONDS = 3600

export interface NetworkToken {
  /** 32 root secret bytes. Never logged, never written to the log. */
  readonly secret: Uint8Array
  /** The owner's Ed25519 public key; undefined for a legacy `weft1` token. */
  readonly owner?: Uint8Array
  /** Admission epoch: 0 (or absent) until the first rotation. */
  readonly epoch?: number
  /** The transport key of `epoch` when epoch > 0 (epoch 0 derives it from the root). */
  readonly epochKey?: Uint8Array
}

function checksum (body: Uint8Array): Uint8Array {
  return createHash('sha256').update('weft-token-checksum/v1').update(body).digest().subarray(0, CHECKSUM_BYTES)
}

/** A token without an owner private key anywhere: for tests that need no authority. */
export function newToken (owner?: Uint8Array): NetworkToken {
  return { secret: new Uint8Array(randomBytes(SECRET_BYTES)), owner: owner ?? new Uint8Array(randomBytes(32)), epoch: 0 }
}

export function formatToken (token: NetworkToken): string {
  if (token.owner === undefined) {
    return LEGACY_TOKEN_PREFIX + base58btc.baseEncode(concatBytes(token.secret, checksum(token.secret)))
  }
  const epoch = new Uint8Array(4)
  const n = token.epoch ?? 0
  new DataView(epoch.buffer).setUint32(0, n)
  const parts = [token.secret, token.owner, epoch]
  if (n > 0) {
    if (token.epochKey?.byteLength !== 32) throw new WeftError('ERR_BAD_INPUT', `a token at epoch ${n} needs its 32-byte transport key`)
    parts.push(token.epochKey)
  }
  const body = concatBytes(...parts)
  return TOKEN_PREFIX + base58btc.baseEncode(concatBytes(body, checksum(body)))
}

export function parseToken (text: string): NetworkToken {
  const t = text.trim()
  const legacy = t.startsWith(LEGACY_TOKEN_PREFIX)
  if (!legacy && !t.startsWith(TOKEN_PREFIX)) {
    throw new WeftError('ERR_TOKEN_PREFIX', `not a Weft token: it must start with "${TOKEN_PREFIX}" (check that the whole token was copied); create one with "weft token new"`)
  }
  let raw: Uint8Array
  try {
    raw = base58btc.baseDecode(t.slice(TOKEN_PREFIX.length))
  } catch {
    throw new WeftError('ERR_TOKEN_ENCODING', 'the token contains characters outside base58 (no 0, O, I or l); check for a typo or a truncated copy')
  }
  const sizes = legacy ? [SECRET_BYTES] : [SECRET_BYTES + 36, SECRET_BYTES + 68]
  const bodyLen = raw.byteLength - CHECKSUM_BYTES
  if (!sizes.includes(bodyLen)) {
    const expected = sizes.map((n) => n + CHECKSUM_BYTES).join(' or ')
    throw new WeftError('ERR_TOKEN_LENGTH', `the token decodes to ${raw.byteLength} bytes, expected ${expected}; it was probably cut or has extra characters`)
  }
  const body = raw.subarray(0, bodyLen)
  if (!equalBytes(raw.subarray(bodyLen), checksum(body))) {
    throw new WeftError('ERR_TOKEN_CHECKSUM', 'the token checksum does not match: one or more characters are mistyped')
  }
  const secret = new Uint8Array(body.subarray(0, SECRET_BYTES))
  if (legacy) return { secret, epoch: 0 }
  const owner = new Uint8Array(body.subarray(SECRET_BYTES, SECRET_BYTES + 32))
  const epoch = new DataView(body.buffer, body.byteOffset + SECRET_BYTES + 32, 4).getUint32(0)
  if (bodyLen === SECRET_BYTES + 36) {
    if (epoch !== 0) throw new WeftError('ERR_TOKEN_LENGTH', `the token says epoch ${epoch} but carries no transport key; it was probably cut`)
    return { secret, owner, epoch }
  }
  if (epoch === 0) throw new WeftError('ERR_TOKEN_LENGTH', 'the token carries a transport key at epoch 0; it was probably altered')
  return { secret, owner, epoch, epochKey: new Uint8Array(body.subarray(SECRET_BYTES + 36)) }
}

/** The transport key (the admission secret) of the token's epoch. */
export function transportKeyOf (token: NetworkToken): Uint8Array {
  return (token.epoch ?? 0) === 0 || token.epochKey === undefined ? derive(token, 'transport-psk/v1', 32) : token.epochKey
}

/** HKDF-SHA256 with a distinct label per derived value, so no two uses share key material. */
export function derive (token: NetworkToken, label: string, length: number): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', token.secret, HKDF_SALT, utf8.encode(label), length))
}

/** Public identifiers; safe to print, log and put in protocol names. */
export interface NetworkIdentifiers {
  /** 8 bytes, hex: names the network in events and protocol ids. */
  networkId: string
  gossipTopic: string
  dhtProtocolPrefix: string
  mdnsServiceName: string
  syncProtocol: string
  packetProtocol: string
  directProtocol: string
  kubeconfigProtocol: string
  tcpProtocol: string
}

export function networkIdBytes (token: NetworkToken): Uint8Array {
  return derive(token, 'network-id', 8)
}

export function identifiers (token: NetworkToken): NetworkIdentifiers {
  const networkId = toHex(networkIdBytes(token))
  return {
    networkId,
    gossipTopic: `weft/${networkId}/events/${toHex(derive(token, 'gossip-topic', 4))}`,
    dhtProtocolPrefix: `/weft/${networkId}/${toHex(derive(token, 'dht-prefix', 4))}`,
    // DNS-SD service names are limited to 15 characters.
    mdnsServiceName: `weft-${toHex(derive(token, 'mdns-service', 5))}`,
    syncProtocol: `/weft/${networkId}/sync/1.0.0`,
    packetProtocol: `/weft/${networkId}/packets/1.0.0`,
    directProtocol: `/weft/${networkId}/direct/1.0.0`,
    kubeconfigProtocol: `/weft/${networkId}/kubeconfig/1.0.0`,
    tcpProtocol: `/weft/${networkId}/tcp/1.0.0`
  }
}

/** The libp2p private-network pre-shared key, in the swarm key file format pnet reads. */
export function pnetSwarmKey (token: NetworkToken): Uint8Array {
  const key = toHex(derive(token, 'pnet-psk', 32))
  return utf8.encode(`/key/swarm/psk/1.0.0/\n/base16/\n${key}`)
}

export interface RendezvousKeys { epoch: number, previous: string, current: string, next: string }

/** Rendezvous keys for the epoch containing `nowMs`; time is a parameter so this stays pure. */
export function rendezvousKeys (token: NetworkToken, nowMs: number): RendezvousKeys {
  const epoch = Math.floor(nowMs / 1000 / RENDEZVOUS_EPOCH_SECONDS)
  const key = (e: number): string => toHex(derive(token, `rendezvous/${e}`, 16))
  return { epoch, previous: key(epoch - 1), current: key(epoch), next: key(epoch + 1) }
}

/** The k3s join token of one cluster: a secret, derived so it never has to travel or be stored in the log. */
export function k3sClusterToken (token: NetworkToken, cluster: string): string {
  return toHex(derive(token, `k3s-token/${cluster}`, 32))
}
