import { z } from 'zod'

/**
 * Sidecar injection, as pure functions (docs/entangle.md "Sidecar injection"): a Pod labelled
 *
 *   entanglement.weft.io/name: <network service name>     (namespace: the pod's, or the
 *   entanglement.weft.io/port: "<port>"                     entanglement.weft.io/namespace label)
 *   entanglement.weft.io/direction: expose | consume
 *
 * gets a `weft-sidecar` container running `weft sidecar`: a member with no TUN device, not root,
 * no capabilities, that only carries service tunnels. `expose` serves the pod's own
 * 127.0.0.1:<port> on the network; `consume` listens on the pod's 127.0.0.1:<port> and carries
 * connections to the network service. The token comes from a Secret of the pod's namespace
 * (`entanglement.weft.io/token-secret`, default `weft-token`, key `token`).
 *
 * `review()` answers an AdmissionReview v1: anything it cannot parse, or a pod that is not
 * labelled, is allowed unchanged (fail-open: the webhook must never block a pod).
 */

export const LABEL_NAME = 'entanglement.weft.io/name'
export const LABEL_PORT = 'entanglement.weft.io/port'
export const LABEL_DIRECTION = 'entanglement.weft.io/direction'
export const LABEL_NAMESPACE = 'entanglement.weft.io/namespace'
export const LABEL_TOKEN_SECRET = 'entanglement.weft.io/token-secret'
/** Set on an injected pod, so a reinvocation does not inject twice. */
export const ANNOTATION_INJECTED = 'entanglement.weft.io/injected'
export const SIDECAR_NAME = 'weft-sidecar'
export const SIDECAR_VOLUME = 'weft-sidecar-data'
/** The UID the sidecar runs as (distroless's nonroot). */
export const SIDECAR_UID = 65532

export interface SidecarSettings {
  /** The image holding weft (the agent's). */
  image: string
  /** The Weft cluster the sidecars join (the agent's). */
  cluster: string
  /** Bootstrap peers: the agent's addresses with /p2p/<id>. */
  peers: readonly string[]
}

export interface SidecarRequest {
  direction: 'expose' | 'consume'
  namespace: string
  name: string
  port: number
  tokenSecret: string
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

/** What a pod's labels ask for; undefined when it is not labelled for injection, a string when labelled wrongly. */
export function sidecarRequest (labels: Record<string, string> | undefined, podNamespace: string): SidecarRequest | string | undefined {
  const l = labels ?? {}
  const name = l[LABEL_NAME]
  if (name === undefined) return undefined
  const direction = l[LABEL_DIRECTION]
  const portText = l[LABEL_PORT] ?? ''
  const namespace = l[LABEL_NAMESPACE] ?? podNamespace
  if (direction !== 'expose' && direction !== 'consume') return `${LABEL_DIRECTION} must be expose or consume (got ${JSON.stringify(direction ?? '')})`
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) return `${LABEL_PORT} must be a port 1-65535 (got ${JSON.stringify(portText)})`
  if (!DNS_LABEL.test(name) || name.length > 63) return `${LABEL_NAME} must be an RFC 1123 label (got ${JSON.stringify(name)})`
  if (!DNS_LABEL.test(namespace) || namespace.length > 63) return `${LABEL_NAMESPACE} must be an RFC 1123 label (got ${JSON.stringify(namespace)})`
  return { direction, namespace, name, port: Number(portText), tokenSecret: l[LABEL_TOKEN_SECRET] ?? 'weft-token' }
}

/** The injected container. */
export function sidecarContainer (req: SidecarRequest, s: SidecarSettings): Record<string, unknown> {
  return {
    name: SIDECAR_NAME,
    image: s.image,
    args: [
      'sidecar', '--direction', req.direction, '--service', `${req.namespace}/${req.name}`, '--port', String(req.port),
      '--cluster', s.cluster, '--hostname', '$(POD_NAME)', '--data-dir', '/var/lib/weft',
      ...s.peers.flatMap((p) => ['--peer', p])
    ],
    env: [
      { name: 'WEFT_TOKEN', valueFrom: { secretKeyRef: { name: req.tokenSecret, key: 'token' } } },
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }
    ],
    securityContext: {
      runAsNonRoot: true,
      runAsUser: SIDECAR_UID,
      runAsGroup: SIDECAR_UID,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] }
    },
    resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '256Mi' } },
    volumeMounts: [{ name: SIDECAR_VOLUME, mountPath: '/var/lib/weft' }]
  }
}

