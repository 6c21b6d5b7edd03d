import { isIPv4, isIPv6 } from 'node:net'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { z } from 'zod'
import { ClusterName } from '../log/bodies.js'
import { WeftError } from '../log/errors.js'
import { DEFAULT_DATA_DIR_TEXT } from './data-dir.js'

/**
 * The settings of `weft up`: their names, defaults and value parsers, and the shape of the
 * `weft:` and `kairos:` blocks of a config file. Parsers take one text value and throw
 * `WeftError('ERR_BAD_CONFIG')` saying what is wrong with it; `config.ts` prefixes the place
 * the value came from (flag, environment variable, or file, line and key).
 */

export type ApiAddress =
  | { kind: 'tcp', host: string, port: number }
  | { kind: 'unix', path: string }
  | { kind: 'off' }

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = typeof LOG_LEVELS[number]

/** Same values as `RequestedRole` in src/log/bodies.ts. */
export const ROLES = ['auto', 'master', 'worker', 'client'] as const
export type UpRole = typeof ROLES[number]

export const DEFAULTS = {
  dataDir: DEFAULT_DATA_DIR_TEXT,
  cluster: 'default',
  role: 'auto' as UpRole,
  listen: ['/ip4/0.0.0.0/tcp/4001'],
  mdns: true,
  publicDiscovery: true,
  api: '127.0.0.1:8080',
  syncInterval: '10s',
  joinWait: '5s',
  logLevel: 'info' as LogLevel,
  tun: true,
  tunName: 'weft0',
  directPort: '0',
  k3s: false,
  k3sBin: 'k3s',
  k3sKubeconfig: '/etc/rancher/k3s/k3s.yaml'
} as const

export const MIN_SYNC_INTERVAL_MS = 100
export const MAX_SYNC_INTERVAL_MS = 3_600_000

export interface UpConfigKey {
  /** The key in the `weft:` block of a config file (kebab-case, as the flag). */
  readonly key: string
  /** The command-line flag, with its argument. */
  readonly flag: string
  /** The environment variable read for it, if any. */
  readonly env?: string
  /** The default, as a user would write it; undefined when there is none. */
  readonly default?: string
  /** One line, for `weft up --help` and docs/config.md. */
  readonly description: string
}

