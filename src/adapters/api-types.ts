import { z } from 'zod'
import type { NetworkView } from '../projections/view.js'

/**
 * The daemon's HTTP API, version 1: the zod schema and TypeScript type of every request and
 * response, shared by the server (./http-api.ts) and the client (../cli/api-client.ts). Every
 * route is under /api/v1 and speaks JSON; docs/api.md describes them for people.
 *
 * The client parses responses with these schemas and drops fields it does not know (the network
 * view is checked only in the fields the CLI reads and passes through whole). Requests are
 * strict: a misspelt field is a 400 that names it, not a silent default.
 */

export const API_PREFIX = '/api/v1'
/** The kube-proxy routes (src/node/kube-share.ts), and where `weft kube proxy` listens by default. */
export const KUBE_PROXY_ROUTE = '/kube-proxy'
export const DEFAULT_KUBE_PROXY_LISTEN = '127.0.0.1:8001'
/** Largest request body the server reads. */
export const MAX_BODY_BYTES = 4 * 1024 * 1024
/** Events per page of GET /events: default and ceiling of `limit`. */
export const DEFAULT_EVENTS_LIMIT = 1000
export const MAX_EVENTS_LIMIT = 10_000
/** Envelopes per POST /events. */
export const MAX_IMPORT_ENVELOPES = 10_000

const Hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits')
const NetId = z.string().regex(/^[0-9a-f]{16}$/, 'expected a network id (16 hex digits)')
const Count = z.int().min(0)
const Millis = z.number().min(0)

// ---- errors ---------------------------------------------------------------------------------

/** Stable error codes of the API (the HTTP status says the class, the code says which). */
export type ApiErrorCode =
  | 'unauthorized' // 401: no or wrong bearer token
  | 'forbidden' // 403: the event needs the owner's or a delegate's authority
  | 'not_found' // 404: no such route
  | 'method_not_allowed' // 405: the route exists, not with this method
  | 'bad_request' // 400: malformed JSON, bad query or body, invalid setting
  | 'payload_too_large' // 413: body over MAX_BODY_BYTES
  | 'unsupported_media_type' // 415: a body that is not application/json
  | 'read_only' // 409: the node has no identity to sign with
  | 'internal' // 500: a bug or a failing store; the message says what
  | 'busy' // 503: too many large request bodies at once; retry (Retry-After)
  | 'conflict' // 409: the request clashes with the node's state (e.g. a service exposed twice)
  | 'not_member' // 409: this node has not joined yet
  // GET /kubeconfig: the kubeconfig protocol's own codes (see src/net/kubeconfig-protocol.ts)
  | 'no-master' // 409: the cluster has no stable init master yet
  | 'no-address' // 409: the master has no overlay address yet
  | 'not-member' // 403: this node is not a member
  | 'not-ready' // 503: the master's k3s has not written its kubeconfig yet
  | 'unreachable' // 502: the master could not be reached

export const ApiErrorSchema = z.object({
  error: z.object({ code: z.string(), message: z.string() })
})
export type ApiErrorBody = z.infer<typeof ApiErrorSchema>

// ---- endpoint file (<dataDir>/api.json) ------------------------------------------------------

/** `unix:/abs/path.sock` or `http://host:port` (https is accepted for a proxy in front). */
export const ApiUrlSchema = z.string().refine((u) => parseApiUrl(u) !== undefined, {
  message: 'expected http://host:port or unix:/absolute/path.sock'
})

export const ApiEndpointSchema = z.object({
  url: ApiUrlSchema,
  pid: z.int().min(1),
  peerId: z.string(),
  /** Full multiaddrs, each ending in /p2p/<peerId>. */
  listen: z.array(z.string())
})
export type ApiEndpoint = z.infer<typeof ApiEndpointSchema>

export type ApiTarget = { kind: 'http', base: string } | { kind: 'unix', path: string }

/** Where a URL of the API points, or undefined if it is neither http(s) nor unix:/abs. */
export function parseApiUrl (url: string): ApiTarget | undefined {
  if (url.startsWith('unix:')) {
    const path = url.slice('unix:'.length)
    return path.startsWith('/') && !path.includes('\0') ? { kind: 'unix', path } : undefined
  }
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return undefined
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.username !== '' || u.password !== '' || u.search !== '' || u.hash !== '') return undefined
  return { kind: 'http', base: `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}` }
}

// ---- GET /status, GET /peers ------------------------------------------------------------------

