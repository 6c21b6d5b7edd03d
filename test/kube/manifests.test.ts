import { describe, expect, test } from 'vitest'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import YAML from 'yaml'
import { RESOURCES, type ResourceRef } from '../../src/adapters/kube/client.js'
import { FAKE_RESOURCES } from '../support/fake-kube.js'
import { ENTANGLE_RESOURCES } from '../../src/node/entangle/resources.js'

const DEPLOY = fileURLToPath(new URL('../../deploy', import.meta.url))

interface Crd {
  kind: string
  metadata: { name: string }
  spec: {
    group: string
    scope: 'Namespaced' | 'Cluster'
    names: { plural: string; kind: string; listKind: string }
    versions: { name: string; served: boolean; storage: boolean; subresources?: { status?: object }; schema: { openAPIV3Schema: Schema } }[]
  }
}
interface Schema {
  type?: string
  required?: string[]
  properties?: Record<string, Schema>
  items?: Schema
  enum?: string[]
  maxItems?: number
}

const crds: Crd[] = readdirSync(join(DEPLOY, 'crds')).map((f) => YAML.parse(readFileSync(join(DEPLOY, 'crds', f), 'utf8')) as Crd)

function crdFor(res: ResourceRef): Crd {
  const crd = crds.find((c) => c.metadata.name === `${res.plural}.${res.group}`)
  if (crd === undefined) throw new Error(`no CRD for ${res.plural}.${res.group}`)
  return crd
}

describe('deploy/crds', () => {
  test('one CRD per custom resource the client uses, agreeing on group, version, kind and scope', () => {
    const custom: ResourceRef[] = [RESOURCES.serviceExports, RESOURCES.serviceImports, RESOURCES.clusterProperties]
    const weft = [ENTANGLE_RESOURCES.entanglements, ENTANGLE_RESOURCES.manifests]
    expect(crds.map((c) => c.metadata.name).sort()).toEqual([...custom, ...weft].map((r) => `${r.plural}.${r.group}`).sort())
    custom.push(...weft)
    for (const res of custom) {
      const crd = crdFor(res)
      expect(crd.kind).toBe('CustomResourceDefinition')
      expect(crd.spec.group).toBe(res.group)
      expect(crd.spec.names.kind).toBe(res.kind)
      expect(crd.spec.names.listKind).toBe(`${res.kind}List`)
      expect(crd.spec.scope).toBe(res.namespaced ? 'Namespaced' : 'Cluster')
      const version = crd.spec.versions.find((v) => v.name === res.version)
      expect(version?.served, `${res.plural} ${res.version} served`).toBe(true)
      expect(crd.spec.versions.filter((v) => v.storage).length).toBe(1)
      // The fake serves the status subresource exactly where the CRD has one.
      const fakeRes = FAKE_RESOURCES.find((f) => f.ref === res)
      expect(fakeRes?.statusSubresource, `${res.plural} status subresource`).toBe(version?.subresources?.status !== undefined)
      // Custom resources need a resourceVersion on update; the fake knows it.
      expect(fakeRes?.unconditionalUpdate).toBe(false)
    }
  })

  test('the MCS schemas have the v1beta1 fields and rules', () => {
    const imp = crdFor(RESOURCES.serviceImports).spec.versions[0]!.schema.openAPIV3Schema
    const spec = imp.properties!.spec!
    expect(spec.required).toEqual(['ports', 'type'])
    expect(spec.properties!.type!.enum).toEqual(['ClusterSetIP', 'Headless'])
    expect(spec.properties!.ips!.maxItems).toBe(2)
    expect(spec.properties!.ipFamilies!.maxItems).toBe(2)
    expect(Object.keys(spec.properties!.ports!.items!.properties!).sort()).toEqual(['appProtocol', 'name', 'port', 'protocol'])
    expect(Object.keys(spec.properties!).sort()).toEqual([
      'internalTrafficPolicy', 'ipFamilies', 'ips', 'ports', 'sessionAffinity', 'sessionAffinityConfig', 'trafficDistribution', 'type'
    ])
    const status = imp.properties!.status!
    expect(Object.keys(status.properties!).sort()).toEqual(['clusters', 'conditions', 'endpointSliceObjects'])
    expect(status.properties!.endpointSliceObjects!.enum).toEqual(['Present', 'Absent'])

    const exp = crdFor(RESOURCES.serviceExports).spec.versions[0]!.schema.openAPIV3Schema
    expect(Object.keys(exp.properties!.spec!.properties!).sort()).toEqual(['exportedAnnotations', 'exportedLabels'])
    const cond = exp.properties!.status!.properties!.conditions!.items!
    expect(cond.required).toEqual(['lastTransitionTime', 'message', 'reason', 'status', 'type'])
    expect(cond.properties!.status!.enum).toEqual(['True', 'False', 'Unknown'])

    const cp = crdFor(RESOURCES.clusterProperties).spec.versions.find((v) => v.name === 'v1alpha1')!.schema.openAPIV3Schema
    expect(cp.properties!.spec!.required).toEqual(['value'])
  })
})