/** Every key of the `weft:` block, in the order help and docs list them. */
export const UP_CONFIG_KEYS: readonly UpConfigKey[] = [
  { key: 'token', flag: '--token <token>', env: 'WEFT_TOKEN', description: 'network token (weft1..., from "weft token new"); admits this machine to the network' },
  { key: 'token-file', flag: '--token-file <path>', description: 'read the network token from this file (surrounding whitespace is ignored)' },
  { key: 'data-dir', flag: '--data-dir <dir>', env: 'WEFT_DATA_DIR', default: DEFAULTS.dataDir, description: 'node data directory (identity key and event log)' },
  { key: 'cluster', flag: '--cluster <name>', default: DEFAULTS.cluster, description: 'Kubernetes cluster this node belongs to (a DNS label)' },
  { key: 'role', flag: '--role <role>', default: DEFAULTS.role, description: 'requested k3s role: auto, master, worker or client' },
  { key: 'hostname', flag: '--hostname <name>', default: 'the system hostname', description: 'node name announced to the network (DNS name under the cluster)' },
  { key: 'listen', flag: '--listen <multiaddr>', default: DEFAULTS.listen.join(', '), description: 'libp2p TCP listen address; repeat the flag (or use a YAML list) for several' },
  { key: 'peers', flag: '--peer <multiaddr>', description: 'bootstrap peer ending in /p2p/<peer id>; repeat the flag (or use a YAML list) for several' },
  { key: 'bootstrap', flag: '--bootstrap <multiaddr,...>', env: 'WEFT_BOOTSTRAP', default: 'the public libp2p bootstrap nodes', description: 'public libp2p nodes (DHT servers, relays) used to find members across the internet; comma-separated or repeated, each ending in /p2p/<peer id> (docs/mesh.md, "Beyond the LAN")' },
  { key: 'public-discovery', flag: '--no-public-discovery', default: 'true', description: 'find members through the public libp2p DHT and relays (--no-public-discovery or "public-discovery: false": only mDNS, --peer and the peer book, as an air-gapped network needs)' },
  { key: 'public-ranges', flag: '--public-ranges <cidr,...>', description: 'address ranges to treat as public although libp2p calls them private (e.g. 100.64.0.0/10 on a carrier WAN, 198.18.0.0/15 in a lab); comma-separated or repeated' },
  { key: 'mdns', flag: '--no-mdns', default: 'true', description: 'discover peers on the local network with mDNS (--no-mdns or "mdns: false" turns it off)' },
  { key: 'api', flag: '--api <host:port|path|off>', default: DEFAULTS.api, description: 'HTTP API address: host:port, [ipv6]:port, a unix socket path (/... or ./...), or off' },
  { key: 'sync-interval', flag: '--sync-interval <duration>', default: DEFAULTS.syncInterval, description: 'anti-entropy round period: 500ms, 10s, 1m or seconds (100ms to 1h)' },
  { key: 'join-wait', flag: '--join-wait <duration>', default: DEFAULTS.joinWait, description: 'on first start, how long to wait for a first sync with a peer before writing the join alone (0 = do not wait)' },
  { key: 'log-level', flag: '--log-level <level>', default: DEFAULTS.logLevel, description: `log level: ${LOG_LEVELS.join(', ')}` },
  { key: 'tun', flag: '--no-tun', default: 'true', description: 'run the VPN data plane on a TUN device (--no-tun or "tun: false": stay in the log without one; needs no root)' },
  { key: 'tun-name', flag: '--tun-name <name>', default: DEFAULTS.tunName, description: 'name of the TUN device (at most 15 characters)' },
  { key: 'direct-port', flag: '--direct-port <port|off>', default: '0 (a free port)', description: 'TCP port of the VPN\'s direct path between peers (docs/vpn.md, "Direct path"); off = packets over the mesh streams only' },
  { key: 'dns', flag: '--dns <addr>', description: 'serve the network\'s DNS (node names, clusterset.local) on ip:port or overlay:port (the node\'s overlay address, once leased); repeatable; default 53' },
  { key: 'dns-upstreams', flag: '--dns-upstream <ip[:port]>', description: 'resolver for names outside Weft\'s zones, repeatable; without one such queries are REFUSED' },
  { key: 'dns-allow', flag: '--dns-allow <cidr|any>', description: 'also answer DNS clients from this network (default: loopback, the overlay and the networks members advertise only); repeatable; "any" answers everyone' },
  { key: 'service-address', flag: '--service-address <ip>', description: 'the address pods reach this node at, for the EndpointSlices of imported services (default: the overlay address, else POD_IP)' },
  { key: 'kubeconfig', flag: '--kubeconfig <path|in-cluster>', description: 'run the multi-cluster services agent (MCS) against this Kubernetes cluster: a kubeconfig file, or in-cluster for the pod\'s service account' },
  { key: 'share-kube-api', flag: '--share-kube-api', default: 'false', description: 'let the members named by allow reach this cluster\'s Kubernetes API server over the mesh (weft kube-proxy on their side)' },
  { key: 'entangle', flag: '--entangle', default: 'false', description: 'run the Entanglement and Manifests controllers against the cluster of kubeconfig (docs/entangle.md; the CRDs of deploy/crds/ must be installed)' },
  { key: 'entangle-webhook', flag: '--entangle-webhook <ip:port>', description: 'serve the sidecar injection webhook on this address over TLS with the agent\'s own CA (with entangle; deploy/webhook.yaml)' },
  { key: 'sidecar-image', flag: '--sidecar-image <image>', description: 'the image of injected weft sidecars (the agent\'s own; default: the WEFT_IMAGE environment variable)' },
  { key: 'allow', flag: '--allow <peer-id|hostname>', description: 'a member allowed to use the shared Kubernetes API; repeatable, or a YAML list' },
  { key: 'k3s', flag: '--k3s', default: 'false', description: 'run k3s as the roles projection decides (init server, extra server or agent) once the decision is stable; needs the TUN device' },
  { key: 'k3s-bin', flag: '--k3s-bin <path>', default: DEFAULTS.k3sBin, description: 'the k3s binary (looked up on PATH)' },
  { key: 'k3s-kubeconfig', flag: '--k3s-kubeconfig <path>', default: DEFAULTS.k3sKubeconfig, description: 'where a k3s server writes its admin kubeconfig (what get-kubeconfig serves)' },
  { key: 'k3s-args', flag: '--k3s-arg <arg>', description: 'an extra k3s flag, repeatable, in the --flag=value form (e.g. --k3s-arg=--disable=traefik); a YAML list in the file' },
  { key: 'advertise', flag: '--advertise <cidr>', description: 'a network reachable through this node (a LAN, a pod or service CIDR); repeat the flag (or use a YAML list) for several' },
  { key: 'path-include', flag: '--path-include <iface|cidr>', description: 'an interface (glob such as wg*) or CIDR the mesh may use although it looks like a tunnel or virtual network; repeatable, or a YAML list (docs/vpn.md, "Which path")' },
  { key: 'path-exclude', flag: '--path-exclude <iface|cidr>', description: 'an interface (glob) or CIDR the mesh never listens on, announces or dials, besides the default list; repeatable, or a YAML list' }
]

