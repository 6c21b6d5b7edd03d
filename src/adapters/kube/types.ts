import type { KubeObject } from './client.js'

/**
 * The JSON shapes of the objects Weft reads and writes, limited to the fields it uses (the API
 * server sends more; they are kept, not dropped, since objects pass through as plain JSON).
 * MCS types follow sigs.k8s.io/mcs-api pkg/apis/v1beta1; see deploy/crds/ for their schemas.
 */

export type { ClusterProperty } from './client.js'

/** metav1.Condition. */
export interface Condition {
  type: string
  status: 'True' | 'False' | 'Unknown'
  reason: string
  message: string
  lastTransitionTime: string
  observedGeneration?: number
}

export type Protocol = 'TCP' | 'UDP' | 'SCTP'

// ---- multicluster.x-k8s.io/v1beta1 ----

export interface ServiceExport extends KubeObject {
  spec?: {
    exportedLabels?: Record<string, string>
    exportedAnnotations?: Record<string, string>
  }
  status?: { conditions?: Condition[] }
}

export interface ServiceImportPort {
  name?: string
  protocol?: Protocol
  appProtocol?: string
  port: number
}

export interface ServiceImport extends KubeObject {
  spec: {
    ports: ServiceImportPort[]
    /** At most 2 (one per IP family). */
    ips?: string[]
    type: 'ClusterSetIP' | 'Headless'
    sessionAffinity?: 'ClientIP' | 'None'
    sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } }
    ipFamilies?: ('IPv4' | 'IPv6')[]
    internalTrafficPolicy?: 'Cluster' | 'Local'
    trafficDistribution?: string
  }
  status?: {
    endpointSliceObjects?: 'Present' | 'Absent'
    clusters?: { cluster: string }[]
    conditions?: Condition[]
  }
}

/** EndpointSlice label: the multi-cluster service an imported slice belongs to. */
export const LABEL_SERVICE_NAME = 'multicluster.kubernetes.io/service-name'
/** Label: the cluster an imported slice (or other exported resource) comes from. */
export const LABEL_SOURCE_CLUSTER = 'multicluster.kubernetes.io/source-cluster'
/** EndpointSlice label: the controller that manages a slice (the EndpointSlice controller leaves others alone). */
export const LABEL_MANAGED_BY = 'endpointslice.kubernetes.io/managed-by'
/** EndpointSlice label: the Service a slice belongs to. */
export const LABEL_K8S_SERVICE_NAME = 'kubernetes.io/service-name'

// ---- core/v1 and discovery.k8s.io/v1 (subsets) ----

export interface ServicePort {
  name?: string
  protocol?: Protocol
  appProtocol?: string
  port: number
  targetPort?: number | string
  nodePort?: number
}

export interface Service extends KubeObject {
  spec?: {
    type?: 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName'
    selector?: Record<string, string>
    ports?: ServicePort[]
    clusterIP?: string
    clusterIPs?: string[]
    ipFamilies?: ('IPv4' | 'IPv6')[]
    ipFamilyPolicy?: 'SingleStack' | 'PreferDualStack' | 'RequireDualStack'
    sessionAffinity?: 'ClientIP' | 'None'
    sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } }
    internalTrafficPolicy?: 'Cluster' | 'Local'
    trafficDistribution?: string
    externalName?: string
  }
  status?: { loadBalancer?: { ingress?: { ip?: string; hostname?: string }[] }; conditions?: Condition[] }
}

export interface Endpoint {
  addresses: string[]
  conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean }
  hostname?: string
  nodeName?: string
  zone?: string
  targetRef?: { kind?: string; namespace?: string; name?: string; uid?: string }
}

export interface EndpointPort {
  name?: string
  protocol?: Protocol
  appProtocol?: string
  port?: number
}

export interface EndpointSlice extends KubeObject {
  addressType: 'IPv4' | 'IPv6' | 'FQDN'
  endpoints: Endpoint[]
  ports?: EndpointPort[]
}

export interface Namespace extends KubeObject {
  spec?: { finalizers?: string[] }
  status?: { phase?: 'Active' | 'Terminating' }
}

// ---- what Weft marks as its own ----

/** Standard label naming the tool that manages an object. */
export const LABEL_APP_MANAGED_BY = 'app.kubernetes.io/managed-by'
/** Its value on every object Weft creates (ServiceImports, derived Services, EndpointSlices). */
export const WEFT_MANAGER = 'weft'
/** The `endpointslice.kubernetes.io/managed-by` value of the EndpointSlices Weft writes. */
export const WEFT_ENDPOINTSLICE_MANAGER = 'weft.io'

/** core/v1 Event: how the agent reports a failure on an object to `kubectl describe`. */
export interface KubeEvent extends KubeObject {
  involvedObject: { apiVersion?: string; kind: string; namespace?: string; name: string; uid?: string; resourceVersion?: string }
  reason: string
  message: string
  type: 'Normal' | 'Warning'
  source?: { component?: string; host?: string }
  firstTimestamp?: string
  lastTimestamp?: string
  count?: number
  reportingComponent?: string
  reportingInstance?: string
}