describe('deploy/rbac.yaml', () => {
  const docs = YAML.parseAllDocuments(readFileSync(join(DEPLOY, 'rbac.yaml'), 'utf8')).map((d) => d.toJSON() as {
    kind: string
    metadata: { name: string; namespace?: string }
    rules?: { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[]
    subjects?: { kind: string; name: string; namespace: string }[]
    roleRef?: { name: string }
  })
  const role = docs.find((d) => d.kind === 'ClusterRole')!
  const allowed = (group: string, resource: string, verb: string, name?: string): boolean =>
    role.rules!.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb) &&
      (r.resourceNames === undefined || (name !== undefined && r.resourceNames.includes(name))))

  test('grants what the agent needs', () => {
    for (const [g, r] of [['', 'services'], ['discovery.k8s.io', 'endpointslices'], ['', 'namespaces'], ['multicluster.x-k8s.io', 'serviceexports'], ['multicluster.x-k8s.io', 'serviceimports']]) {
      for (const v of ['get', 'list', 'watch']) expect(allowed(g!, r!, v), `${v} ${r}`).toBe(true)
    }
    for (const [g, r] of [['', 'services'], ['discovery.k8s.io', 'endpointslices'], ['multicluster.x-k8s.io', 'serviceimports']]) {
      for (const v of ['create', 'update', 'delete']) expect(allowed(g!, r!, v), `${v} ${r}`).toBe(true)
    }
    expect(allowed('multicluster.x-k8s.io', 'serviceexports/status', 'update')).toBe(true)
    expect(allowed('multicluster.x-k8s.io', 'serviceimports/status', 'update')).toBe(true)
    expect(allowed('about.k8s.io', 'clusterproperties', 'get', 'cluster.clusterset.k8s.io')).toBe(true)
    expect(allowed('', 'namespaces', 'get', 'kube-system')).toBe(true)
    expect(allowed('', 'events', 'create')).toBe(true) // failures of single objects, reported as Events
  })

  test('and nothing more', () => {
    expect(allowed('multicluster.x-k8s.io', 'serviceexports', 'update')).toBe(false)
    expect(allowed('multicluster.x-k8s.io', 'serviceexports', 'delete')).toBe(false)
    expect(allowed('about.k8s.io', 'clusterproperties', 'get', 'something-else')).toBe(false)
    expect(allowed('about.k8s.io', 'clusterproperties', 'list')).toBe(false)
    expect(allowed('', 'namespaces', 'delete')).toBe(false)
    expect(allowed('', 'secrets', 'get')).toBe(false)
    for (const r of role.rules!) {
      expect(r.apiGroups).not.toContain('*')
      expect(r.resources).not.toContain('*')
      expect(r.verbs).not.toContain('*')
      expect(r.verbs).not.toContain('patch')
      expect(r.verbs).not.toContain('deletecollection')
    }
  })

  test('is bound to the agent\'s service account', () => {
    const binding = docs.find((d) => d.kind === 'ClusterRoleBinding')!
    const sa = docs.find((d) => d.kind === 'ServiceAccount')!
    expect(binding.roleRef?.name).toBe(role.metadata.name)
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }])
  })
})
