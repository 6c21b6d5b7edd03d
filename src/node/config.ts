import { hostname as osHostname } from 'node:os'
import { isIP } from 'node:net'
import { readFile } from 'node:fs/promises'
import { dirname, isAbsolute, resolve } from 'node:path'
import type { Document, LineCounter } from 'yaml'
import type { z } from 'zod'
import { WeftError, isWeftError } from '../log/errors.js'
import { formatToken, parseToken, TOKEN_PREFIX, type NetworkToken } from '../log/token.js'
import { parseCidr } from '../projections/ip.js'
import { parsePathRules } from '../net/address-filter.js'
import { parseListen } from './service-registry.js'
import {
  DEFAULTS, KAIROS_KEY_EXPECTS, KAIROS_ROLES, KairosBlock, UP_CONFIG_KEYS, WEFT_KEY_EXPECTS, WeftBlock,
  describeValue, parseApiAddress, parseCluster, parseDuration, parseJoinWait, parseHostname, parseListenAddress,
  parseLogLevel, parsePeerAddress, parsePublicRange, parseRole, quote, splitList, suggestKey, PUBLIC_BOOTSTRAP,
  type ApiAddress, type LogLevel, type UpRole
} from './config-schema.js'
import { defaultDataDir } from './data-dir.js'

export { UP_CONFIG_KEYS, parseApiAddress, parseDuration }
export type { ApiAddress, LogLevel, UpConfigKey, UpRole } from './config-schema.js'

/**
 * The settings of `weft up`, from flags, environment and a YAML config file.
 *
 * Precedence, highest first: flags > environment (WEFT_TOKEN, WEFT_DATA_DIR) > the `weft:` block
 * of the config file > its `kairos:` block > defaults. Each setting comes from exactly one place;
 * lower places are not merged in (a `--listen` flag replaces the file's `listen:` list).
 */

/**
 * The flags of `weft up`, as the CLI parsed them.
 *
 * `mdns` must be undefined unless the user passed `--no-mdns` (then false): commander sets
 * `mdns: true` by default for a `--no-mdns` option, and passing that true on would override
 * `mdns: false` in the config file. The CLI should pass `opts.mdns === false ? false : undefined`.
 * An empty `listen` or `peer` list counts as not given.
 */
export interface UpFlags {
  token?: string
  tokenFile?: string
  dataDir?: string
  cluster?: string
  role?: string
  hostname?: string
  listen?: string[]
  peer?: string[]
  mdns?: boolean
  /** --bootstrap values (each may hold several comma-separated addresses). */
  bootstrap?: string[]
  /** false when --no-public-discovery was given (undefined otherwise, like mdns). */
  publicDiscovery?: boolean
  publicRanges?: string[]
  api?: string
  syncInterval?: string
  joinWait?: string
  logLevel?: string
  config?: string
  /** false when --no-tun was given (undefined otherwise, like mdns). */
  tun?: boolean
  tunName?: string
  directPort?: string
  advertise?: string[]
  pathInclude?: string[]
  pathExclude?: string[]
  dns?: string[]
  dnsUpstream?: string[]
  dnsAllow?: string[]
  serviceAddress?: string
  kubeconfig?: string
  /** true when --share-kube-api was given. */
  shareKubeApi?: boolean
  /** true when --entangle was given. */
  entangle?: boolean
  entangleWebhook?: string
  sidecarImage?: string
  allow?: string[]
  /** true when --k3s was given. */
  k3s?: boolean
  k3sBin?: string
  k3sKubeconfig?: string
  k3sArgs?: string[]
}

