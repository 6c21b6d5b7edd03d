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
    role: RequestedRole
  }),
  'node.leave': z.strictObject({
    reason: Text.optional()
  }),
  'node.evict': z.strictObject({
    peer: PeerKey,
    reason: Text
  }),
  'role.claim': z.strictObject({
    cluster: ClusterName,
    role: RequestedRole
  }),
  /** The author's replica shows `master` as its cluster's k3s init master: its vote (roles). */
  'role.ack': z.strictObject({
    cluster: ClusterName,
    master: PeerKey
  }),
  'ip.claim': z.strictObject({
    addr: IpAddress
  }),
  'ip.release': z.strictObject({
    addr: IpAddress
  }),
  'route.advertise': z.strictObject({
    cidr: Cidr
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
    annotations: LabelMap
  }),
  'service.unexport': z.strictObject({
    cluster: ClusterName,
    namespace: DnsLabel,
    name: DnsLabel
  }),
  'settings.change': z.strictObject({
    change: z.custom<Uint8Array>((v) => v instanceof Uint8Array && v.byteLength > 0 && v.byteLength <= LIMITS.maxSettingsChangeBytes,
      { message: `an Automerge change of 1..${LIMITS.maxSettingsChangeBytes} bytes` })
  })
} as const

export type EventType = keyof typeof bodySchemas
export const EVENT_TYPES = Object.keys(bodySchemas) as EventType[]
export type BodyOf<T extends EventType> = z.infer<(typeof bodySchemas)[T]>

export function isEventType (t: string): t is EventType {
  return Object.hasOwn(bodySchemas, t)
}
