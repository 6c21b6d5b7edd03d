import type { KubeObject, ResourceRef } from '../../adapters/kube/client.js'
import type { Condition } from '../../adapters/kube/types.js'

/**
 * The Kubernetes resources of the entangle features (docs/entangle.md): Weft's two custom
 * resources (`weft.io/v1alpha1` Entanglement and Manifests, CRDs in deploy/crds/) and the
 * built-in ones their controllers and the injection webhook read or write.
 */
export const ENTANGLE_RESOURCES = {
  entanglements: { group: 'weft.io', version: 'v1alpha1', plural: 'entanglements', kind: 'Entanglement', namespaced: true },
  manifests: { group: 'weft.io', version: 'v1alpha1', plural: 'manifests', kind: 'Manifests', namespaced: true },
  secrets: { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true },
  mutatingWebhookConfigurations: {
    group: 'admissionregistration.k8s.io', version: 'v1', plural: 'mutatingwebhookconfigurations', kind: 'MutatingWebhookConfiguration', namespaced: false
  }
} as const satisfies Record<string, ResourceRef>

/** Label on every object a Weft controller creates for an Entanglement: its name. */
export const LABEL_ENTANGLEMENT = 'entanglement.weft.io/owner'

/** A key of a Secret in the object's namespace. */
export interface SecretKeyRef { name: string, key?: string }

export interface EntanglementSpec {
  /** The network service name (an RFC 1123 label). */
  service: string
  /** The network namespace; the Entanglement's own namespace by default. */
  namespace?: string
  /** The network service port. */
  port: number
  /** The network token (must be the agent's network). */
  tokenSecretRef: SecretKeyRef
  expose?: { serviceRef?: { name: string, port: number }, host?: string }
  consume?: { serviceName?: string, servicePort?: number }
}

export interface EntanglementStatus {
  observedGeneration?: number
  conditions?: Condition[]
  /** `namespace/name` on the network. */
  service?: string
  /** Expose: where the agent connects. Consume: the created Service's cluster IP and port. */
  address?: string
}

export interface Entanglement extends KubeObject {
  spec: EntanglementSpec
  status?: EntanglementStatus
}

export interface Secret extends KubeObject {
  type?: string
  /** Base64 values. */
  data?: Record<string, string>
  stringData?: Record<string, string>
}

/** One object of a Manifests' spec.manifests: any Kubernetes object. */
export interface ManifestObject extends KubeObject {
  [field: string]: unknown
}

export interface ManifestResult {
  apiVersion: string
  kind: string
  namespace?: string
  name: string
  /** Applied (the target accepted it), Failed, or Deleted (pruned when it left the spec). */
  result: 'Applied' | 'Failed'
  message?: string
  uid?: string
}

export interface Manifests extends KubeObject {
  spec: {
    /** The Weft cluster to apply to (its agent runs --share-kube-api --allow <this agent>). */
    cluster: string
    /** A Secret in this namespace with a kubeconfig for the target (its ServiceAccount's credentials). */
    credentialsSecretRef: SecretKeyRef
    manifests: ManifestObject[]
  }
  status?: {
    observedGeneration?: number
    conditions?: Condition[]
    objects?: ManifestResult[]
  }
}

/** The finalizer that makes a Manifests' deletion wait until its objects are deleted in the target. */
export const MANIFESTS_FINALIZER = 'weft.io/manifests'

/** The value of a Secret's key (data is base64; stringData is what a test or kubectl may leave). */
export function secretValue (secret: Secret | undefined, key: string): string | undefined {
  const b64 = secret?.data?.[key]
  if (b64 !== undefined) return Buffer.from(b64, 'base64').toString('utf8')
  return secret?.stringData?.[key]
}