export interface UpConfig {
  token: NetworkToken
  /** The token in canonical text form (secret: never log it). */
  tokenText: string
  /** Absolute path. */
  dataDir: string
  cluster: string
  /** Whether a flag or the file named the cluster (else it is the default, or the Kubernetes cluster id). */
  clusterGiven: boolean
  role: UpRole
  hostname: string
  /** Canonical multiaddr text. */
  listen: string[]
  /** Canonical multiaddr text, each ending in /p2p/<peer id>; duplicates removed. */
  peers: string[]
  mdns: boolean
  /** Public libp2p nodes (DHT servers, relays) to start from; unused without public discovery. */
  bootstrap: string[]
  /** Find members through the public DHT and relays (docs/mesh.md, "Beyond the LAN"). */
  publicDiscovery: boolean
  /** CIDRs treated as public although libp2p calls them private. */
  publicRanges: string[]
  /** A relative unix socket path is made absolute. */
  api: ApiAddress
  syncIntervalMs: number
  /** First start: how long to wait for a first sync before joining alone (0: not at all). */
  joinWaitMs: number
  logLevel: LogLevel
  tun: boolean
  tunName: string
  /** The VPN direct path's TCP port (0 = any), or 'off'. */
  directPort: number | 'off'
  /** Canonical CIDR text; duplicates removed. */
  advertise: string[]
  /** Interface globs or CIDRs for the mesh's address filter (net/address-filter.ts). */
  pathInclude: string[]
  pathExclude: string[]
  /** DNS listen addresses; host 'overlay' = this node's overlay address once it has one. */
  dns: DnsListen[]
  /** ip:port of the upstream resolvers. */
  dnsUpstreams: string[]
  /** Networks whose clients the DNS server answers besides loopback, the overlay and advertised routes; 'any' = everyone. */
  dnsAllow: string[]
  /** The address pods reach this node at, for EndpointSlices (--service-address; else the overlay address or POD_IP). */
  serviceAddress?: string
  /** The MCS agent's cluster: an absolute kubeconfig path, 'in-cluster', or undefined (no agent). */
  kubeconfig?: string
  shareKubeApi: boolean
  /** The Entanglement and Manifests controllers (docs/entangle.md); needs kubeconfig. */
  entangle: boolean
  /** Where the sidecar injection webhook listens (ip:port), when it runs. */
  entangleWebhook?: { host: string, port: number }
  /** The image of injected sidecars. */
  sidecarImage?: string
  /** PeerIds or member hostnames allowed to use the shared API. */
  allow: string[]
  k3s: boolean
  k3sBin: string
  /** Absolute path. */
  k3sKubeconfig: string
  k3sArgs: string[]
  /** Absolute path of the config file, when one was given. */
  configFile?: string
}

function bad (message: string, cause?: unknown): WeftError {
  return new WeftError('ERR_BAD_CONFIG', message, cause === undefined ? undefined : { cause })
}

/** Runs a value parser; a failure gets the value's place in front of its message. */
function at<T> (where: string, parse: () => T): T {
  try {
    return parse()
  } catch (err) {
    if (isWeftError(err)) throw bad(`${where}: ${err.message}`, err)
    throw err
  }
}

function nonEmpty (v: string | null | undefined): v is string {
  return typeof v === 'string' && v !== ''
}

// --- the config file ---------------------------------------------------------------------------

interface LoadedFile {
  path: string
  dir: string
  weft: WeftBlock
  kairos: KairosBlock
  /** `file:line: block.key` for a key of the file, for messages. */
  where: (block: 'weft' | 'kairos', key: string) => string
  /** The 1-based line of a key, if known. */
  line: (block: 'weft' | 'kairos', key: string) => number | undefined
}

/** The 1-based line of `block.key` (or of `block` alone), if the document has it. */
/** The yaml library: loaded with the first config file (~200 modules a node without --config never needs). */
type Yaml = typeof import('yaml')

function lineOf ({ isMap, isScalar }: Yaml, doc: Document, lines: LineCounter, block: string, key?: string): number | undefined {
  const root = doc.contents
  if (!isMap(root)) return undefined
  const blockPair = root.items.find((p) => isScalar(p.key) && p.key.value === block)
  let node: unknown = blockPair?.key
  if (key !== undefined && blockPair !== undefined && isMap(blockPair.value)) {
    node = blockPair.value.items.find((p) => isScalar(p.key) && p.key.value === key)?.key ?? node
  }
  const offset = (node as { range?: [number, number, number] } | undefined)?.range?.[0]
  return offset === undefined ? undefined : lines.linePos(offset).line
}

