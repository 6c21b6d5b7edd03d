import { z } from 'zod'

/**
 * Requests and answers of the service routes of the daemon's HTTP API (handlers in
 * ./service-api.ts, client in ../cli/api-client.ts). Kept apart from the handlers so the CLI
 * loads only zod.
 *
 *   GET    /api/v1/services                 → ServicesResponse
 *   POST   /api/v1/services/expose          {name, target, namespace?, port?}  → ExposeResponse
 *   DELETE /api/v1/services/expose          {name, namespace?}                  → UnexposeResponse
 *   POST   /api/v1/services/connect         {name, listen, namespace?, port?}  → ConnectResponse
 *   DELETE /api/v1/services/connect         {listen} or {name, namespace?}      → DisconnectResponse
 */

export const SERVICE_ROUTES = {
  list: '/services',
  expose: '/services/expose',
  connect: '/services/connect'
} as const

const Name = z.string().min(1).max(63)
const Namespace = z.string().min(1).max(63).optional()
const Port = z.int().min(1).max(65535).optional()

export const ExposeRequestSchema = z.strictObject({ name: Name, target: z.string().min(3).max(300), namespace: Namespace, port: Port })
export const UnexposeRequestSchema = z.strictObject({ name: Name, namespace: Namespace })
export const ConnectRequestSchema = z.strictObject({ name: Name, listen: z.string().min(1).max(300), namespace: Namespace, port: Port })
export const DisconnectRequestSchema = z.union([
  z.strictObject({ listen: z.string().min(1).max(300) }),
  z.strictObject({ name: Name, namespace: Namespace })
])

export type ExposeRequest = z.infer<typeof ExposeRequestSchema>
export type UnexposeRequest = z.infer<typeof UnexposeRequestSchema>
export type ConnectRequest = z.infer<typeof ConnectRequestSchema>
export type DisconnectRequest = z.infer<typeof DisconnectRequestSchema>

export const TrafficSchema = z.object({
  active: z.number(),
  opened: z.number(),
  refused: z.number(),
  failed: z.number(),
  bytesIn: z.number(),
  bytesOut: z.number(),
  lastError: z.string().optional()
})

export const ExposeResponseSchema = z.object({
  /** `namespace/name`. */
  service: z.string(),
  target: z.string(),
  port: z.number(),
  /** The `service.export` appended now; null when the log said so already, or this node is not a member yet. */
  event: z.string().nullable(),
  /** Why nothing was exported yet (not a member, another node of the cluster exports it otherwise). */
  note: z.string().optional()
})

export const UnexposeResponseSchema = z.object({
  service: z.string(),
  /** The `service.unexport` appended; null when this node's cluster export is not this node's. */
  event: z.string().nullable()
})

export const ConnectResponseSchema = z.object({
  service: z.string(),
  port: z.number(),
  /** The address actually bound (the real port when 0 was asked). */
  listen: z.string(),
  /** False when an identical listener was running already. */
  created: z.boolean()
})

export const DisconnectResponseSchema = z.object({
  /** Listen addresses of the listeners stopped. */
  stopped: z.array(z.string())
})

export const ServiceEntrySchema = z.object({
  namespace: z.string(),
  name: z.string(),
  imported: z.boolean(),
  type: z.string().optional(),
  /** The network-wide service address (what its clusterset.local name answers outside Kubernetes). */
  address: z.string().optional(),
  ports: z.array(z.object({ protocol: z.string(), port: z.number(), name: z.string().optional(), clusters: z.array(z.string()) })),
  conflicts: z.array(z.string()),
  exporters: z.array(z.object({
    cluster: z.string(),
    author: z.string(),
    peerId: z.string().optional(),
    hostname: z.string().optional(),
    plain: z.boolean(),
    contributing: z.boolean(),
    ready: z.string()
  }))
})

export const LocalExposeSchema = z.object({
  service: z.string(),
  target: z.string(),
  port: z.number(),
  /** The export in the log is this node's, as it wants it. */
  exported: z.boolean(),
  traffic: TrafficSchema
})

export const LocalConnectSchema = z.object({
  service: z.string(),
  port: z.number(),
  listen: z.string(),
  traffic: TrafficSchema
})

/** A service address this node listens on (every member listens on every import's). */
export const ServiceAddressSchema = z.object({
  service: z.string(),
  cluster: z.string().optional(),
  listen: z.string(),
  error: z.string().optional(),
  traffic: TrafficSchema.optional()
})

export const ServicesResponseSchema = z.object({
  services: z.array(ServiceEntrySchema),
  exposes: z.array(LocalExposeSchema),
  connects: z.array(LocalConnectSchema),
  /** Absent from nodes older than service addresses. */
  addresses: z.array(ServiceAddressSchema).optional(),
  tunnels: z.object({ served: z.number(), opened: z.number() })
})

export type ExposeResponse = z.infer<typeof ExposeResponseSchema>
export type UnexposeResponse = z.infer<typeof UnexposeResponseSchema>
export type ConnectResponse = z.infer<typeof ConnectResponseSchema>
export type DisconnectResponse = z.infer<typeof DisconnectResponseSchema>
export type ServicesResponse = z.infer<typeof ServicesResponseSchema>
export type LocalExpose = z.infer<typeof LocalExposeSchema>
export type LocalConnect = z.infer<typeof LocalConnectSchema>
