import { isDns1123Label, isDns1123Subdomain, isQualifiedName } from './labels.js'
import { arr, bad, obj, required, str, unsupported, type O, type Violation } from './validate.js'

/**
 * Pods (and pod templates) and MutatingWebhookConfigurations, as the real API server validates
 * them (k8s.io/kubernetes pkg/apis/core/validation ValidatePodSpec, pkg/apis/admissionregistration
 * /validation), limited to the rules listed in docs/kubernetes-fake.md.
 */

const C_IDENTIFIER_ISH = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/
const IANA_SVC_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/
const FIELD_PATHS = ['metadata.name', 'metadata.namespace', 'metadata.uid', 'spec.nodeName', 'spec.serviceAccountName', 'status.hostIP', 'status.hostIPs', 'status.podIP', 'status.podIPs']

function validateContainer (c: O, path: string, volumes: Set<string>, out: Violation[], init: boolean): void {
  if (!isDns1123Label(str(c.name) ?? '')) out.push(str(c.name) === undefined ? required(`${path}.name`) : bad(`${path}.name`, c.name, 'a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \'-\''))
  if ((str(c.image) ?? '') === '') out.push(required(`${path}.image`))
  const portNames = new Set<string>()
  arr(c.ports).forEach((p, i) => {
    const port = obj(p)
    const n = port.containerPort
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) out.push(bad(`${path}.ports[${i}].containerPort`, n, 'must be between 1 and 65535, inclusive'))
    const name = str(port.name)
    if (name !== undefined) {
      if (name.length > 15 || !IANA_SVC_NAME.test(name) || !/[a-z]/.test(name)) out.push(bad(`${path}.ports[${i}].name`, name, 'must be no more than 15 characters, contain only lowercase alphanumerics and \'-\', and contain a letter'))
      if (portNames.has(name)) out.push({ field: `${path}.ports[${i}].name`, message: `Duplicate value: "${name}"` })
      portNames.add(name)
    }
    if (port.protocol !== undefined && !['TCP', 'UDP', 'SCTP'].includes(str(port.protocol) ?? '')) out.push(unsupported(`${path}.ports[${i}].protocol`, port.protocol, ['SCTP', 'TCP', 'UDP']))
  })
  arr(c.env).forEach((e, j) => {
    const env = obj(e)
    const name = str(env.name) ?? ''
    if (name === '') out.push(required(`${path}.env[${j}].name`))
    else if (!C_IDENTIFIER_ISH.test(name)) out.push(bad(`${path}.env[${j}].name`, name, 'a valid environment variable name must consist of alphabetic characters, digits, \'_\', \'-\', or \'.\', and must not start with a digit'))
    const from = obj(env.valueFrom)
    if (env.value !== undefined && Object.keys(from).length > 0) out.push(bad(`${path}.env[${j}].valueFrom`, '', 'may not be specified when `value` is not empty'))
    const fieldPath = str(obj(from.fieldRef).fieldPath)
    if (fieldPath !== undefined && !FIELD_PATHS.includes(fieldPath) && !/^metadata\.(labels|annotations)\[/.test(fieldPath)) out.push(unsupported(`${path}.env[${j}].valueFrom.fieldRef.fieldPath`, fieldPath, FIELD_PATHS))
    const secret = from.secretKeyRef
    if (secret !== undefined && ((str(obj(secret).key) ?? '') === '')) out.push(required(`${path}.env[${j}].valueFrom.secretKeyRef.key`))
  })
  const mountPaths = new Set<string>()
  arr(c.volumeMounts).forEach((m, j) => {
    const vm = obj(m)
    const name = str(vm.name) ?? ''
    if (!volumes.has(name)) out.push({ field: `${path}.volumeMounts[${j}].name`, message: `Not found: "${name}"` })
    const mp = str(vm.mountPath) ?? ''
    if (mp === '') out.push(required(`${path}.volumeMounts[${j}].mountPath`))
    else if (mountPaths.has(mp)) out.push(bad(`${path}.volumeMounts[${j}].mountPath`, mp, 'must be unique'))
    mountPaths.add(mp)
  })
  const sc = obj(c.securityContext)
  if (sc.runAsUser !== undefined && (typeof sc.runAsUser !== 'number' || sc.runAsUser < 0)) out.push(bad(`${path}.securityContext.runAsUser`, sc.runAsUser, 'must be between 0 and 2147483647, inclusive'))
  if (sc.runAsNonRoot === true && sc.runAsUser === 0) out.push(bad(`${path}.securityContext.runAsNonRoot`, true, 'runAsNonRoot is true but runAsUser is 0'))
  if (sc.privileged === true && sc.allowPrivilegeEscalation === false) out.push(bad(`${path}.securityContext`, 'privileged', 'cannot set `allowPrivilegeEscalation` to false and `privileged` to true'))
  if (c.restartPolicy !== undefined && (!init || c.restartPolicy !== 'Always')) out.push(c.restartPolicy === undefined ? required(`${path}.restartPolicy`) : unsupported(`${path}.restartPolicy`, c.restartPolicy, init ? ['Always'] : []))
}

