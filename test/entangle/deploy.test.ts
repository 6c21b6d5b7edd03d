import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import YAML from 'yaml'
import { describe, expect, test } from 'vitest'
import { supportedKinds } from '../../src/node/entangle/manifest-kinds.js'
import { WEBHOOK_CONFIGURATION, WEBHOOK_PATH } from '../../src/node/entangle/injection-webhook.js'
import { DEPLOY } from './support.js'

interface Rule { apiGroups: string[], resources: string[], verbs: string[], resourceNames?: string[] }
interface Doc { kind: string, metadata: { name: string, namespace?: string }, rules?: Rule[], roleRef?: { name: string, kind: string }, subjects?: Array<{ kind: string, name: string, namespace?: string }>, webhooks?: any[], spec?: any }

const load = (f: string): Doc[] => YAML.parseAllDocuments(readFileSync(join(DEPLOY, f), 'utf8')).map((d) => d.toJSON() as Doc)
const allows = (rules: Rule[], group: string, resource: string, verb: string, name?: string): boolean =>
  rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb) && (r.resourceNames === undefined || (name !== undefined && r.resourceNames.includes(name))))

/** RBAC is not modelled by the fake API server: the rules are checked here, statically. */
describe('deploy/ for entangle', () => {
  const docs = load('entangle-rbac.yaml')
  const rules = docs.filter((d) => d.kind === 'ClusterRole').flatMap((d) => d.rules ?? [])

  test('the agent may do what its controllers and webhook do', () => {
    for (const v of ['get', 'list', 'watch']) {
      expect(allows(rules, 'weft.io', 'entanglements', v)).toBe(true)
      expect(allows(rules, 'weft.io', 'manifests', v)).toBe(true)
    }
    expect(allows(rules, 'weft.io', 'manifests', 'update')).toBe(true) // its finalizer
    expect(allows(rules, 'weft.io', 'entanglements/status', 'update')).toBe(true)
    expect(allows(rules, 'weft.io', 'manifests/status', 'update')).toBe(true)
    expect(allows(rules, '', 'secrets', 'get')).toBe(true)
    expect(allows(rules, 'admissionregistration.k8s.io', 'mutatingwebhookconfigurations', 'update', WEBHOOK_CONFIGURATION)).toBe(true)
  })

  test('and nothing more: no secret listing, no other webhook configuration, no spec writes of Entanglements', () => {
    expect(allows(rules, '', 'secrets', 'list')).toBe(false)
    expect(allows(rules, '', 'secrets', 'watch')).toBe(false)
    expect(allows(rules, 'weft.io', 'entanglements', 'update')).toBe(false)
    expect(allows(rules, 'weft.io', 'manifests', 'delete')).toBe(false)
    expect(allows(rules, 'admissionregistration.k8s.io', 'mutatingwebhookconfigurations', 'update', 'someone-elses')).toBe(false)
    expect(allows(rules, 'admissionregistration.k8s.io', 'mutatingwebhookconfigurations', 'list')).toBe(false)
    for (const r of rules) {
      for (const f of [r.apiGroups, r.resources, r.verbs]) expect(f).not.toContain('*')
      expect(r.verbs).not.toContain('patch')
    }
    for (const b of docs.filter((d) => d.kind === 'ClusterRoleBinding')) expect(b.subjects).toEqual([{ kind: 'ServiceAccount', name: 'weft', namespace: 'weft-system' }])
  })

  test('the webhook can never block the cluster\'s own pods', () => {
    const hook = load('webhook.yaml').find((d) => d.kind === 'MutatingWebhookConfiguration')
    expect(hook?.metadata.name).toBe(WEBHOOK_CONFIGURATION)
    const w = hook?.webhooks?.[0]
    expect(w.failurePolicy).toBe('Ignore')
    expect(w.sideEffects).toBe('None')
    expect(w.timeoutSeconds).toBeLessThanOrEqual(10)
    expect(w.clientConfig.service.path).toBe(WEBHOOK_PATH)
    expect(w.namespaceSelector.matchExpressions[0]).toMatchObject({ key: 'kubernetes.io/metadata.name', operator: 'NotIn' })
    for (const ns of ['kube-system', 'kube-public', 'kube-node-lease', 'weft-system']) expect(w.namespaceSelector.matchExpressions[0].values).toContain(ns)
    expect(w.objectSelector.matchExpressions.map((e: { key: string }) => e.key)).toEqual(['entanglement.weft.io/name', 'entanglement.weft.io/direction'])
    expect(w.rules).toEqual([{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }])
    const svc = load('webhook.yaml').find((d) => d.kind === 'Service')
    const agent = load('agent.yaml')[0] as any
    expect(svc?.spec.selector).toEqual(agent.spec.selector.matchLabels)
    expect(agent.spec.template.spec.containers[0].args).toEqual(expect.arrayContaining(['--entangle', '--entangle-webhook', '0.0.0.0:9443']))
    expect(svc?.spec.ports[0].targetPort).toBe(9443)
  })

  test('the target Role of Manifests: server-side apply and delete verbs, namespaced, kinds Manifests knows', () => {
    const target = load('manifests-target-rbac.yaml')
    const role = target.find((d) => d.kind === 'Role') as Doc
    const binding = target.find((d) => d.kind === 'RoleBinding') as Doc
    expect(binding.roleRef).toMatchObject({ kind: 'Role', name: role.metadata.name })
    expect(binding.metadata.namespace).toBe(role.metadata.namespace)
    for (const [g, r] of [['', 'configmaps'], ['apps', 'deployments']] as const) {
      for (const v of ['get', 'create', 'patch', 'delete']) expect(allows(role.rules ?? [], g, r, v), `${v} ${r}`).toBe(true)
    }
    expect(allows(role.rules ?? [], 'rbac.authorization.k8s.io', 'roles', 'create')).toBe(false)
    expect(supportedKinds()).toEqual(expect.arrayContaining(['v1 ConfigMap', 'apps/v1 Deployment']))
  })
})