export const PeerStatusSchema = z.object({
  peerId: z.string(),
  /** Author hex (64 digits) once the peer's events are known. */
  author: Hex64.optional(),
  hostname: z.string().optional(),
  connected: z.boolean(),
  /** Heard from recently (presence), directly or through other peers. */
  online: z.boolean(),
  /** Milliseconds since the peer was last heard from (an age, not a timestamp). */
  lastSeenMs: Millis.optional(),
  addrs: z.array(z.string()),
  /** Round-trip time of the connection traffic takes (libp2p's connection monitor, every 10 s). */
  latencyMs: z.number().nonnegative().optional(),
  /**
   * The connection traffic takes: its remote address, whether it is direct (not relayed), and
   * whether it is limited (a public relay's: it carries no sync, gossip or VPN; absent from older daemons).
   */
  path: z.object({ addr: z.string(), direct: z.boolean(), limited: z.boolean().optional() }).optional(),
  /** Milliseconds since the last anti-entropy session this node started with the peer completed. */
  lastSyncMs: Millis.optional(),
  /** The peer's overlay (VPN) address, once it holds one. */
  address: z.string().optional(),
  /** Whether its join announces a VPN device (false: --no-tun, its address reaches nothing). */
  vpn: z.boolean().optional()
})
export type PeerStatus = z.infer<typeof PeerStatusSchema>

export const PeersResponseSchema = z.object({ peers: z.array(PeerStatusSchema) })
export type PeersResponse = z.infer<typeof PeersResponseSchema>

export const SelfStatusSchema = z.object({
  address: z.string().optional(),
  role: z.string().optional(),
  roleStable: z.boolean().optional(),
  /** Without a VPN device (--no-tun) the name is reserved: it answers no A/AAAA (docs/dns.md). */
  dnsName: z.string().optional(),
  /** Whether this node's join announces a VPN device (false: `address` reaches nothing). */
  vpn: z.boolean().optional()
})

const Traffic = { txPackets: Count, txBytes: Count, rxPackets: Count, rxBytes: Count }

/** The VPN data plane (absent when the node runs with --no-tun). */
export const VpnStatusSchema = z.object({
  device: z.string(),
  /** Addresses on the device, with the overlay prefix. */
  addresses: z.array(z.string()),
  mtu: Count,
  /** Networks other members advertise, routed into the device. */
  routes: z.array(z.string()),
  tun: z.object({
    rxPackets: Count,
    rxBytes: Count,
    txPackets: Count,
    txBytes: Count,
    txDropped: Count,
    /** Failures of the device I/O recovered from (the readiness watch restarted or the device reopened); absent from older daemons. */
    faults: Count.optional(),
    reopens: Count.optional(),
    lastFault: z.string().nullable().optional()
  }),
  /** The direct path's TCP port (docs/vpn.md, "Direct path"), when it listens. */
  directPort: Count.optional(),
  /** Where device packets are read (docs/vpn.md, "The packet thread"); absent from older daemons. */
  packetThread: z.object({ running: z.boolean(), restarts: Count, reason: z.string().optional(), loop: z.enum(['native', 'javascript']).optional(), loopReason: z.string().optional() }).optional(),
  /** path: what carries packets to the peer now (direct path, libp2p stream, nothing yet); absent from older daemons. */
  peers: z.array(z.object({ author: Hex64, peerId: z.string(), connected: z.boolean(), path: z.enum(['direct', 'mesh', 'none']).optional(), ...Traffic })),
  /** Packets dropped, by reason: see docs/vpn.md. */
  drops: z.object({ no_route: Count, queue_full: Count, no_connection: Count, spoofed: Count, malformed: Count, device_full: Count })
})
export type VpnStatus = z.infer<typeof VpnStatusSchema>

/**
 * Something wrong with this node that it cannot fix by itself (issue 17: problems said out
 * loud), with what to do about it. `code` is stable (docs/api.md lists them); `since` is when
 * the daemon first saw it (epoch ms).
 */
export const ProblemSchema = z.object({
  code: z.string(),
  severity: z.enum(['error', 'warning']),
  message: z.string(),
  fix: z.string(),
  since: Millis
})
export type Problem = z.infer<typeof ProblemSchema>