/** A pod spec at `path` (`spec` of a Pod, `spec.template.spec` of a Deployment). */
export function validatePodSpec (spec: O, path: string): Violation[] {
  const out: Violation[] = []
  const volumes = new Set<string>()
  arr(spec.volumes).forEach((v, i) => {
    const name = str(obj(v).name) ?? ''
    if (!isDns1123Label(name)) out.push(bad(`${path}.volumes[${i}].name`, name, 'a lowercase RFC 1123 label'))
    if (volumes.has(name)) out.push({ field: `${path}.volumes[${i}].name`, message: `Duplicate value: "${name}"` })
    volumes.add(name)
  })
  const containers = arr(spec.containers)
  if (containers.length === 0) out.push(required(`${path}.containers`))
  const names = new Set<string>()
  const check = (list: unknown[], field: string, init: boolean): void => {
    list.forEach((c, i) => {
      const name = str(obj(c).name) ?? ''
      if (names.has(name)) out.push({ field: `${path}.${field}[${i}].name`, message: `Duplicate value: "${name}"` })
      names.add(name)
      validateContainer(obj(c), `${path}.${field}[${i}]`, volumes, out, init)
    })
  }
  check(arr(spec.initContainers), 'initContainers', true)
  check(containers, 'containers', false)
  if (spec.restartPolicy !== undefined && !['Always', 'OnFailure', 'Never'].includes(str(spec.restartPolicy) ?? '')) out.push(unsupported(`${path}.restartPolicy`, spec.restartPolicy, ['Always', 'OnFailure', 'Never']))
  const psc = obj(spec.securityContext)
  if (psc.runAsUser !== undefined && (typeof psc.runAsUser !== 'number' || psc.runAsUser < 0)) out.push(bad(`${path}.securityContext.runAsUser`, psc.runAsUser, 'must be between 0 and 2147483647, inclusive'))
  return out
}

export function validatePod (o: O): Violation[] {
  return validatePodSpec(obj(o.spec), 'spec')
}

const OPS = ['*', 'CONNECT', 'CREATE', 'DELETE', 'UPDATE']
const SELECTOR_OPS = ['DoesNotExist', 'Exists', 'In', 'NotIn']

function validateSelector (sel: unknown, path: string, out: Violation[]): void {
  const s = obj(sel)
  for (const k of Object.keys(obj(s.matchLabels))) if (!isQualifiedName(k)) out.push(bad(`${path}.matchLabels`, k, 'name part must consist of alphanumeric characters, \'-\', \'_\' or \'.\''))
  arr(s.matchExpressions).forEach((e, i) => {
    const ex = obj(e)
    const op = str(ex.operator) ?? ''
    if (!SELECTOR_OPS.includes(op)) out.push(unsupported(`${path}.matchExpressions[${i}].operator`, op, SELECTOR_OPS))
    const values = arr(ex.values)
    if ((op === 'In' || op === 'NotIn') && values.length === 0) out.push(required(`${path}.matchExpressions[${i}].values`))
    if ((op === 'Exists' || op === 'DoesNotExist') && values.length > 0) out.push(bad(`${path}.matchExpressions[${i}].values`, values, 'may not be specified when `operator` is \'Exists\' or \'DoesNotExist\''))
    if (!isQualifiedName(str(ex.key) ?? '')) out.push(bad(`${path}.matchExpressions[${i}].key`, ex.key, 'name part must consist of alphanumeric characters'))
  })
}

