import { createHash, hkdfSync, randomBytes } from 'node:crypto'
import { base58btc } from 'multiformats/bases/base58'
import { WeftError } from './errors.js'
import { concatBytes, equalBytes, toHex, utf8 } from './bytes.js'

/**
 * The network token: the only thing a node needs to join. Text form is
 * `weft1` + base58btc(secret[32] || checksum[4]); the checksum lets a mistyped token be
 * told apart from a token of another network.
 */
export const TOKEN_PREFIX = 'weft1'
export const SECRET_BYTES = 32
const CHECKSUM_BYTES = 4
const HKDF_SALT = utf8.encode('weft/v1')

/** Seconds per rendezvous epoch; keys rotate with a previous/next grace window. */
export const RENDEZVOUS_EPOCH_SECONDS = 3600

export interface NetworkToken {
  /** 32 secret bytes. Never logged, never written to the log. */
  readonly secret: Uint8Array
}

function checksum (secret: Uint8Array): Uint8Array {
  return createHash('sha256').update('weft-token-checksum/v1').update(secret).digest().subarray(0, CHECKSUM_BYTES)
}

export function newToken (): NetworkToken {
  return { secret: new Uint8Array(randomBytes(SECRET_BYTES)) }
}

export function formatToken (token: NetworkToken): string {
  return TOKEN_PREFIX + base58btc.baseEncode(concatBytes(token.secret, checksum(token.secret)))
}

export function parseToken (text: string): NetworkToken {
  const t = text.trim()
  if (!t.startsWith(TOKEN_PREFIX)) {
    throw new WeftError('ERR_TOKEN_PREFIX', `not a Weft token: it must start with "${TOKEN_PREFIX}" (check that the whole token was copied); create one with "weft token new"`)
  }
  let raw: Uint8Array
  try {
    raw = base58btc.baseDecode(t.slice(TOKEN_PREFIX.length))
  } catch {
    throw new WeftError('ERR_TOKEN_ENCODING', 'the token contains characters outside base58 (no 0, O, I or l); check for a typo or a truncated copy')
  }
  if (raw.byteLength !== SECRET_BYTES + CHECKSUM_BYTES) {
    throw new WeftError('ERR_TOKEN_LENGTH', `the token decodes to ${raw.byteLength} bytes, expected ${SECRET_BYTES + CHECKSUM_BYTES}; it was probably cut or has extra characters`)
  }
  const secret = raw.subarray(0, SECRET_BYTES)
  if (!equalBytes(raw.subarray(SECRET_BYTES), checksum(secret))) {
    throw new WeftError('ERR_TOKEN_CHECKSUM', 'the token checksum does not match: one or more characters are mistyped')
  }
  return { secret: new Uint8Array(secret) }
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