function bad (message: string): WeftError {
  return new WeftError('ERR_BAD_CONFIG', message)
}

/** A user value in a message: quoted, bounded, control characters escaped. */
export function quote (text: string): string {
  const t = text.length > 80 ? text.slice(0, 77) + '...' : text
  return JSON.stringify(t)
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/y

/**
 * A duration in milliseconds: `500ms`, `10s`, `1m`, `1h`, Go-style sums like `1m30s`, or a plain
 * number of seconds (`10`, `0.5`). Must lie between 100ms and 1h.
 */
/** `--join-wait`: 0 (do not wait) or a duration of 100ms to 1h. */
export function parseJoinWait (text: string): number {
  return /^0+(?:\.0*)?(?:ms|s|m|h)?$/.test(text.trim()) ? 0 : parseDuration(text)
}

export function parseDuration (text: string): number {
  const t = text.trim()
  const hint = 'write it as 500ms, 10s, 1m or a number of seconds'
  let ms: number
  if (/^\d+(?:\.\d+)?$/.test(t)) {
    ms = Number(t) * 1000
  } else {
    ms = 0
    DURATION_PART.lastIndex = 0
    let matched = 0
    while (DURATION_PART.lastIndex < t.length) {
      const m = DURATION_PART.exec(t)
      if (m === null) { matched = -1; break }
      ms += Number(m[1]) * (DURATION_UNITS[m[2] as string] as number)
      matched++
    }
    if (matched <= 0) throw bad(`${quote(text)} is not a duration; ${hint}`)
  }
  ms = Math.round(ms)
  if (ms < MIN_SYNC_INTERVAL_MS || ms > MAX_SYNC_INTERVAL_MS) {
    throw bad(`${quote(text)} is out of range: it must be between 100ms and 1h`)
  }
  return ms
}

const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

/**
 * The HTTP API address: `off`; a unix socket path (starts with `/`, `./` or `../`, or is written
 * `unix:<path>`); or `host:port` with an IPv4 address, a host name or a bracketed IPv6 address
 * (`[::1]:8080`). Port 0 asks the system for a free port. The returned IPv6 host has no brackets.
 */
export function parseApiAddress (text: string): ApiAddress {
  const t = text.trim()
  const hint = 'use host:port (127.0.0.1:8080, [::1]:8080), a unix socket path (/run/weft/api.sock) or off'
  if (t === 'off') return { kind: 'off' }
  if (t.startsWith('unix:')) {
    const path = t.slice('unix:'.length).replace(/^\/\/(?=\/)/, '')
    if (path === '') throw bad(`${quote(text)} names no socket path; ${hint}`)
    return { kind: 'unix', path }
  }
  if (t.startsWith('/') || t.startsWith('./') || t.startsWith('../')) return { kind: 'unix', path: t }
  if (t.includes('://')) throw bad(`${quote(text)} is a URL; give the address without the scheme, e.g. 127.0.0.1:8080`)
  let host: string
  let portText: string
  const bracketed = /^\[([^\]]*)\]:([^:]*)$/.exec(t)
  if (bracketed !== null) {
    host = bracketed[1] as string
    portText = bracketed[2] as string
    if (!isIPv6(host)) throw bad(`${quote(text)}: ${quote(host)} is not an IPv6 address; ${hint}`)
  } else {
    const colon = t.lastIndexOf(':')
    if (colon < 0) throw bad(`${quote(text)} has no port; ${hint}`)
    host = t.slice(0, colon)
    portText = t.slice(colon + 1)
    if (host.includes(':')) throw bad(`${quote(text)}: write an IPv6 address in brackets, e.g. [::1]:8080`)
    if (host === '') throw bad(`${quote(text)} has no host; write 127.0.0.1:${portText} for this machine only or 0.0.0.0:${portText} for every interface`)
    if (!isIPv4(host) && !HOST_NAME.test(host)) throw bad(`${quote(text)}: ${quote(host)} is not an IP address or host name; ${hint}`)
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw bad(`${quote(text)}: the port must be a number from 0 to 65535`)
  }
  return { kind: 'tcp', host, port: Number(portText) }
}