export const NodeStatusSchema = z.object({
  peerId: z.string(),
  /** This node's author hex (its Ed25519 public key). */
  author: Hex64,
  networkId: NetId,
  version: z.string(),
  hostname: z.string(),
  cluster: z.string(),
  /** Epoch ms (daemon clock). */
  startedAt: Millis,
  uptimeMs: Millis,
  listen: z.array(z.string()),
  /** URL of this API. */
  api: z.string(),
  /** Events in the merged log (frozen authors' events included). */
  events: Count,
  authors: Count,
  /** Events waiting for missing parents. */
  pending: Count,
  peers: z.object({ connected: Count, online: Count, public: Count.optional() }),
  self: SelfStatusSchema,
  /**
   * This node's cluster: its members, and the ones not online right now (no presence beacon).
   * Offline members still count toward the majority that makes a k3s decision stable (only an
   * eviction removes them): see docs/k3s.md.
   */
  members: z.object({
    cluster: z.string(),
    total: Count,
    online: Count,
    /** Members whose latest acknowledgement names the k3s master, of how many that count. */
    votes: z.object({ for: Count, electorate: Count }).optional(),
    offline: z.array(z.object({ author: Hex64, hostname: z.string(), role: z.string(), lastSeenMs: Millis.optional() }))
  }).optional(),
  sync: z.object({ rounds: Count, eventsPulled: Count, lastRoundAt: Millis.optional() }),
  vpn: VpnStatusSchema.optional(),
  /** The k3s supervisor (absent without --k3s): see docs/k3s.md. */
  k3s: z.record(z.string(), z.unknown()).optional(),
  /** The multi-cluster services agent (absent without --kubeconfig): see docs/mcs.md. */
  mcs: z.record(z.string(), z.unknown()).optional(),
  entangle: z.record(z.string(), z.unknown()).optional(),
  /** The shared Kubernetes API (absent without --share-kube-api): accepted and refused tunnels. */
  kubeShare: z.record(z.string(), z.unknown()).optional(),
  /** The DNS server (absent without --dns): its sockets and upstream resolvers. */
  dns: z.object({ listen: z.array(z.string()), upstreams: z.array(z.string()) }).optional(),
  /** What is wrong with this node and how to fix it (absent from older daemons). */
  problems: z.array(ProblemSchema).optional()
})
export type NodeStatus = z.infer<typeof NodeStatusSchema>

/**
 * What the daemon supplies for GET /status: the server fills `events`, `authors` and `pending`
 * from the replica and `self` from the folded view, and `api` with its own URL when empty.
 */
export type NodeLiveStatus = Omit<NodeStatus, 'events' | 'authors' | 'pending' | 'self' | 'api'> & { api?: string }

// ---- POST /ping, POST /node/leave -------------------------------------------------------------

export const PingRequestSchema = z.strictObject({
  /** A member: host name, DNS name, overlay address, peer id or author hex (at least 8 digits). */
  node: z.string().min(1).max(253),
  count: z.int().min(1).max(10).default(3)
})
export type PingRequest = z.input<typeof PingRequestSchema>

export const PingResponseSchema = z.object({
  peerId: z.string(),
  hostname: z.string().optional(),
  address: z.string().optional(),
  /** The connection the pings (and the overlay's packets) took, after the first ping. */
  path: z.object({ addr: z.string(), direct: z.boolean() }).optional(),
  /** Round-trip time of each answered ping (libp2p ping over the mesh connection). */
  rttMs: z.array(z.number().nonnegative()),
  /** Pings without an answer within 5 s, and the last error. */
  lost: Count,
  error: z.string().optional()
})
export type PingResponse = z.infer<typeof PingResponseSchema>

export const LeaveRequestSchema = z.strictObject({ reason: z.string().max(200).optional() })

export const LeaveResponseSchema = z.object({
  /** The node.leave event appended. */
  event: Hex64,
  /** Peers it was sent to before the daemon stops. */
  pushedTo: Count
})
export type LeaveResponse = z.infer<typeof LeaveResponseSchema>

// ---- GET /events, POST /events ----------------------------------------------------------------

export const EventsQuerySchema = z.strictObject({
  from: z.string().regex(/^\d{1,15}$/, 'must be a whole number (a lamport)').transform(Number).optional(),
  limit: z.string().regex(/^\d{1,15}$/, 'must be a whole number').transform(Number)
    .refine((n) => n >= 1 && n <= MAX_EVENTS_LIMIT, `must be from 1 to ${MAX_EVENTS_LIMIT}`).optional()
})

export const EventEntrySchema = z.object({
  id: Hex64,
  lamport: z.int().min(1),
  /** Peer id of the author (as in `weft log export`). */
  author: z.string(),
  seq: z.int().min(1),
  type: z.string(),
  /** The author's clock when it signed the event (epoch ms; claimed, not checked); absent from older daemons. */
  time: Millis.optional(),
  /** base64 of the signed wire form: the only authoritative field. */
  envelope: z.string()
})
export type EventEntry = z.infer<typeof EventEntrySchema>

export const EventsPageSchema = z.object({
  events: z.array(EventEntrySchema),
  /** The lamport to ask for next, or null at the end of the log. */
  next: z.int().min(0).nullable()
})
export type EventsPage = z.infer<typeof EventsPageSchema>

export const ImportRequestSchema = z.strictObject({
  envelopes: z.array(z.string()).max(MAX_IMPORT_ENVELOPES, `at most ${MAX_IMPORT_ENVELOPES} envelopes per request`)
})
export type ImportRequest = z.infer<typeof ImportRequestSchema>

