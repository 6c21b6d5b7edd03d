import { isIP } from 'node:net'
import type { NetworkState } from '../../projections/network.js'
import { deriveServices, type ServiceImport as DerivedImport } from '../../projections/services.js'
import { apiVersionOf, RESOURCES } from '../../adapters/kube/client.js'
import type { EndpointSlice, Service, ServiceImport } from '../../adapters/kube/types.js'
import { serviceKey, type HostPort } from '../service-registry.js'
import {
  derivedServiceName, endpointSliceName, LABEL_APP_MANAGED_BY, LABEL_K8S_SERVICE_NAME, LABEL_MANAGED_BY,
  LABEL_SERVICE_NAME, LABEL_SOURCE_CLUSTER, WEFT_ENDPOINTSLICE_MANAGER, WEFT_MANAGER
} from './names.js'

/**
 * Import side of the MCS agent, as pure functions: the imports this cluster gets from the
 * services projection, and the ServiceImport, derived Service and EndpointSlices each one
 * calls for. Per the KEP, every cluster where the namespace exists imports the service, the
 * exporting ones included.
 */

/** The imports of the projection whose namespace exists in this cluster. */
export function importsFor (state: NetworkState, namespaces: ReadonlySet<string>): DerivedImport[] {
  const activeClusters = new Set([...state.members.active.values()].map((m) => m.cluster))
  return deriveServices(state.services, activeClusters).imports.filter((i) => namespaces.has(i.namespace))
}

/** `namespace/name/port`: one local listener per imported TCP port. */
export function listenerKey (namespace: string, name: string, port: number): string {
  return `${serviceKey(namespace, name)}/${port}`
}

/** Only TCP is carried through the mesh tunnels. */
export function tunnelledPorts (imp: DerivedImport): DerivedImport['ports'] {
  return imp.ports.filter((p) => p.protocol === 'TCP')
}

export interface DesiredObjects {
  serviceImport: ServiceImport
  service: Service
  slices: EndpointSlice[]
}

/**
 * The objects of one import. `listeners` gives the local listener of each tunnelled port
 * (`listenerKey`); a port without one gets no endpoint yet. `clusterIP` is the derived
 * Service's, once the API server allocated it (it becomes the ServiceImport's `spec.ips`).
 */
export function desiredObjects (imp: DerivedImport, listeners: ReadonlyMap<string, HostPort>, clusterIP: string | undefined): DesiredObjects {
  const { namespace, name } = imp
  const derived = derivedServiceName(namespace, name)
  const affinityConfig = imp.sessionAffinity === 'ClientIP'
    ? { sessionAffinityConfig: { clientIP: { timeoutSeconds: imp.sessionAffinityTimeoutSeconds ?? 10800 } } }
    : {}
  const port = (p: DerivedImport['ports'][number]): { name?: string, protocol: 'TCP' | 'UDP' | 'SCTP', port: number, appProtocol?: string } => ({
    ...(p.name !== undefined ? { name: p.name } : {}),
    protocol: p.protocol,
    port: p.port,
    ...(p.appProtocol !== undefined ? { appProtocol: p.appProtocol } : {})
  })
  const ips = imp.type === 'ClusterSetIP' && clusterIP !== undefined && clusterIP !== '' && clusterIP !== 'None' ? { ips: [clusterIP] } : {}
  const serviceImport: ServiceImport = {
    apiVersion: apiVersionOf(RESOURCES.serviceImports),
    kind: 'ServiceImport',
    metadata: {
      name,
      namespace,
      labels: { ...imp.labels, [LABEL_APP_MANAGED_BY]: WEFT_MANAGER },
      annotations: { ...imp.annotations }
    },
    spec: {
      type: imp.type,
      ports: imp.ports.map(port),
      ...ips,
      sessionAffinity: imp.sessionAffinity,
      ...affinityConfig,
      ...(imp.internalTrafficPolicy !== undefined ? { internalTrafficPolicy: imp.internalTrafficPolicy } : {}),
      ...(imp.trafficDistribution !== undefined ? { trafficDistribution: imp.trafficDistribution } : {})
    },
    status: { clusters: imp.clusters.map((cluster) => ({ cluster })) }
  }
  const service: Service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: derived,
      namespace,
      labels: { [LABEL_APP_MANAGED_BY]: WEFT_MANAGER, [LABEL_SERVICE_NAME]: name }
    },
    spec: {
      type: 'ClusterIP',
      ...(imp.type === 'Headless' ? { clusterIP: 'None' } : {}),
      // targetPort as the API server defaults it, so an unchanged Service compares equal
      // (a selectorless Service takes its target ports from the EndpointSlices anyway).
      ports: imp.ports.map((p) => ({ ...port(p), targetPort: p.port })),
      sessionAffinity: imp.sessionAffinity,
      ...affinityConfig
    }
  }
  // One slice per exporting cluster and listener address (an endpoint is one address: ports
  // listened on different addresses need different slices).
  const slices: EndpointSlice[] = []
  for (const cluster of imp.clusters) {
    const byHost = new Map<string, Array<{ name?: string, protocol: 'TCP', port: number, appProtocol?: string }>>()
    for (const p of tunnelledPorts(imp)) {
      if (!p.clusters.includes(cluster)) continue
      const l = listeners.get(listenerKey(namespace, name, p.port))
      if (l === undefined) continue
      const list = byHost.get(l.host) ?? []
      list.push({ ...(p.name !== undefined ? { name: p.name } : {}), protocol: 'TCP', port: l.port, ...(p.appProtocol !== undefined ? { appProtocol: p.appProtocol } : {}) })
      byHost.set(l.host, list)
    }
    for (const [host, ports] of [...byHost].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      slices.push({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: {
          name: endpointSliceName(namespace, name, cluster, host),
          namespace,
          labels: {
            [LABEL_APP_MANAGED_BY]: WEFT_MANAGER,
            [LABEL_MANAGED_BY]: WEFT_ENDPOINTSLICE_MANAGER,
            [LABEL_SERVICE_NAME]: name,
            [LABEL_SOURCE_CLUSTER]: cluster,
            [LABEL_K8S_SERVICE_NAME]: derived
          }
        },
        addressType: isIP(host) === 6 ? 'IPv6' : 'IPv4',
        endpoints: [{ addresses: [host], conditions: { ready: true, serving: true, terminating: false } }],
        ports
      })
    }
  }
  return { serviceImport, service, slices }
}