function zodProblems (issues: z.core.$ZodIssue[], block: 'weft' | 'kairos', raw: Record<string, unknown>,
  { where, line }: Pick<LoadedFile, 'where' | 'line'>, file: string): string[] {
  const validKeys = UP_CONFIG_KEYS.map((k) => k.key)
  const out: Array<{ line: number, text: string }> = []
  const push = (key: string, text: string): void => { out.push({ line: line(block, key) ?? 0, text }) }
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const hint = suggestKey(key, validKeys)
        const n = line(block, key)
        push(key, `${file}${n === undefined ? '' : `:${n}`}: unknown key ${quote(key)} in the ${block}: block` +
          (hint !== undefined ? ` (did you mean "${hint}"?)` : '') +
          `; valid keys are ${validKeys.join(', ')}`)
      }
      continue
    }
    const key = String(issue.path[0] ?? '')
    const expects = block === 'weft'
      ? WEFT_KEY_EXPECTS[key as keyof typeof WEFT_KEY_EXPECTS]
      : KAIROS_KEY_EXPECTS[key as keyof typeof KAIROS_KEY_EXPECTS]
    const value = raw[key]
    const secret = key === 'token' || key === 'network_token'
    if (Array.isArray(value) && issue.code === 'invalid_union') {
      const i = value.findIndex((v) => typeof v !== 'string')
      push(key, `${where(block, key)}[${i}]: must be a multiaddr string, got ${describeValue(value[i])}`)
    } else {
      push(key, `${where(block, key)}: must be ${expects ?? 'valid'}, got ${describeValue(value, secret)}`)
    }
  }
  out.sort((a, b) => a.line - b.line)
  return out.length > 0 ? out.map((p) => p.text) : [`${file}: invalid ${block}: block`]
}

async function loadConfigFile (file: string): Promise<LoadedFile> {
  const path = resolve(file)
  let source: string
  try {
    source = await readFile(path, 'utf8')
  } catch (err) {
    throw bad(`--config: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; check the path and its permissions`, err)
  }
  const yaml = await import('yaml')
  const lines = new yaml.LineCounter()
  const doc = yaml.parseDocument(source, { lineCounter: lines, prettyErrors: false })
  const syntax = doc.errors[0]
  if (syntax !== undefined) {
    const pos = lines.linePos(syntax.pos[0])
    throw bad(`${path}:${pos.line}:${pos.col}: invalid YAML at line ${pos.line}, column ${pos.col}: ${syntax.message}`)
  }
  let data: unknown
  try {
    data = doc.toJS()
  } catch (err) {
    throw bad(`${path}: cannot read the YAML document: ${(err as Error).message}`, err)
  }
  const noBlock = `no weft: or kairos: block in ${path}; put the settings of "weft up" under a top-level weft: key (see docs/config.md)`
  if (data === null || typeof data !== 'object' || Array.isArray(data)) throw bad(noBlock)
  const top = data as Record<string, unknown>
  if (!('weft' in top) && !('kairos' in top)) {
    throw bad('p2p' in top
      ? `${noBlock}; a Kairos p2p: block is not read (its edgevpn token cannot join a Weft network): add a weft: block with a token from "weft token new"`
      : noBlock)
  }
  const line = (block: 'weft' | 'kairos', key: string): number | undefined => lineOf(yaml, doc, lines, block, key)
  const where = (block: 'weft' | 'kairos', key: string): string => {
    const n = line(block, key)
    return n === undefined ? `${path}: ${block}.${key}` : `${path}:${n}: ${block}.${key}`
  }
  const block = <S extends z.ZodType>(name: 'weft' | 'kairos', schema: S): z.infer<S> => {
    const raw = top[name] ?? {}
    if (typeof raw !== 'object' || Array.isArray(raw)) {
      const line = lineOf(yaml, doc, lines, name)
      throw bad(`${path}${line === undefined ? '' : `:${line}`}: ${name}: must be a mapping of settings (key: value lines indented under it), got ${describeValue(raw, true)}`)
    }
    const parsed = schema.safeParse(raw)
    if (!parsed.success) {
      throw bad(zodProblems(parsed.error.issues, name, raw as Record<string, unknown>, { where, line }, path).join('\n'))
    }
    return parsed.data
  }
  return { path, dir: dirname(path), weft: block('weft', WeftBlock), kairos: block('kairos', KairosBlock), where, line }
}

// --- resolution --------------------------------------------------------------------------------

function pathFrom (base: string, p: string): string {
  return isAbsolute(p) ? p : resolve(base, p)
}

