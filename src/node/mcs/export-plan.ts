import { bodySchemas } from '../../log/bodies.js'
import type { NetworkState } from '../../projections/network.js'
import { deriveServices, exportKey, type ExportBody } from '../../projections/services.js'
import type { Service, ServiceExport } from '../../adapters/kube/types.js'
import { isPlainExpose, sameExport, serviceKey, type ExposeStep } from '../service-registry.js'
import type { WantedCondition } from './conditions.js'

/**
 * Export side of the MCS agent, as a pure function of the cluster's ServiceExports and
 * Services and of the folded log: which `service.export` / `service.unexport` events this
 * cluster must append, and which conditions each ServiceExport must carry.
 */

/** Why a ServiceExport cannot be exported (mcs-api v1beta1 reasons; the last one is Weft's). */
export type InvalidReason = 'NoService' | 'InvalidServiceType' | 'UnsupportedService'

export type LocalExport =
  | { ok: true, body: ExportBody }
  | { ok: false, reason: InvalidReason, message: string }

/** The `service.export` body a ServiceExport and its Service call for. */
export function exportBodyFor (cluster: string, se: ServiceExport, svc: Service | undefined): LocalExport {
  const namespace = se.metadata.namespace ?? ''
  const name = se.metadata.name ?? ''
  if (svc === undefined) return { ok: false, reason: 'NoService', message: `no Service ${namespace}/${name} in this cluster` }
  const spec = svc.spec ?? {}
  if (spec.type === 'ExternalName') {
    return { ok: false, reason: 'InvalidServiceType', message: 'ExternalName Services cannot be exported; create an ExternalName Service in each cluster instead.' }
  }
  const affinity = spec.sessionAffinity ?? 'None'
  const timeout = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds
  const body: ExportBody = {
    cluster,
    namespace,
    name,
    type: spec.clusterIP === 'None' ? 'Headless' : 'ClusterSetIP',
    ports: (spec.ports ?? []).map((p) => ({
      ...(p.name !== undefined && p.name !== '' ? { name: p.name } : {}),
      protocol: p.protocol ?? 'TCP',
      port: p.port,
      ...(p.appProtocol !== undefined ? { appProtocol: p.appProtocol } : {})
    })),
    sessionAffinity: affinity,
    ...(affinity === 'ClientIP' && timeout !== undefined ? { sessionAffinityTimeoutSeconds: timeout } : {}),
    ...(spec.internalTrafficPolicy !== undefined ? { internalTrafficPolicy: spec.internalTrafficPolicy } : {}),
    ...(spec.trafficDistribution !== undefined ? { trafficDistribution: spec.trafficDistribution } : {}),
    // v1beta1: what goes to the ServiceImport is the ServiceExport's exportedLabels/Annotations.
    labels: { ...(se.spec?.exportedLabels ?? {}) },
    annotations: { ...(se.spec?.exportedAnnotations ?? {}) }
  }
  const checked = bodySchemas['service.export'].safeParse(body)
  if (!checked.success) {
    const issue = checked.error.issues[0]
    return { ok: false, reason: 'UnsupportedService', message: `the Service cannot be carried in a service.export event: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}` }
  }
  return { ok: true, body }
}

export interface ExportPlanInput {
  cluster: string
  self: string
  state: NetworkState
  serviceExports: readonly ServiceExport[]
  /** `namespace/name` → Service. */
  services: ReadonlyMap<string, Service>
}

export interface ExportPlan {
  steps: ExposeStep[]
  /** `namespace/name` of each ServiceExport → the Valid, Ready and Conflict conditions it must carry. */
  conditions: Map<string, WantedCondition[]>
  /** Set when nothing can be appended (this node is not an active member of the cluster). */
  waiting?: string
}

const noConflict: WantedCondition = { type: 'Conflict', status: 'False', reason: 'NoConflicts', message: '' }

export function planExports (input: ExportPlanInput): ExportPlan {
  const { cluster, self, state } = input
  const me = state.members.active.get(self)
  const waiting = me === undefined
    ? 'this node is not an active member of the network yet'
    : me.cluster !== cluster ? `this node is a member of cluster "${me.cluster}", not "${cluster}"` : undefined
  const activeClusters = new Set([...state.members.active.values()].map((m) => m.cluster))
  const view = deriveServices(state.services, activeClusters)
  const steps: ExposeStep[] = []
  const conditions = new Map<string, WantedCondition[]>()
  const wanted = new Set<string>()
  for (const se of input.serviceExports) {
    const namespace = se.metadata.namespace ?? ''
    const name = se.metadata.name ?? ''
    const key = serviceKey(namespace, name)
    const local = exportBodyFor(cluster, se, input.services.get(key))
    const rec = state.services.exports.get(exportKey(namespace, name, cluster))
    if (!local.ok) {
      conditions.set(key, [
        { type: 'Valid', status: 'False', reason: local.reason, message: local.message },
        { type: 'Ready', status: 'False', reason: 'Failed', message: 'The export is not valid.' },
        noConflict
      ])
      continue // not wanted: a log export of it is withdrawn below
    }
    wanted.add(key)
    const valid: WantedCondition = { type: 'Valid', status: 'True', reason: 'Valid', message: '' }
    if (rec !== undefined && isPlainExpose(rec.spec)) {
      conditions.set(key, [valid, { type: 'Ready', status: 'False', reason: 'Pending', message: `cluster "${cluster}" already exports ${key} with \`weft service expose\` (node ${rec.author.slice(0, 12)}); unexpose it there first` }, noConflict])
      continue
    }
    if (rec !== undefined && sameExport(rec.spec, local.body)) {
      const st = view.exports.find((e) => e.namespace === namespace && e.name === name && e.cluster === cluster)
      if (st !== undefined) {
        conditions.set(key, st.conditions.map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message })))
        continue
      }
    }
    if (waiting === undefined) steps.push({ type: 'service.export', body: local.body, why: `ServiceExport ${key}: ${rec === undefined ? 'not in the log' : 'its Service changed'}` })
    conditions.set(key, [
      valid,
      { type: 'Ready', status: 'False', reason: 'Pending', message: waiting ?? 'The export is being written to the log.' },
      { type: 'Conflict', status: 'Unknown', reason: 'Pending', message: '' }
    ])
  }
  if (waiting === undefined) {
    for (const rec of state.services.exports.values()) {
      if (rec.cluster !== cluster || isPlainExpose(rec.spec)) continue
      const key = serviceKey(rec.namespace, rec.name)
      if (wanted.has(key)) continue
      steps.push({ type: 'service.unexport', body: { cluster, namespace: rec.namespace, name: rec.name }, why: `${key}: no valid ServiceExport in cluster "${cluster}"` })
    }
  }
  return { steps, conditions, ...(waiting !== undefined ? { waiting } : {}) }
}
