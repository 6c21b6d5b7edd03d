import { z } from 'zod'
import type { OwnerReference } from '../../adapters/kube/client.js'
import { LABEL_APP_MANAGED_BY, LABEL_K8S_SERVICE_NAME, LABEL_MANAGED_BY, WEFT_MANAGER, type EndpointSlice, type Service } from '../../adapters/kube/types.js'
import { parseTarget, type HostPort } from '../service-registry.js'
import { LABEL_ENTANGLEMENT, type Entanglement } from './resources.js'

/**
 * What one Entanglement asks for, as pure functions: its spec checked again (the CRD's schema and
 * CEL rules say the same; an API server without them, or an old object, must not crash the
 * controller), and the Service and EndpointSlice a `consume` creates.
 *
 * Consume: the agent serves the connections itself (a local tunnel listener on its pod-reachable
 * address, as for MCS imports), so no Deployment is created. The Service cannot select the agent
 * pod (it lives in weft-system, and a selector only reaches pods of the Service's namespace):
 * it is selectorless, with an EndpointSlice of Weft's pointing at the listener.
 */

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const Label = z.string().min(1).max(63).regex(DNS_LABEL, 'an RFC 1123 label: lowercase letters, digits and "-"')
const Port = z.int().min(1).max(65535)

export const EntanglementSpecSchema = z.object({
  service: Label,
  namespace: Label.optional(),
  port: Port,
  tokenSecretRef: z.object({ name: z.string().min(1).max(253), key: z.string().min(1).max(253).optional() }),
  expose: z.object({
    serviceRef: z.object({ name: Label, port: Port }).optional(),
    host: z.string().min(1).max(300).optional()
  }).refine((e) => (e.serviceRef === undefined) !== (e.host === undefined), 'give exactly one of expose.serviceRef and expose.host').optional(),
  consume: z.object({ serviceName: Label.optional(), servicePort: Port.optional() }).optional()
}).refine((s) => (s.expose === undefined) !== (s.consume === undefined), 'give exactly one of spec.expose and spec.consume')

export type EntanglementWant =
  | { kind: 'expose', namespace: string, name: string, port: number, serviceRef?: { name: string, port: number }, host?: HostPort }
  | { kind: 'consume', namespace: string, name: string, port: number, serviceName: string, servicePort: number }

/** The Entanglement's wish, or a message saying what is wrong with its spec. */
export function planEntanglement (e: Entanglement): { want: EntanglementWant, tokenRef: { name: string, key: string } } | { invalid: string } {
  const r = EntanglementSpecSchema.safeParse(e.spec)
  if (!r.success) return { invalid: r.error.issues.map((i) => `spec${i.path.length > 0 ? '.' : ''}${i.path.join('.')}: ${i.message}`).join('; ') }
  const s = r.data
  const namespace = s.namespace ?? e.metadata.namespace ?? 'default'
  const tokenRef = { name: s.tokenSecretRef.name, key: s.tokenSecretRef.key ?? 'token' }
  if (s.expose !== undefined) {
    let host: HostPort | undefined
    if (s.expose.host !== undefined) {
      try {
        host = parseTarget(s.expose.host)
      } catch (err) {
        return { invalid: `spec.expose.host: ${(err as Error).message}` }
      }
    }
    return { want: { kind: 'expose', namespace, name: s.service, port: s.port, ...(s.expose.serviceRef !== undefined ? { serviceRef: s.expose.serviceRef } : {}), ...(host !== undefined ? { host } : {}) }, tokenRef }
  }
  const c = s.consume ?? {}
  return { want: { kind: 'consume', namespace, name: s.service, port: s.port, serviceName: c.serviceName ?? (e.metadata.name as string), servicePort: c.servicePort ?? s.port }, tokenRef }
}

/**
 * The `endpointslice.kubernetes.io/managed-by` of a consume's slice: not the MCS agent's
 * `weft.io`, whose garbage collection deletes every slice of its own it did not plan.
 */
export const ENTANGLE_ENDPOINTSLICE_MANAGER = 'entangle.weft.io'

/** The owner reference that makes the created objects go with the Entanglement (garbage collector). */
export function ownerOf (e: Entanglement): OwnerReference {
  return { apiVersion: 'weft.io/v1alpha1', kind: 'Entanglement', name: e.metadata.name as string, uid: e.metadata.uid as string, controller: true, blockOwnerDeletion: true }
}

function labels (e: Entanglement): Record<string, string> {
  return { [LABEL_APP_MANAGED_BY]: WEFT_MANAGER, [LABEL_ENTANGLEMENT]: e.metadata.name as string }
}

/** The Service of a consume: selectorless, the service port to the listener's port. */
export function consumeService (e: Entanglement, want: Extract<EntanglementWant, { kind: 'consume' }>, listenerPort: number): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: want.serviceName, namespace: e.metadata.namespace, labels: labels(e), ownerReferences: [ownerOf(e)] },
    spec: { type: 'ClusterIP', ports: [{ name: 'tcp', protocol: 'TCP', port: want.servicePort, targetPort: listenerPort }] }
  }
}

/** The EndpointSlice of a consume's Service: the agent's listener. */
export function consumeSlice (e: Entanglement, want: Extract<EntanglementWant, { kind: 'consume' }>, at: HostPort): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${want.serviceName}-weft`,
      namespace: e.metadata.namespace,
      labels: { ...labels(e), [LABEL_K8S_SERVICE_NAME]: want.serviceName, [LABEL_MANAGED_BY]: ENTANGLE_ENDPOINTSLICE_MANAGER },
      ownerReferences: [ownerOf(e)]
    },
    addressType: at.host.includes(':') ? 'IPv6' : 'IPv4',
    endpoints: [{ addresses: [at.host], conditions: { ready: true } }],
    ports: [{ name: 'tcp', protocol: 'TCP', port: at.port }]
  }
}
