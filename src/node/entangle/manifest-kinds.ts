import type { ResourceRef } from '../../adapters/kube/client.js'

/**
 * The kinds a Manifests object may hold: apiVersion + kind → REST resource. A fixed table
 * rather than API discovery: it is what the documented target Role grants (docs/entangle.md),
 * and a kind outside it is reported per object ("not supported") instead of guessed.
 */
const TABLE: ReadonlyArray<readonly [apiVersion: string, kind: string, plural: string, namespaced: boolean]> = [
  ['v1', 'ConfigMap', 'configmaps', true],
  ['v1', 'Secret', 'secrets', true],
  ['v1', 'Service', 'services', true],
  ['v1', 'ServiceAccount', 'serviceaccounts', true],
  ['v1', 'PersistentVolumeClaim', 'persistentvolumeclaims', true],
  ['v1', 'Namespace', 'namespaces', false],
  ['apps/v1', 'Deployment', 'deployments', true],
  ['apps/v1', 'StatefulSet', 'statefulsets', true],
  ['apps/v1', 'DaemonSet', 'daemonsets', true],
  ['batch/v1', 'Job', 'jobs', true],
  ['batch/v1', 'CronJob', 'cronjobs', true],
  ['networking.k8s.io/v1', 'Ingress', 'ingresses', true],
  ['networking.k8s.io/v1', 'NetworkPolicy', 'networkpolicies', true],
  ['rbac.authorization.k8s.io/v1', 'Role', 'roles', true],
  ['rbac.authorization.k8s.io/v1', 'RoleBinding', 'rolebindings', true],
  ['autoscaling/v2', 'HorizontalPodAutoscaler', 'horizontalpodautoscalers', true]
]

export function manifestResource (apiVersion: string, kind: string): ResourceRef | undefined {
  const row = TABLE.find(([v, k]) => v === apiVersion && k === kind)
  if (row === undefined) return undefined
  const [v, k, plural, namespaced] = row
  const i = v.indexOf('/')
  return { group: i < 0 ? '' : v.slice(0, i), version: i < 0 ? v : v.slice(i + 1), plural, kind: k, namespaced }
}

export function supportedKinds (): string[] {
  return TABLE.map(([v, k]) => `${v} ${k}`)
}
