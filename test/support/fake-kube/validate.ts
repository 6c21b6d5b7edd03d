import { isIP } from 'node:net'
import { isDns1123Label, isDns1123Subdomain, isDns1035Label, isQualifiedName } from './labels.js'
import { validatePodSpec } from './validate-workloads.js'

/**
 * The validation and defaulting a real API server applies to the objects Weft writes (and to
 * the manifests in deploy/), for the fake API server. Each rule cites the Kubernetes code it
 * follows; messages are the real ones (field path, then "Invalid value", "Required value",
 * "Unsupported value" or "Forbidden"). What is modelled and what is not: docs/kubernetes-fake.md.
 */

export interface Violation {
  field: string
  /** "Invalid value: …: why", "Required value", … as the API server words it. */
  message: string
}

export type O = Record<string, unknown>
export const obj = (v: unknown): O => (typeof v === 'object' && v !== null && !Array.isArray(v) ? v as O : {})
export const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : [])
export const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)

export const bad = (field: string, value: unknown, why: string): Violation => ({ field, message: `Invalid value: ${JSON.stringify(value)}: ${why}` })
export const required = (field: string): Violation => ({ field, message: 'Required value' })
export const unsupported = (field: string, value: unknown, allowed: readonly string[]): Violation =>
  ({ field, message: `Unsupported value: ${JSON.stringify(value)}: supported values: ${allowed.map((a) => `"${a}"`).join(', ')}` })

// ---- IP addresses (k8s.io/kubernetes pkg/apis/core/validation ValidateEndpointIP) ----

function ipv4Octets (ip: string): number[] | undefined {
  if (isIP(ip) !== 4) return undefined
  return ip.split('.').map(Number)
}

/** Why an endpoint address is refused ("may not be in the loopback range …"), or undefined. */
export function endpointIpProblem (ip: string): string | undefined {
  const family = isIP(ip)
  if (family === 0) return 'must be a valid IP address'
  if (family === 4) {
    const [a, b, c] = ipv4Octets(ip) as number[]
    if (ip === '0.0.0.0') return 'may not be unspecified (0.0.0.0)'
    if (a === 127) return 'may not be in the loopback range (127.0.0.0/8, ::1/128)'
    if (a === 169 && b === 254) return 'may not be in the link-local range (169.254.0.0/16, fe80::/10)'
    if (a === 224 && b === 0 && c === 0) return 'may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)'
    return undefined
  }
  const l = ip.toLowerCase()
  if (/^(0{0,4}:){2,7}0{0,4}$/.test(l) || l === '::') return 'may not be unspecified (::)'
  if (/^(0{0,4}:){2,7}0{0,3}1$/.test(l) || l === '::1') return 'may not be in the loopback range (127.0.0.0/8, ::1/128)'
  if (/^fe[89ab][0-9a-f]?:/.test(l)) return 'may not be in the link-local range (169.254.0.0/16, fe80::/10)'
  if (/^ff02:/.test(l)) return 'may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)'
  if (l.startsWith('::ffff:') && l.includes('.')) return endpointIpProblem(l.slice(7))
  return undefined
}

const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const

function portNumber (field: string, v: unknown, out: Violation[]): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) out.push(bad(field, v, 'must be between 1 and 65535, inclusive'))
}

// ---- EndpointSlice (pkg/apis/discovery/validation) ----