export type PatchOp = { op: 'add', path: string, value: unknown }

const escape = (s: string): string => s.replace(/~/g, '~0').replace(/\//g, '~1')

/** The RFC 6902 patch injecting the sidecar into `pod`; [] when it has one already. */
export function sidecarPatch (pod: { metadata?: { annotations?: Record<string, string> }, spec?: { containers?: unknown[], volumes?: unknown[] } }, req: SidecarRequest, s: SidecarSettings): PatchOp[] {
  const containers = pod.spec?.containers ?? []
  if (containers.some((c) => (c as { name?: unknown }).name === SIDECAR_NAME)) return []
  const ops: PatchOp[] = [{ op: 'add', path: '/spec/containers/-', value: sidecarContainer(req, s) }]
  const volume = { name: SIDECAR_VOLUME, emptyDir: { sizeLimit: '64Mi' } }
  ops.push(pod.spec?.volumes === undefined ? { op: 'add', path: '/spec/volumes', value: [volume] } : { op: 'add', path: '/spec/volumes/-', value: volume })
  const value = `${req.direction} ${req.namespace}/${req.name}:${req.port}`
  ops.push(pod.metadata?.annotations === undefined
    ? { op: 'add', path: '/metadata/annotations', value: { [ANNOTATION_INJECTED]: value } }
    : { op: 'add', path: `/metadata/annotations/${escape(ANNOTATION_INJECTED)}`, value })
  return ops
}

const ReviewSchema = z.object({
  apiVersion: z.literal('admission.k8s.io/v1'),
  kind: z.literal('AdmissionReview'),
  request: z.object({
    uid: z.string().min(1),
    kind: z.object({ group: z.string(), version: z.string(), kind: z.string() }).optional(),
    namespace: z.string().optional(),
    operation: z.string().optional(),
    object: z.object({
      metadata: z.object({ namespace: z.string().optional(), labels: z.record(z.string(), z.string()).optional(), annotations: z.record(z.string(), z.string()).optional() }).optional(),
      spec: z.object({ containers: z.array(z.unknown()), volumes: z.array(z.unknown()).optional() })
    })
  })
})

export interface AdmissionResponse {
  apiVersion: 'admission.k8s.io/v1'
  kind: 'AdmissionReview'
  response: { uid: string, allowed: true, patchType?: 'JSONPatch', patch?: string, warnings?: string[] }
}

/** The answer to an AdmissionReview (any body): always allowed; a patch when the pod asks for a sidecar. */
export function review (body: unknown, s: SidecarSettings): { answer: AdmissionResponse, injected?: SidecarRequest, problem?: string } {
  const uid = typeof (body as { request?: { uid?: unknown } } | null)?.request?.uid === 'string' ? (body as { request: { uid: string } }).request.uid : ''
  const allow = (problem?: string): { answer: AdmissionResponse, problem?: string } => ({
    answer: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, allowed: true, ...(problem !== undefined ? { warnings: [`weft sidecar not injected: ${problem}`] } : {}) } },
    ...(problem !== undefined ? { problem } : {})
  })
  const r = ReviewSchema.safeParse(body)
  if (!r.success) return allow(uid === '' ? undefined : `cannot read the request: ${r.error.issues[0]?.message ?? 'invalid'}`)
  const req = r.data.request
  if (req.kind !== undefined && (req.kind.kind !== 'Pod' || req.kind.group !== '')) return allow()
  if (req.operation !== undefined && req.operation !== 'CREATE') return allow()
  const ns = req.object.metadata?.namespace ?? req.namespace ?? 'default'
  const want = sidecarRequest(req.object.metadata?.labels, ns)
  if (want === undefined) return allow()
  if (typeof want === 'string') return allow(want)
  const ops = sidecarPatch(req.object, want, s)
  if (ops.length === 0) return allow()
  return {
    answer: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(ops)).toString('base64') } },
    injected: want
  }
}