/** A listen address: a valid multiaddr on /ip4 or /ip6 with a /tcp port. Returns its canonical text. */
export function parseListenAddress (text: string): string {
  const t = text.trim()
  let components
  try {
    components = multiaddr(t).getComponents()
  } catch (err) {
    throw bad(`${quote(text)} is not a multiaddr (${(err as Error).message}); write it like /ip4/0.0.0.0/tcp/4001`)
  }
  const first = components[0]?.name
  if (first !== 'ip4' && first !== 'ip6') {
    throw bad(`${quote(text)} must start with /ip4/<address> or /ip6/<address>, e.g. /ip4/0.0.0.0/tcp/4001 or /ip6/::/tcp/4001`)
  }
  if (components[1]?.name !== 'tcp') {
    throw bad(`${quote(text)} has no /tcp/<port> after the address: Weft listens on TCP, e.g. /ip4/0.0.0.0/tcp/4001`)
  }
  return multiaddr(t).toString()
}

/** A bootstrap peer: a valid multiaddr ending in /p2p/<peer id>. Returns its canonical text. */
export function parsePeerAddress (text: string): string {
  const t = text.trim()
  const example = '/ip4/192.0.2.10/tcp/4001/p2p/12D3KooW...'
  let components
  try {
    components = multiaddr(t).getComponents()
  } catch (err) {
    throw bad(`${quote(text)} is not a multiaddr (${(err as Error).message}); write it like ${example}`)
  }
  const last = components[components.length - 1]
  if (last?.name !== 'p2p' || last.value === undefined) {
    throw bad(`${quote(text)} must end with /p2p/<peer id> (the id the peer prints when it starts), e.g. ${example}`)
  }
  for (const c of components) {
    if (c.name !== 'p2p' || c.value === undefined) continue
    try {
      peerIdFromString(c.value)
    } catch {
      throw bad(`${quote(text)}: ${quote(c.value)} is not a valid peer id; copy the whole id the peer prints when it starts`)
    }
  }
  return multiaddr(t).toString()
}