export function validateEndpointSlice (o: O, old: O | undefined): Violation[] {
  const out: Violation[] = []
  const type = o.addressType
  if (type === undefined) out.push(required('addressType'))
  else if (type !== 'IPv4' && type !== 'IPv6' && type !== 'FQDN') out.push(unsupported('addressType', type, ['IPv4', 'IPv6', 'FQDN']))
  if (old !== undefined && old.addressType !== type) out.push(bad('addressType', type, 'field is immutable'))
  const endpoints = arr(o.endpoints)
  if (endpoints.length > 1000) out.push({ field: 'endpoints', message: `Too many: ${endpoints.length}: must have at most 1000 items` })
  endpoints.forEach((e, i) => {
    const ep = obj(e)
    const addrs = arr(ep.addresses)
    const f = `endpoints[${i}].addresses`
    if (addrs.length === 0) out.push({ field: f, message: 'Required value: must contain at least 1 address' })
    if (addrs.length > 100) out.push({ field: f, message: `Too many: ${addrs.length}: must have at most 100 items` })
    addrs.forEach((a, j) => {
      const af = `${f}[${j}]`
      const text = str(a) ?? ''
      if (type === 'IPv4' || type === 'IPv6') {
        const fam = isIP(text)
        if (fam === 0) out.push(bad(af, a, 'must be a valid IP address'))
        else if ((type === 'IPv4') !== (fam === 4)) out.push(bad(af, a, `must be an ${type} address`))
        else {
          const p = endpointIpProblem(text)
          if (p !== undefined) out.push(bad(af, a, p))
        }
      } else if (type === 'FQDN' && !isDns1123Subdomain(text)) {
        out.push(bad(af, a, 'must be a valid FQDN'))
      }
    })
    if (ep.hostname !== undefined && !isDns1123Label(str(ep.hostname) ?? '')) out.push(bad(`endpoints[${i}].hostname`, ep.hostname, 'a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \'-\''))
  })
  const ports = arr(o.ports)
  if (ports.length > 100) out.push({ field: 'ports', message: `Too many: ${ports.length}: must have at most 100 items` })
  const names = new Set<string>()
  ports.forEach((p, i) => {
    const port = obj(p)
    const name = str(port.name) ?? ''
    if (name !== '' && !isDns1123Label(name)) out.push(bad(`ports[${i}].name`, name, 'a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \'-\''))
    if (names.has(name)) out.push({ field: `ports[${i}].name`, message: `Duplicate value: "${name}"` })
    names.add(name)
    if (port.port !== undefined) portNumber(`ports[${i}].port`, port.port, out)
    if (port.protocol !== undefined && !PROTOCOLS.includes(port.protocol as 'TCP')) out.push(unsupported(`ports[${i}].protocol`, port.protocol, PROTOCOLS))
  })
  return out
}

// ---- Service (pkg/apis/core/validation ValidateService, pkg/registry/core/service) ----

const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'] as const

/** Server-side defaults of a Service (pkg/apis/core/v1/defaults.go, the registry's allocation). */
export function defaultService (o: O, old: O | undefined, allocate: () => string): void {
  const spec = obj(o.spec)
  o.spec = spec
  spec.type ??= 'ClusterIP'
  if (spec.type === 'ExternalName') return
  spec.sessionAffinity ??= 'None'
  spec.internalTrafficPolicy ??= 'Cluster'
  spec.ports = arr(spec.ports).map((p) => {
    const port = { ...obj(p) }
    port.protocol ??= 'TCP'
    port.targetPort ??= port.port
    return port
  })
  // An update that leaves the allocated IPs out keeps them (patchAllocatedValues, Kubernetes 1.20+).
  const oldSpec = obj(old?.spec)
  if ((spec.clusterIP === undefined || spec.clusterIP === '') && str(oldSpec.clusterIP) !== undefined && oldSpec.type !== 'ExternalName') {
    spec.clusterIP = oldSpec.clusterIP
    spec.clusterIPs ??= oldSpec.clusterIPs
  }
  if (spec.clusterIP === undefined || spec.clusterIP === '') spec.clusterIP = allocate()
  spec.clusterIPs ??= [spec.clusterIP]
  spec.ipFamilies ??= spec.clusterIP === 'None' ? ['IPv4'] : [isIP(str(spec.clusterIP) ?? '') === 6 ? 'IPv6' : 'IPv4']
  spec.ipFamilyPolicy ??= 'SingleStack'
  if (old === undefined) o.status = { loadBalancer: {} }
}