async function readTokenFile (where: string, path: string): Promise<string> {
  let content: string
  try {
    content = await readFile(path, 'utf8')
  } catch (err) {
    throw bad(`${where}: cannot read the token file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err)
  }
  const t = content.trim()
  if (t === '') throw bad(`${where}: the token file ${path} is empty; write the output of "weft token new" into it`)
  return t
}

interface TokenSource { where: string, text?: string, file?: string }

function pickToken (flags: UpFlags, env: Record<string, string | undefined>, file: LoadedFile | undefined): TokenSource | undefined {
  if (nonEmpty(flags.token) && nonEmpty(flags.tokenFile)) {
    throw bad('--token and --token-file were both given; pass only one of them')
  }
  if (nonEmpty(flags.token)) return { where: '--token', text: flags.token }
  if (nonEmpty(flags.tokenFile)) return { where: '--token-file', file: resolve(flags.tokenFile) }
  if (nonEmpty(env.WEFT_TOKEN)) return { where: 'WEFT_TOKEN', text: env.WEFT_TOKEN }
  if (file === undefined) return undefined
  const w = file.weft
  if (w.token != null && w['token-file'] != null) {
    throw bad(`${file.where('weft', 'token-file')}: the weft: block has both token and token-file; keep only one`)
  }
  if (w.token != null) {
    if (w.token.trim() === '') throw bad(`${file.where('weft', 'token')}: empty; set it to a token from "weft token new"`)
    return { where: file.where('weft', 'token'), text: w.token }
  }
  if (w['token-file'] != null) return { where: file.where('weft', 'token-file'), file: pathFrom(file.dir, w['token-file']) }
  // Kairos examples ship `network_token: ""`: an empty token is "not set".
  const k = file.kairos.network_token
  if (nonEmpty(k) && k.trim() !== '') {
    const where = file.where('kairos', 'network_token')
    if (!k.trim().startsWith(TOKEN_PREFIX)) {
      throw bad(`${where}: this is not a Weft token (Weft tokens start with "${TOKEN_PREFIX}"; ` +
        'an edgevpn/Kairos token cannot join a Weft network). Create one with "weft token new" and put it in ' +
        'kairos.network_token or weft.token, or pass --token')
    }
    return { where, text: k }
  }
  return undefined
}

const NO_TOKEN = 'no network token: create one with "weft token new" (once per network), then give it to ' +
  'every node with --token <token>, the WEFT_TOKEN environment variable, --token-file <path>, or ' +
  'token: in the weft: block of the --config file'

/**
 * Resolves the settings of `weft up`. `env` is usually `process.env`; `opts.hostname` replaces
 * `os.hostname()` (for tests). Relative paths in flags and environment are resolved against the
 * working directory, relative paths in the config file against the file's directory.
 * Throws `WeftError('ERR_BAD_CONFIG')` naming the flag, variable or file line and key at fault.
 */
export async function resolveUpConfig (flags: UpFlags, env: Record<string, string | undefined>,
  opts: { hostname?: () => string } = {}): Promise<UpConfig> {
  const file = nonEmpty(flags.config) ? await loadConfigFile(flags.config) : undefined
  const w: WeftBlock = file?.weft ?? {}
  const k: KairosBlock = file?.kairos ?? {}
  const fw = (key: string): string => file === undefined ? `weft.${key}` : file.where('weft', key)
  const fk = (key: string): string => file === undefined ? `kairos.${key}` : file.where('kairos', key)
  const fileDir = file?.dir ?? process.cwd()

  // Every value of the weft: block is checked even when a flag overrides it: it is Weft's own
  // config. Values of the kairos: block are checked only when used (a Kairos file may hold an
  // edgevpn token that --token replaces).
  const fileCluster = w.cluster != null ? at(fw('cluster'), () => parseCluster(w.cluster as string)) : undefined
  const fileRole = w.role != null ? at(fw('role'), () => parseRole(w.role as string)) : undefined
  const fileHostname = w.hostname != null ? at(fw('hostname'), () => parseHostname(w.hostname as string)) : undefined
  const asList = (v: string | string[]): string[] => typeof v === 'string' ? [v] : v
  const fileListen = w.listen != null ? asList(w.listen).map((a, i) => at(`${fw('listen')}[${i}]`, () => parseListenAddress(a))) : undefined
  if (fileListen !== undefined && fileListen.length === 0) throw bad(`${fw('listen')}: the list is empty; give at least one address such as ${DEFAULTS.listen[0]}`)
  const filePeers = w.peers != null ? asList(w.peers).map((a, i) => at(`${fw('peers')}[${i}]`, () => parsePeerAddress(a))) : undefined
  const fileApi = w.api != null ? at(fw('api'), () => w.api === false ? { kind: 'off' as const } : parseApiAddress(w.api as string)) : undefined
  const fileSync = w['sync-interval'] != null ? at(fw('sync-interval'), () => parseDuration(String(w['sync-interval']))) : undefined
  const fileLogLevel = w['log-level'] != null ? at(fw('log-level'), () => parseLogLevel(w['log-level'] as string)) : undefined
  const fileDirectPort = w['direct-port'] != null ? at(fw('direct-port'), () => parseDirectPort(String(w['direct-port']))) : undefined
  const fileTunName = w['tun-name'] != null ? at(fw('tun-name'), () => parseTunName(w['tun-name'] as string)) : undefined
  const fileAdvertise = w.advertise != null ? asList(w.advertise).map((c, i) => at(`${fw('advertise')}[${i}]`, () => parseAdvertisedCidr(c))) : undefined
  if (w['data-dir'] === '') throw bad(`${fw('data-dir')}: empty; remove it or give a directory`)
  if (w['token-file'] === '') throw bad(`${fw('token-file')}: empty; remove it or give a file path`)

  // token
  const source = pickToken(flags, env, file)
  if (source === undefined) throw bad(NO_TOKEN)
  const raw = source.file !== undefined ? await readTokenFile(source.where, source.file) : (source.text as string)
  const token = at(source.where, () => parseToken(raw))

  // data dir
  let dataDir: string
  if (nonEmpty(flags.dataDir)) dataDir = resolve(flags.dataDir)
  else if (nonEmpty(env.WEFT_DATA_DIR)) dataDir = resolve(env.WEFT_DATA_DIR)
  else if (w['data-dir'] != null) dataDir = pathFrom(fileDir, w['data-dir'])
  else dataDir = defaultDataDir(env)

  // cluster: Kairos network_id names the cluster
  let cluster: string
  if (flags.cluster !== undefined) cluster = at('--cluster', () => parseCluster(flags.cluster as string))
  else if (fileCluster !== undefined) cluster = fileCluster
  else if (k.network_id != null) {
    const id = String(k.network_id)
    cluster = at(fk('network_id'), () => {
      try {
        return parseCluster(id)
      } catch (err) {
        throw bad(`${(err as Error).message}; Weft uses kairos.network_id as the cluster name, so change it or set weft.cluster`)
      }
    })
  } else cluster = DEFAULTS.cluster
  const clusterGiven = flags.cluster !== undefined || fileCluster !== undefined || k.network_id != null

  // role
  let role: UpRole
  if (flags.role !== undefined) role = at('--role', () => parseRole(flags.role as string))
  else if (fileRole !== undefined) role = fileRole
  else if (k.role != null) {
    const kr = k.role
    const mapped = Object.hasOwn(KAIROS_ROLES, kr) ? KAIROS_ROLES[kr] : undefined
    if (mapped === undefined) {
      throw bad(`${fk('role')}: ${quote(kr)} has no Weft equivalent; use one of ${Object.keys(KAIROS_ROLES).join(', ')} ` +
        '(or set weft.role, which also accepts client)')
    }
    role = mapped
  } else role = DEFAULTS.role

  const hostname = flags.hostname !== undefined
    ? at('--hostname', () => parseHostname(flags.hostname as string))
    : fileHostname ?? at('the system hostname (set --hostname or weft.hostname)', () => parseHostname((opts.hostname ?? osHostname)()))

  const listen = flags.listen !== undefined && flags.listen.length > 0
    ? flags.listen.map((a) => at('--listen', () => parseListenAddress(a)))
    : fileListen ?? [...DEFAULTS.listen]

  const peers = flags.peer !== undefined && flags.peer.length > 0
    ? flags.peer.map((a) => at('--peer', () => parsePeerAddress(a)))
    : filePeers ?? []

  const fileBootstrap = w.bootstrap != null ? splitList(asList(w.bootstrap)).map((a, i) => at(`${fw('bootstrap')}[${i}]`, () => parsePeerAddress(a))) : undefined
  const bootstrap = flags.bootstrap !== undefined && splitList(flags.bootstrap).length > 0
    ? splitList(flags.bootstrap).map((a) => at('--bootstrap', () => parsePeerAddress(a)))
    : nonEmpty(env.WEFT_BOOTSTRAP)
      ? splitList([env.WEFT_BOOTSTRAP]).map((a) => at('WEFT_BOOTSTRAP', () => parsePeerAddress(a)))
      : fileBootstrap ?? [...PUBLIC_BOOTSTRAP]
  const filePublicRanges = w['public-ranges'] != null ? splitList(asList(w['public-ranges'])).map((c, i) => at(`${fw('public-ranges')}[${i}]`, () => parsePublicRange(c))) : undefined
  const publicRanges = flags.publicRanges !== undefined && splitList(flags.publicRanges).length > 0
    ? splitList(flags.publicRanges).map((c) => at('--public-ranges', () => parsePublicRange(c)))
    : filePublicRanges ?? []

  let api: ApiAddress
  let apiBase = process.cwd()
  if (flags.api !== undefined) api = at('--api', () => parseApiAddress(flags.api as string))
  else if (fileApi !== undefined) { api = fileApi; apiBase = fileDir } else api = parseApiAddress(DEFAULTS.api)
  if (api.kind === 'unix') api = { kind: 'unix', path: pathFrom(apiBase, api.path) }

  const syncIntervalMs = flags.syncInterval !== undefined
    ? at('--sync-interval', () => parseDuration(flags.syncInterval as string))
    : fileSync ?? parseDuration(DEFAULTS.syncInterval)

  const joinWaitMs = flags.joinWait !== undefined
    ? at('--join-wait', () => parseJoinWait(flags.joinWait as string))
    : w['join-wait'] != null ? at(fw('join-wait'), () => parseJoinWait(String(w['join-wait']))) : parseJoinWait(DEFAULTS.joinWait)

  const logLevel = flags.logLevel !== undefined
    ? at('--log-level', () => parseLogLevel(flags.logLevel as string))
    : fileLogLevel ?? DEFAULTS.logLevel

  const directPort = flags.directPort !== undefined ? at('--direct-port', () => parseDirectPort(flags.directPort as string)) : fileDirectPort ?? parseDirectPort(DEFAULTS.directPort)
  const tunName = flags.tunName !== undefined ? at('--tun-name', () => parseTunName(flags.tunName as string)) : fileTunName ?? DEFAULTS.tunName
  const advertise = flags.advertise !== undefined && flags.advertise.length > 0
    ? flags.advertise.map((c) => at('--advertise', () => parseAdvertisedCidr(c)))
    : fileAdvertise ?? []

  const dns = flags.dns !== undefined && flags.dns.length > 0
    ? flags.dns.map((a) => at('--dns', () => parseDnsListen(a)))
    : w.dns != null ? asList(w.dns).map((a, i) => at(`${fw('dns')}[${i}]`, () => parseDnsListen(a))) : []
  const dnsUpstreams = flags.dnsUpstream !== undefined && flags.dnsUpstream.length > 0
    ? flags.dnsUpstream.map((a) => at('--dns-upstream', () => parseUpstream(a)))
    : w['dns-upstreams'] != null ? asList(w['dns-upstreams']).map((a, i) => at(`${fw('dns-upstreams')}[${i}]`, () => parseUpstream(a))) : []

  const dnsAllow = flags.dnsAllow !== undefined && flags.dnsAllow.length > 0
    ? flags.dnsAllow.map((a) => at('--dns-allow', () => parseDnsAllow(a)))
    : w['dns-allow'] != null ? asList(w['dns-allow']).map((a, i) => at(`${fw('dns-allow')}[${i}]`, () => parseDnsAllow(a))) : []
  const serviceAddress = nonEmpty(flags.serviceAddress)
    ? at('--service-address', () => parseServiceAddress(flags.serviceAddress as string))
    : w['service-address'] != null && w['service-address'] !== '' ? at(fw('service-address'), () => parseServiceAddress(w['service-address'] as string)) : undefined

  const webhookText = nonEmpty(flags.entangleWebhook) ? flags.entangleWebhook : w['entangle-webhook'] ?? undefined
  const entangleWebhook = webhookText !== undefined && webhookText !== '' ? at(nonEmpty(flags.entangleWebhook) ? '--entangle-webhook' : fw('entangle-webhook'), () => parseListen(webhookText)) : undefined
  const sidecarImage = nonEmpty(flags.sidecarImage) ? flags.sidecarImage : nonEmpty(w['sidecar-image'] ?? undefined) ? w['sidecar-image'] as string : nonEmpty(env.WEFT_IMAGE) ? env.WEFT_IMAGE : undefined
  const config: UpConfig = {
    token,
    tokenText: formatToken(token),
    dataDir,
    cluster,
    clusterGiven,
    role,
    hostname,
    listen: [...new Set(listen)],
    peers: [...new Set(peers)],
    mdns: flags.mdns ?? w.mdns ?? DEFAULTS.mdns,
    bootstrap: [...new Set(bootstrap)],
    publicDiscovery: flags.publicDiscovery ?? w['public-discovery'] ?? DEFAULTS.publicDiscovery,
    publicRanges: [...new Set(publicRanges)],
    api,
    syncIntervalMs,
    joinWaitMs,
    logLevel,
    tun: flags.tun ?? w.tun ?? DEFAULTS.tun,
    tunName,
    directPort,
    advertise: [...new Set(advertise)],
    pathInclude: pathRules(flags.pathInclude, w['path-include'], '--path-include', fw('path-include')),
    pathExclude: pathRules(flags.pathExclude, w['path-exclude'], '--path-exclude', fw('path-exclude')),
    dns,
    dnsUpstreams: [...new Set(dnsUpstreams)],
    dnsAllow: [...new Set(dnsAllow)],
    ...(serviceAddress !== undefined ? { serviceAddress } : {}),
    shareKubeApi: flags.shareKubeApi ?? w['share-kube-api'] ?? false,
    entangle: flags.entangle ?? w.entangle ?? false,
    ...(entangleWebhook !== undefined ? { entangleWebhook } : {}),
    ...(sidecarImage !== undefined ? { sidecarImage } : {}),
    allow: flags.allow !== undefined && flags.allow.length > 0 ? flags.allow : w.allow != null ? asList(w.allow) : [],
    ...(kubeconfigOf(flags.kubeconfig, w.kubeconfig, fileDir) !== undefined ? { kubeconfig: kubeconfigOf(flags.kubeconfig, w.kubeconfig, fileDir) } : {}),
    k3s: flags.k3s ?? w.k3s ?? DEFAULTS.k3s,
    k3sBin: flags.k3sBin ?? w['k3s-bin'] ?? DEFAULTS.k3sBin,
    k3sKubeconfig: nonEmpty(flags.k3sKubeconfig) ? resolve(flags.k3sKubeconfig) : w['k3s-kubeconfig'] != null ? pathFrom(fileDir, w['k3s-kubeconfig']) : DEFAULTS.k3sKubeconfig,
    k3sArgs: flags.k3sArgs !== undefined && flags.k3sArgs.length > 0 ? flags.k3sArgs : w['k3s-args'] != null ? asList(w['k3s-args']) : []
  }
  if (config.k3s && !config.tun) {
    throw bad('k3s needs the TUN device (its flannel runs over weft0): remove --no-tun / "tun: false", or do not enable k3s')
  }
  if (config.shareKubeApi && config.allow.length === 0) throw bad('share-kube-api needs at least one --allow <peer-id|hostname>: nobody would be let in')
  if (config.shareKubeApi && config.kubeconfig === undefined && !config.k3s) throw bad('share-kube-api needs the cluster\'s kubeconfig: give --kubeconfig, or run k3s here with --k3s')
  if (config.entangle && config.kubeconfig === undefined) throw bad('entangle needs the cluster\'s kubeconfig: give --kubeconfig (in-cluster in a pod)')
  if (config.entangleWebhook !== undefined && !config.entangle) throw bad('entangle-webhook needs --entangle')
  if (config.entangleWebhook !== undefined && config.sidecarImage === undefined) throw bad('entangle-webhook needs the sidecar image: give --sidecar-image <image> or set WEFT_IMAGE')
  if (config.k3sBin === '') throw bad('k3s-bin is empty; give the k3s binary, or leave it out to use k3s on PATH')
  if (file !== undefined) config.configFile = file.path
  return config
}

/** `--direct-port`: a TCP port, 0 for any free one, or off. */
export function parseDirectPort (text: string): number | 'off' {
  const t = text.trim()
  if (t === 'off' || t === 'false') return 'off'
  if (!/^\d{1,5}$/.test(t) || Number(t) > 65535) throw bad(`${quote(text)} is not a direct-path port: give a TCP port (1-65535), 0 for any free port, or off`)
  return Number(t)
}

/** Linux interface names: 1-15 characters (IFNAMSIZ - 1), no slash, space or colon. */
export function parseTunName (text: string): string {
  if (!/^[A-Za-z0-9_-]{1,15}$/.test(text)) throw bad(`${quote(text)} is not a usable interface name: 1 to 15 letters, digits, - or _`)
  return text
}

/** A network (not a host inside one) in canonical form: 192.168.1.0/24, fd00:1::/64. */
export function parseAdvertisedCidr (text: string): string {
  try {
    return parseCidr(text.trim()).text
  } catch (err) {
    throw bad((err as Error).message)
  }
}

export interface DnsListen { host: string | 'overlay', port: number }

/** `127.0.0.1:5353`, `[::1]:53`, `overlay:53`, `0.0.0.0` (port 53); port 0 picks a free one. */
export function parseDnsListen (text: string): DnsListen {
  const t = text.trim()
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]+)|([0-9a-fA-F:]*:[0-9a-fA-F:]*))(?::(\d{1,5}))?$/.exec(t)
  const host = m?.[1] ?? m?.[2] ?? m?.[3]
  if (m === null || host === undefined) throw bad(`${quote(text)} is not a DNS listen address: use ip:port, [ipv6]:port or overlay:port`)
  const port = m[4] === undefined ? 53 : Number(m[4])
  if (port > 65535) throw bad(`${quote(text)}: port ${port} is out of range 0-65535`)
  if (host !== 'overlay' && isIP(host) === 0) throw bad(`${quote(text)}: ${quote(host)} is not an IP address (or "overlay", the node's overlay address)`)
  return { host, port }
}

/** A network whose DNS clients are answered (canonical CIDR; a bare address is /32 or /128), or "any". */
export function parseDnsAllow (text: string): string {
  const t = text.trim()
  if (t === 'any') return t
  const withPrefix = t.includes('/') ? t : `${t}/${isIP(t) === 6 ? 128 : 32}`
  try {
    return parseCidr(withPrefix).text
  } catch (err) {
    throw bad(`${quote(text)} is not a network: use a CIDR such as 192.168.1.0/24, an address, or "any" (${(err as Error).message})`)
  }
}

/** The pod-reachable address of this node: an IP that is not loopback, link-local or unspecified. */
export function parseServiceAddress (text: string): string {
  const t = text.trim()
  const family = isIP(t)
  if (family === 0) throw bad(`${quote(text)} is not an IP address`)
  const lower = t.toLowerCase()
  if (family === 4 ? /^(127\.|0\.|169\.254\.)/.test(t) : (lower === '::1' || lower === '::' || /^fe[89ab]/.test(lower))) {
    throw bad(`${quote(text)} cannot be an endpoint: the API server refuses loopback, link-local and unspecified addresses in an EndpointSlice; give an address pods reach this node at`)
  }
  return t
}

/** An upstream resolver as ip:port (port 53 when left out). */
export function parseUpstream (text: string): string {
  const d = parseDnsListen(text)
  if (d.host === 'overlay' || d.port === 0) throw bad(`${quote(text)} is not a resolver address: use ip or ip:port`)
  return d.host.includes(':') ? `[${d.host}]:${d.port}` : `${d.host}:${d.port}`
}

function kubeconfigOf (flag: string | undefined, file: string | null | undefined, fileDir: string): string | undefined {
  if (nonEmpty(flag)) return flag === 'in-cluster' ? flag : resolve(flag)
  if (file != null && file !== '') return file === 'in-cluster' ? file : pathFrom(fileDir, file)
  return undefined
}

/** --path-include/--path-exclude (flags replace the file's list), checked by the address filter's parser. */
function pathRules (flag: string[] | undefined, file: string | string[] | null | undefined, flagName: string, fileWhere: string): string[] {
  const fromFlag = flag !== undefined && flag.length > 0
  const values = fromFlag ? flag : file == null ? [] : typeof file === 'string' ? [file] : file
  parsePathRules(values, fromFlag ? flagName : fileWhere) // throws ERR_BAD_CONFIG naming the value
  return [...new Set(values)]
}