/**
 * The public libp2p bootstrap nodes (the list js-libp2p and kubo ship): DHT servers that answer
 * the public `/ipfs/kad/1.0.0` protocol, the default of `--bootstrap`.
 */
export const PUBLIC_BOOTSTRAP: readonly string[] = [
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN',
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa',
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb',
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzJ3eU3TmsaTSZ4vQj',
  '/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ'
]

/** `--bootstrap`, `WEFT_BOOTSTRAP`: one value may hold several addresses separated by commas. */
export function splitList (values: readonly string[]): string[] {
  return values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '')
}

/** A range that counts as public (`--public-ranges`): an IPv4 or IPv6 CIDR, returned canonical. */
export function parsePublicRange (text: string): string {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text.trim())
  const ok = m !== null && ((isIPv4(m[1] as string) && Number(m[2]) <= 32) || (isIPv6(m[1] as string) && Number(m[2]) <= 128))
  if (!ok) throw bad(`${quote(text)} is not a CIDR; write it like 198.18.0.0/15 or 100.64.0.0/10`)
  return text.trim()
}

export function parseCluster (text: string): string {
  if (!ClusterName.safeParse(text).success) {
    throw bad(`${quote(text)} is not a valid cluster name: use a DNS label of 1 to 63 lowercase letters, digits and "-", starting and ending with a letter or digit`)
  }
  return text
}

export function parseRole (text: string): UpRole {
  const r = (ROLES as readonly string[]).find((x) => x === text)
  if (r === undefined) throw bad(`${quote(text)} is not a role; use one of ${ROLES.join(', ')}`)
  return r as UpRole
}

export function parseLogLevel (text: string): LogLevel {
  const l = (LOG_LEVELS as readonly string[]).find((x) => x === text)
  if (l === undefined) throw bad(`${quote(text)} is not a log level; use one of ${LOG_LEVELS.join(', ')}`)
  return l as LogLevel
}

/** Same bound as `node.join` bodies (1 to 253 characters); no whitespace or control characters. */
export function parseHostname (text: string): string {
  if (text.length < 1 || text.length > 253 || /[\s\p{Cc}]/u.test(text)) {
    throw bad(`${quote(text)} is not a usable hostname: it must be 1 to 253 characters with no spaces or control characters`)
  }
  return text
}

/** Kairos `role` values mapped to Weft roles. */
export const KAIROS_ROLES: Readonly<Record<string, UpRole>> = { master: 'master', worker: 'worker', auto: 'auto' }

// --- file blocks -------------------------------------------------------------------------------

/** `key:` with no value is null in YAML: it counts as not set. */
const text = z.string().nullish()
const addressList = z.union([z.string(), z.array(z.string())]).nullish()

/** The `weft:` block. Strict: a misspelled key is an error, not a silently ignored setting. */
export const WeftBlock = z.strictObject({
  token: text,
  'token-file': text,
  'data-dir': text,
  cluster: text,
  role: text,
  hostname: text,
  listen: addressList,
  peers: addressList,
  mdns: z.boolean().nullish(),
  bootstrap: addressList,
  'public-discovery': z.boolean().nullish(),
  'public-ranges': addressList,
  api: z.union([z.string(), z.literal(false)]).nullish(),
  'sync-interval': z.union([z.string(), z.number()]).nullish(),
  'join-wait': z.union([z.string(), z.number()]).nullish(),
  'log-level': text,
  tun: z.boolean().nullish(),
  'tun-name': text,
  'direct-port': z.union([z.string(), z.number()]).nullish(),
  advertise: addressList,
  'path-include': addressList,
  'path-exclude': addressList,
  dns: addressList,
  'dns-upstreams': addressList,
  'dns-allow': addressList,
  'service-address': text,
  kubeconfig: text,
  'share-kube-api': z.boolean().nullish(),
  entangle: z.boolean().nullish(),
  'entangle-webhook': text,
  'sidecar-image': text,
  allow: addressList,
  k3s: z.boolean().nullish(),
  'k3s-bin': text,
  'k3s-kubeconfig': text,
  'k3s-args': addressList
})
export type WeftBlock = z.infer<typeof WeftBlock>