export function validateService (o: O, old: O | undefined, serviceCidr: { contains: (ip: string) => boolean, text: string }): Violation[] {
  const out: Violation[] = []
  const spec = obj(o.spec)
  const type = spec.type
  if (!SERVICE_TYPES.includes(type as 'ClusterIP')) out.push(unsupported('spec.type', type, SERVICE_TYPES))
  const ports = arr(spec.ports)
  const headless = spec.clusterIP === 'None'
  if (type !== 'ExternalName' && ports.length === 0 && !headless) out.push(required('spec.ports'))
  const names = new Set<string>()
  ports.forEach((p, i) => {
    const port = obj(p)
    const name = str(port.name) ?? ''
    if (ports.length > 1 && name === '') out.push(required(`spec.ports[${i}].name`))
    if (name !== '' && !isDns1123Label(name)) out.push(bad(`spec.ports[${i}].name`, name, 'a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \'-\''))
    if (names.has(name)) out.push({ field: `spec.ports[${i}].name`, message: `Duplicate value: "${name}"` })
    names.add(name)
    portNumber(`spec.ports[${i}].port`, port.port, out)
    if (!PROTOCOLS.includes(port.protocol as 'TCP')) out.push(unsupported(`spec.ports[${i}].protocol`, port.protocol, PROTOCOLS))
    if (typeof port.targetPort === 'number') portNumber(`spec.ports[${i}].targetPort`, port.targetPort, out)
  })
  const affinity = spec.sessionAffinity
  if (type !== 'ExternalName' && affinity !== 'None' && affinity !== 'ClientIP') out.push(unsupported('spec.sessionAffinity', affinity, ['ClientIP', 'None']))
  const timeout = obj(obj(obj(spec.sessionAffinityConfig).clientIP)).timeoutSeconds
  if (timeout !== undefined && (typeof timeout !== 'number' || timeout < 1 || timeout > 86400)) out.push(bad('spec.sessionAffinityConfig.clientIP.timeoutSeconds', timeout, 'must be greater than 0 and less than 86400'))
  if (affinity === 'None' && spec.sessionAffinityConfig !== undefined) out.push({ field: 'spec.sessionAffinityConfig', message: 'Forbidden: must not be set when sessionAffinity is None' })
  const ip = str(spec.clusterIP)
  if (type !== 'ExternalName' && ip !== undefined && ip !== 'None') {
    if (isIP(ip) === 0) out.push(bad('spec.clusterIPs[0]', ip, 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)'))
    else if (old === undefined && !serviceCidr.contains(ip)) out.push(bad('spec.clusterIPs', [ip], `failed to allocate IP ${ip}: provided IP is not in the valid range. The range of valid IPs is ${serviceCidr.text}`))
  }
  if (old !== undefined) {
    const oldSpec = obj(old.spec)
    // clusterIP is immutable while the Service keeps one (switching to ExternalName drops it).
    if (type !== 'ExternalName' && oldSpec.type !== 'ExternalName' && str(oldSpec.clusterIP) !== undefined && ip !== oldSpec.clusterIP) {
      out.push(bad('spec.clusterIPs[0]', [ip], 'may not change once set'))
    }
    if (type === 'ExternalName' && ip !== undefined && ip !== '') out.push(bad('spec.clusterIP', ip, 'must be empty for ExternalName services'))
  }
  return out
}

// ---- metav1.Condition (the CRDs' schema, as controller-gen renders it) ----

const CONDITION_TYPE = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/
const CONDITION_REASON = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/

export function validateConditions (field: string, conditions: unknown): Violation[] {
  const out: Violation[] = []
  arr(conditions).forEach((c, i) => {
    const cond = obj(c)
    const f = `${field}[${i}]`
    for (const k of ['lastTransitionTime', 'message', 'reason', 'status', 'type']) if (cond[k] === undefined) out.push(required(`${f}.${k}`))
    const type = str(cond.type) ?? ''
    if (type.length > 316 || !CONDITION_TYPE.test(type)) out.push(bad(`${f}.type`, type, `should match '${CONDITION_TYPE.source}'`))
    const reason = str(cond.reason) ?? ''
    if (reason.length > 1024 || !CONDITION_REASON.test(reason)) out.push(bad(`${f}.reason`, reason, `should match '${CONDITION_REASON.source}'`))
    if ((str(cond.message) ?? '').length > 32768) out.push({ field: `${f}.message`, message: 'Too long: may not be longer than 32768' })
    if (!['True', 'False', 'Unknown'].includes(str(cond.status) ?? '')) out.push(unsupported(`${f}.status`, cond.status, ['True', 'False', 'Unknown']))
  })
  return out
}

// ---- ServiceImport, ServiceExport (deploy/crds schemas) ----

export function validateServiceImport (o: O): Violation[] {
  const out: Violation[] = []
  const spec = obj(o.spec)
  if (!['ClusterSetIP', 'Headless'].includes(str(spec.type) ?? '')) out.push(unsupported('spec.type', spec.type, ['ClusterSetIP', 'Headless']))
  if (spec.ports === undefined) out.push(required('spec.ports'))
  arr(spec.ports).forEach((p, i) => {
    const port = obj(p)
    if (port.port === undefined) out.push(required(`spec.ports[${i}].port`))
    if (port.protocol !== undefined && !PROTOCOLS.includes(port.protocol as 'TCP')) out.push(unsupported(`spec.ports[${i}].protocol`, port.protocol, PROTOCOLS))
  })
  const ips = arr(spec.ips)
  if (ips.length > 2) out.push({ field: 'spec.ips', message: `Too many: ${ips.length}: must have at most 2 items` })
  out.push(...validateConditions('status.conditions', obj(o.status).conditions))
  return out
}

export function validateServiceExport (o: O): Violation[] {
  return validateConditions('status.conditions', obj(o.status).conditions)
}

// ---- core/v1 Event (pkg/apis/core/validation ValidateEvent) ----

export function validateEvent (o: O): Violation[] {
  const out: Violation[] = []
  const inv = obj(o.involvedObject)
  const ns = obj(o.metadata).namespace
  if (inv.namespace !== undefined && inv.namespace !== ns) out.push(bad('involvedObject.namespace', inv.namespace, 'does not match event.namespace'))
  if (str(inv.kind) === undefined || inv.kind === '') out.push(required('involvedObject.kind'))
  if (o.reason !== undefined && !isQualifiedName(str(o.reason) ?? '') && (str(o.reason) ?? '').length > 128) out.push(bad('reason', o.reason, 'can have at most 128 characters'))
  if (o.type !== undefined && o.type !== 'Normal' && o.type !== 'Warning') out.push(unsupported('type', o.type, ['Normal', 'Warning']))
  return out
}

// ---- CustomResourceDefinition (apiextensions-apiserver pkg/apis/apiextensions/validation) ----

const APPROVAL = 'api-approved.kubernetes.io'

/** KEP-2337: groups k8s.io, kubernetes.io and their subdomains are protected. */
export function isProtectedGroup (group: string): boolean {
  return group === 'k8s.io' || group.endsWith('.k8s.io') || group === 'kubernetes.io' || group.endsWith('.kubernetes.io')
}

export function validateCrd (o: O): Violation[] {
  const out: Violation[] = []
  const meta = obj(o.metadata)
  const spec = obj(o.spec)
  const group = str(spec.group) ?? ''
  const names = obj(spec.names)
  const plural = str(names.plural) ?? ''
  if (group === '') out.push(required('spec.group'))
  else if (!isDns1123Subdomain(group) || !group.includes('.')) out.push(bad('spec.group', group, 'should be a domain with at least one dot'))
  if (meta.name !== `${plural}.${group}`) out.push(bad('metadata.name', meta.name, 'must be spec.names.plural+"."+spec.group'))
  if (!isDns1035Label(plural)) out.push(bad('spec.names.plural', plural, 'a DNS-1035 label must consist of lower case alphanumeric characters or \'-\''))
  if (str(names.kind) === undefined) out.push(required('spec.names.kind'))
  if (str(names.listKind) === undefined) out.push(required('spec.names.listKind'))
  if (spec.scope !== 'Namespaced' && spec.scope !== 'Cluster') out.push(unsupported('spec.scope', spec.scope, ['Cluster', 'Namespaced']))
  const versions = arr(spec.versions)
  if (versions.length === 0) out.push({ field: 'spec.versions', message: 'Invalid value: null: must have exactly one version marked as storage version' })
  if (versions.filter((v) => obj(v).storage === true).length !== 1) out.push(bad('spec.versions', versions.map((v) => obj(v).name), 'must have exactly one version marked as storage version'))
  versions.forEach((v, i) => {
    if (obj(obj(v).schema).openAPIV3Schema === undefined) out.push(required(`spec.versions[${i}].schema.openAPIV3Schema`))
  })
  // validateAPIApproval: a protected group needs the annotation, a URL or "unapproved…".
  if (isProtectedGroup(group)) {
    const value = str(obj(meta.annotations)[APPROVAL])
    const field = `metadata.annotations[${APPROVAL}]`
    if (value === undefined) out.push({ field, message: 'Required value: protected groups must have approval annotation' })
    else if (!value.startsWith('unapproved') && !/^https?:\/\/[^\s/]+\/\S*$/.test(value)) out.push(bad(field, value, 'protected groups must have approval annotation'))
  }
  return out
}

// ---- the manifests' other kinds (enough to apply deploy/) ----

export function validateDeployment (o: O): Violation[] {
  const out: Violation[] = []
  const spec = obj(o.spec)
  const selector = obj(obj(spec.selector).matchLabels)
  const labels = obj(obj(obj(spec.template).metadata).labels)
  if (Object.keys(selector).length === 0) out.push(required('spec.selector'))
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) out.push(bad('spec.template.metadata.labels', labels, '`selector` does not match template `labels`'))
  out.push(...validatePodSpec(obj(obj(spec.template).spec), 'spec.template.spec'))
  return out
}

export function validateRbac (kind: string, o: O): Violation[] {
  const out: Violation[] = []
  if (kind === 'ClusterRole' || kind === 'Role') {
    arr(o.rules).forEach((r, i) => {
      if (arr(obj(r).verbs).length === 0) out.push(required(`rules[${i}].verbs`))
    })
  } else {
    const ref = obj(o.roleRef)
    if (str(ref.name) === undefined) out.push(required('roleRef.name'))
    if (!['ClusterRole', 'Role'].includes(str(ref.kind) ?? '')) out.push(unsupported('roleRef.kind', ref.kind, ['ClusterRole', 'Role']))
    arr(o.subjects).forEach((s, i) => {
      const sub = obj(s)
      if (sub.kind === 'ServiceAccount' && (str(sub.namespace) ?? '') === '') out.push(required(`subjects[${i}].namespace`))
    })
  }
  return out
}
