import { z } from 'zod'

/**
 * Body schemas, one per event type. Strict objects: unknown keys are refused, so a body has
 * one meaning on every replica. Every string and list has an explicit bound (see
 * docs/event-format.md "Limits"); bytes are checked for exact length.
 */
export const LIMITS = {
  /** Encoded envelope (event bytes + signature). */
  maxEventBytes: 64 * 1024,
  maxDeps: 32,
  maxShortString: 63,
  maxString: 256,
  maxListItems: 32,
  maxLabels: 64,
  maxLabelValue: 1024,
  maxPorts: 100,
  /** Members one `network.rotate` can seal the new transport key to. */
  maxSealed: 512,
  /** An Automerge change inside `settings.change`. */
  maxSettingsChangeBytes: 48 * 1024
} as const

const bytesOf = (len: number): z.ZodType<Uint8Array> =>
  z.custom<Uint8Array>((v) => v instanceof Uint8Array && v.byteLength === len, { message: `expected ${len} bytes` })

export const PeerKey = bytesOf(32)
const ShortString = z.string().min(1).max(LIMITS.maxShortString)
const Text = z.string().max(LIMITS.maxString)
/** RFC 1123 label: what Kubernetes accepts for namespaces and Service names. */
const DnsLabel = z.string().max(63).regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be an RFC 1123 label (lowercase letters, digits, "-")')
/** Cluster names appear in DNS names and k3s token labels: same rule as a DNS label. */
export const ClusterName = DnsLabel
const IpAddress = z.union([z.ipv4(), z.ipv6()])
const Cidr = z.union([z.cidrv4(), z.cidrv6()])
export const RequestedRole = z.enum(['auto', 'master', 'worker', 'client'])
const LabelMap = z.record(z.string().min(1).max(LIMITS.maxString), z.string().max(LIMITS.maxLabelValue))
  .refine((m) => Object.keys(m).length <= LIMITS.maxLabels, `at most ${LIMITS.maxLabels} entries`)

/**
 * A cosignature: the owner's (or a delegate's) Ed25519 signature over this event's author, seq,
 * type and body without `auth` (see log/auth.ts). Bound to (author, seq), so it cannot be
 * replayed in another event: a second event at the same position is a fork and freezes the
 * author. Whether `by` has authority is decided by the authority projection.
 */
export const Auth = z.strictObject({ by: PeerKey, sig: bytesOf(64) })
const auth = Auth.optional()

export const ServicePort = z.strictObject({
  name: DnsLabel.optional(),
  protocol: z.enum(['TCP', 'UDP', 'SCTP']),
  port: z.int().min(1).max(65535),
  appProtocol: Text.optional()
})

export const bodySchemas = {
  'node.join': z.strictObject({
    hostname: z.string().min(1).max(253),
    cluster: ClusterName,
    os: Text,
    arch: Text,
    version: Text,
    addrs: z.array(Text).max(LIMITS.maxListItems),
    caps: z.array(ShortString).max(LIMITS.maxListItems),
    role: RequestedRole,
    /** X25519 public key that rotated transport keys are sealed to (network.rotate). */
    seal: PeerKey.optional(),
    auth
  }),
  'node.leave': z.strictObject({
    reason: Text.optional()
  }),
  'node.evict': z.strictObject({
    peer: PeerKey,
    reason: Text,
    auth
  }),
  /** Remove a member for good: its later events are ignored and it can never join again. */
  'node.revoke': z.strictObject({
    peer: PeerKey,
    reason: Text,
    auth
  }),
  /** A new transport key (admission secret), sealed to each remaining member's `seal` key. */
  'network.rotate': z.strictObject({
    epoch: z.int().min(1).max(0xffffffff),
    ephemeral: PeerKey,
    sealed: z.array(z.strictObject({ to: PeerKey, box: bytesOf(48) })).max(LIMITS.maxSealed),
    auth
  }),
  /** The owner makes a member a delegate (it may then sign administrative events itself). */
  'admin.grant': z.strictObject({
    peer: PeerKey,
    auth
  }),
  'admin.ungrant': z.strictObject({
    peer: PeerKey,
    auth
  }),
  'role.claim': z.strictObject({
    cluster: ClusterName,
    role: RequestedRole,
    auth
  }),
  'ip.claim': z.strictObject({
    addr: IpAddress
  }),
  'ip.release': z.strictObject({
    addr: IpAddress
  }),
  'route.advertise': z.strictObject({
    cidr: Cidr,
    auth
  }),
  'route.withdraw': z.strictObject({
    cidr: Cidr
  }),
  'service.export': z.strictObject({
    cluster: ClusterName,
    namespace: DnsLabel,
    name: DnsLabel,
    type: z.enum(['ClusterSetIP', 'Headless', 'ExternalName']),
    ports: z.array(ServicePort).max(LIMITS.maxPorts),
    sessionAffinity: z.enum(['None', 'ClientIP']),
    sessionAffinityTimeoutSeconds: z.int().min(1).max(86400).optional(),
    internalTrafficPolicy: z.enum(['Cluster', 'Local']).optional(),
    trafficDistribution: Text.optional(),
    labels: LabelMap,
    annotations: LabelMap,
    auth
  }),
  'service.unexport': z.strictObject({
    cluster: ClusterName,
    namespace: DnsLabel,
    name: DnsLabel
  }),
  'settings.change': z.strictObject({
    change: z.custom<Uint8Array>((v) => v instanceof Uint8Array && v.byteLength > 0 && v.byteLength <= LIMITS.maxSettingsChangeBytes,
      { message: `an Automerge change of 1..${LIMITS.maxSettingsChangeBytes} bytes` }),
    auth
  })
} as const

export type EventType = keyof typeof bodySchemas
export const EVENT_TYPES = Object.keys(bodySchemas) as EventType[]
export type BodyOf<T extends EventType> = z.infer<(typeof bodySchemas)[T]>

export function isEventType (t: string): t is EventType {
  return Object.hasOwn(bodySchemas, t)
}