export const ImportReportSchema = z.object({
  /** Newly stored (durable) events. */
  added: Count,
  /** Already in the log, or already waiting for parents. */
  duplicates: Count,
  /** Valid events waiting in the daemon for parents it does not have (pulled from peers later). */
  parked: Count,
  rejected: z.array(z.object({ index: Count, code: z.string(), message: z.string() })),
  /** The parked events: index in the request, id, the parents still missing. */
  parkedEvents: z.array(z.object({ index: Count, id: Hex64, missing: z.array(Hex64) })).default([]),
  /** Forks the import revealed, described for people. */
  forks: z.array(z.string()).default([])
})
export type ImportReport = z.infer<typeof ImportReportSchema>

// ---- GET /state, GET /settings, PUT /settings/<key> -------------------------------------------

const SettingScalar = z.union([z.string(), z.number(), z.boolean(), z.null()])

export const SettingOriginSchema = z.object({ author: Hex64, event: Hex64, lamport: z.int().min(1) })

export const SettingsResponseSchema = z.object({
  /** Effective values: valid values from the log over the defaults. */
  values: z.record(z.string(), SettingScalar),
  /** Which event last set each key; a key without an entry has its default value. */
  origin: z.record(z.string(), SettingOriginSchema),
  problems: z.array(z.object({ event: z.string(), key: z.string().optional(), reason: z.string() }))
})
export type SettingsResponse = z.infer<typeof SettingsResponseSchema>

export const SetSettingRequestSchema = z.strictObject({
  /** As typed on a command line: numbers, booleans and null are read as JSON where the key wants them. */
  value: z.string().max(1024)
})
export type SetSettingRequest = z.infer<typeof SetSettingRequestSchema>

export const SetSettingResponseSchema = z.object({
  /** Id of the settings.change event appended, or null when the key already had that value. */
  event: Hex64.nullable(),
  key: z.string(),
  value: SettingScalar,
  unchanged: z.boolean().default(false)
})
export type SetSettingResponse = z.infer<typeof SetSettingResponseSchema>

const MemberViewSchema = z.looseObject({
  author: Hex64,
  peerId: z.string(),
  hostname: z.string(),
  cluster: z.string(),
  requestedRole: z.string(),
  role: z.string(),
  roleStable: z.boolean(),
  address: z.string().optional(),
  address6: z.string().optional(),
  dnsName: z.string().optional(),
  /** Its join announces a VPN device (older daemons: absent; read `caps`). */
  vpn: z.boolean().optional(),
  addrs: z.array(z.string()),
  caps: z.array(z.string())
})

/** Checks the fields the CLI reads and renders; the rest of the view passes through as sent. */
export const NetworkViewSchema = z.looseObject({
  settings: SettingsResponseSchema,
  members: z.array(MemberViewSchema),
  departed: z.array(z.looseObject({ author: Hex64, how: z.string(), lamport: z.int() })),
  clusters: z.array(z.looseObject({ cluster: z.string(), status: z.string(), conflicts: z.array(z.unknown()), members: z.array(z.unknown()) })),
  ipam: z.looseObject({ leases: z.array(z.unknown()), claims: z.array(z.looseObject({ author: Hex64, addr: z.string(), status: z.string() })) }),
  routes: z.looseObject({ routes: z.array(z.unknown()), conflicts: z.array(z.unknown()), invalid: z.array(z.unknown()) }),
  services: z.looseObject({ imports: z.array(z.unknown()) }),
  dns: z.looseObject({ zone: z.string(), records: z.array(z.unknown()), invalid: z.array(z.unknown()) })
})

export type RoleMark = 'stable' | 'tentative'
/** An address claim's status (see ClaimStatus in projections/ipam.ts). */
export type LeaseMark = 'held' | 'lost' | 'invalid' | 'released'

export const StateResponseSchema = z.object({
  at: z.object({
    /** Events in the merged log. */
    events: Count,
    /** Events folded into the view (the log minus frozen authors' events from their fork on). */
    folded: Count,
    /** Highest lamport in the log (0 when empty). */
    lamport: Count
  }),
  view: NetworkViewSchema,
  marks: z.object({
    /** member author hex → whether its k3s role is stable (acted on) or tentative (may change). */
    roles: z.record(z.string(), z.enum(['stable', 'tentative'])),
    /** `<author hex>/<4|6>` → status of that member's latest address claim of the family. */
    leases: z.record(z.string(), z.string())
  })
})

export interface StateResponse {
  at: { events: number, folded: number, lamport: number }
  view: NetworkView
  marks: { roles: Record<string, RoleMark>, leases: Record<string, LeaseMark> }
}

export const KubeconfigResponseSchema = z.object({ cluster: z.string(), kubeconfig: z.string() })
export type KubeconfigResponse = z.infer<typeof KubeconfigResponseSchema>