/** What each `weft:` key must hold, for type errors. */
export const WEFT_KEY_EXPECTS: Readonly<Record<keyof WeftBlock, string>> = {
  token: 'a token string (weft1...)',
  'token-file': 'a file path',
  'data-dir': 'a directory path',
  cluster: 'a cluster name (DNS label)',
  role: `one of ${ROLES.join(', ')}`,
  hostname: 'a host name',
  listen: 'a multiaddr or a list of multiaddrs',
  peers: 'a multiaddr or a list of multiaddrs',
  mdns: 'true or false',
  bootstrap: 'a multiaddr ending in /p2p/<peer id>, or a list of them',
  'public-discovery': 'true or false',
  'public-ranges': 'a CIDR such as 198.18.0.0/15, or a list of them',
  api: 'host:port, a unix socket path, or off',
  'sync-interval': 'a duration such as 10s, or a number of seconds',
  'join-wait': 'a duration such as 5s, or 0',
  'log-level': `one of ${LOG_LEVELS.join(', ')}`,
  tun: 'true or false',
  'tun-name': 'an interface name of 1 to 15 letters, digits, - or _',
  'direct-port': 'a TCP port (0 = any free port) or off',
  advertise: 'a CIDR or a list of CIDRs such as 192.168.1.0/24',
  'path-include': 'an interface name (glob) or CIDR, or a list of them',
  'path-exclude': 'an interface name (glob) or CIDR, or a list of them',
  dns: 'ip:port, overlay:port, or a list of them',
  kubeconfig: 'a kubeconfig file path, or in-cluster',
  'share-kube-api': 'true or false',
  entangle: 'true or false',
  'entangle-webhook': 'ip:port',
  'sidecar-image': 'an image reference',
  allow: 'a peer id or member hostname, or a list of them',
  'dns-upstreams': 'ip[:port] or a list of them',
  'dns-allow': 'a CIDR, "any", or a list of them',
  'service-address': 'an IP address',
  k3s: 'true or false',
  'k3s-bin': 'a path to the k3s binary, or a name on PATH',
  'k3s-kubeconfig': 'a file path',
  'k3s-args': 'a k3s flag or a list of k3s flags such as --disable=traefik'
}

/**
 * The `kairos:` block of a Kairos (edgevpn) cloud-config. Only the keys Weft maps are checked;
 * every other Kairos key is accepted and ignored.
 */
export const KairosBlock = z.looseObject({
  network_token: text,
  network_id: z.union([z.string(), z.number()]).nullish(),
  role: text
})
export type KairosBlock = z.infer<typeof KairosBlock>

export const KAIROS_KEY_EXPECTS: Readonly<Record<'network_token' | 'network_id' | 'role', string>> = {
  network_token: 'a token string',
  network_id: 'a cluster name (DNS label)',
  role: `one of ${Object.keys(KAIROS_ROLES).join(', ')}`
}

/** "did you mean": `dataDir`, `data_dir` and `peer` all point to a real key. */
export function suggestKey (unknown: string, keys: readonly string[]): string | undefined {
  const norm = (k: string): string => k.toLowerCase().replace(/[-_\s]/g, '')
  const u = norm(unknown)
  return keys.find((k) => norm(k) === u || norm(k) === u + 's' || norm(k) + 's' === u)
}

/** A YAML value described in an error message (tokens are never echoed). */
export function describeValue (value: unknown, secret = false): string {
  if (value === null || value === undefined) return 'nothing'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a mapping'
  if (typeof value === 'string') return secret ? 'a string' : `the string ${quote(value)}`
  if (typeof value === 'number') return `the number ${value}`
  if (typeof value === 'boolean') return String(value)
  return typeof value
}