export function validateMutatingWebhookConfiguration (o: O): Violation[] {
  const out: Violation[] = []
  const names = new Set<string>()
  arr(o.webhooks).forEach((w, i) => {
    const wh = obj(w)
    const p = `webhooks[${i}]`
    const name = str(wh.name) ?? ''
    if (name === '') out.push(required(`${p}.name`))
    else if (!isDns1123Subdomain(name) || name.split('.').length < 3) out.push(bad(`${p}.name`, name, 'should be a domain with at least three segments separated by dots'))
    if (names.has(name)) out.push({ field: `${p}.name`, message: `Duplicate value: "${name}"` })
    names.add(name)
    const versions = arr(wh.admissionReviewVersions)
    if (versions.length === 0) out.push(required(`${p}.admissionReviewVersions`))
    else if (!versions.includes('v1') && !versions.includes('v1beta1')) out.push(unsupported(`${p}.admissionReviewVersions`, versions, ['v1', 'v1beta1']))
    if (!['None', 'NoneOnDryRun'].includes(str(wh.sideEffects) ?? '')) out.push(wh.sideEffects === undefined ? required(`${p}.sideEffects`) : unsupported(`${p}.sideEffects`, wh.sideEffects, ['None', 'NoneOnDryRun']))
    if (wh.failurePolicy !== undefined && !['Fail', 'Ignore'].includes(str(wh.failurePolicy) ?? '')) out.push(unsupported(`${p}.failurePolicy`, wh.failurePolicy, ['Fail', 'Ignore']))
    if (wh.matchPolicy !== undefined && !['Equivalent', 'Exact'].includes(str(wh.matchPolicy) ?? '')) out.push(unsupported(`${p}.matchPolicy`, wh.matchPolicy, ['Equivalent', 'Exact']))
    if (wh.reinvocationPolicy !== undefined && !['IfNeeded', 'Never'].includes(str(wh.reinvocationPolicy) ?? '')) out.push(unsupported(`${p}.reinvocationPolicy`, wh.reinvocationPolicy, ['IfNeeded', 'Never']))
    const t = wh.timeoutSeconds
    if (t !== undefined && (typeof t !== 'number' || t < 1 || t > 30)) out.push(bad(`${p}.timeoutSeconds`, t, 'the timeout value must be between 1 and 30 seconds'))
    const cc = obj(wh.clientConfig)
    const hasUrl = cc.url !== undefined
    const hasSvc = cc.service !== undefined
    if (hasUrl === hasSvc) out.push({ field: `${p}.clientConfig`, message: 'Required value: exactly one of url or service is required' })
    if (hasSvc) {
      const s = obj(cc.service)
      if ((str(s.namespace) ?? '') === '') out.push(required(`${p}.clientConfig.service.namespace`))
      if ((str(s.name) ?? '') === '') out.push(required(`${p}.clientConfig.service.name`))
      if (s.port !== undefined && (typeof s.port !== 'number' || s.port < 1 || s.port > 65535)) out.push(bad(`${p}.clientConfig.service.port`, s.port, 'port is not valid: must be between 1 and 65535, inclusive'))
      if (s.path !== undefined && !(str(s.path) ?? '').startsWith('/')) out.push(bad(`${p}.clientConfig.service.path`, s.path, 'must start with a \'/\''))
    }
    if (cc.caBundle !== undefined && (typeof cc.caBundle !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(cc.caBundle))) out.push(bad(`${p}.clientConfig.caBundle`, '<bytes>', 'illegal base64 data'))
    arr(wh.rules).forEach((r, j) => {
      const rule = obj(r)
      const ops = arr(rule.operations)
      if (ops.length === 0) out.push(required(`${p}.rules[${j}].operations`))
      for (const op of ops) if (!OPS.includes(str(op) ?? '')) out.push(unsupported(`${p}.rules[${j}].operations`, op, OPS))
      if (arr(rule.apiGroups).length === 0) out.push(required(`${p}.rules[${j}].apiGroups`))
      if (arr(rule.apiVersions).length === 0) out.push(required(`${p}.rules[${j}].apiVersions`))
      if (arr(rule.resources).length === 0) out.push(required(`${p}.rules[${j}].resources`))
      if (rule.scope !== undefined && !['*', 'Cluster', 'Namespaced'].includes(str(rule.scope) ?? '')) out.push(unsupported(`${p}.rules[${j}].scope`, rule.scope, ['*', 'Cluster', 'Namespaced']))
    })
    if (wh.namespaceSelector !== undefined) validateSelector(wh.namespaceSelector, `${p}.namespaceSelector`, out)
    if (wh.objectSelector !== undefined) validateSelector(wh.objectSelector, `${p}.objectSelector`, out)
  })
  return out
}
