import { arr, bad, obj, required, str, unsupported, type O, type Violation } from './validate.js'

/**
 * Validation of a custom resource against the structural OpenAPI v3 schema of its CRD, as the
 * apiextensions-apiserver does (k8s.io/apiextensions-apiserver pkg/apiserver/validation and
 * pkg/apiserver/schema/pruning), for the fake API server:
 *
 * - unknown fields are pruned (dropped without an error) unless the schema, or an ancestor, says
 *   `x-kubernetes-preserve-unknown-fields: true`; `x-kubernetes-embedded-resource` objects keep
 *   apiVersion, kind and metadata;
 * - `type` (object, array, string, integer, number, boolean), `required`, `enum`, `pattern`,
 *   `minimum`/`maximum`, `minLength`/`maxLength`, `minItems`/`maxItems`, `format: int32`, and
 *   `oneOf`/`anyOf`/`not` branches (value validation only, as structural schemas allow), with
 *   the real messages ("Required value", "Invalid value: …", "Unsupported value: …");
 * - CEL (`x-kubernetes-validations`): only the rule forms Weft's CRDs use are evaluated,
 *   `has(self.a) != has(self.b)` and `!has(self.a) || !has(self.b)`; any other rule is not
 *   evaluated (docs/kubernetes-fake.md) rather than guessed.
 */

export interface Schema {
  type?: string
  format?: string
  required?: string[]
  properties?: Record<string, Schema>
  items?: Schema
  additionalProperties?: Schema | boolean
  enum?: unknown[]
  pattern?: string
  minimum?: number
  maximum?: number
  minLength?: number
  maxLength?: number
  minItems?: number
  maxItems?: number
  oneOf?: Schema[]
  anyOf?: Schema[]
  not?: Schema
  'x-kubernetes-preserve-unknown-fields'?: boolean
  'x-kubernetes-embedded-resource'?: boolean
  'x-kubernetes-validations'?: Array<{ rule: string, message?: string }>
}

/** Validate `value` at `path` (mutating it: pruning). Returns the violations. */
export function validateSchema (value: unknown, schema: Schema, path: string, out: Violation[] = []): Violation[] {
  if (value === null || value === undefined) return out
  const t = schema.type
  if (t !== undefined && !hasType(value, t)) {
    out.push({ field: path, message: `Invalid value: "${typeName(value)}": ${path} in body must be of type ${t}: "${typeName(value)}"` })
    return out
  }
  if (schema.enum !== undefined && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) out.push(unsupported(path, value, schema.enum.map(String)))
  if (typeof value === 'string') {
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) out.push(bad(path, value, `${path} in body should match '${schema.pattern}'`))
    if (schema.maxLength !== undefined && value.length > schema.maxLength) out.push({ field: path, message: `Too long: may not be more than ${schema.maxLength} bytes` })
    if (schema.minLength !== undefined && value.length < schema.minLength) out.push(bad(path, value, `${path} in body should be at least ${schema.minLength} chars long`))
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) out.push(bad(path, value, `${path} in body should be greater than or equal to ${schema.minimum}`))
    if (schema.maximum !== undefined && value > schema.maximum) out.push(bad(path, value, `${path} in body should be less than or equal to ${schema.maximum}`))
  }
  if (Array.isArray(value)) {
    if (schema.maxItems !== undefined && value.length > schema.maxItems) out.push({ field: path, message: `Too many: ${value.length}: must have at most ${schema.maxItems} items` })
    if (schema.minItems !== undefined && value.length < schema.minItems) out.push(bad(path, value.length, `${path} in body should have at least ${schema.minItems} items`))
    if (schema.items !== undefined) value.forEach((v, i) => validateSchema(v, schema.items as Schema, `${path}[${i}]`, out))
  }
  if (typeof value === 'object' && !Array.isArray(value)) {
    const o = value as O
    for (const r of schema.required ?? []) if (o[r] === undefined || o[r] === null) out.push(required(`${path}.${r}`))
    const props = schema.properties ?? {}
    for (const [k, v] of Object.entries(o)) {
      const sub = props[k] ?? (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined)
      if (sub !== undefined) validateSchema(v, sub, `${path}.${k}`, out)
      else if (!keepsUnknown(schema, k)) delete o[k]
    }
    for (const rule of schema['x-kubernetes-validations'] ?? []) {
      const ok = evalRule(rule.rule, o)
      if (ok === false) out.push(bad(path, 'object', rule.message ?? `failed rule: ${rule.rule}`))
    }
  }
  const branches = (list: Schema[] | undefined): number => (list ?? []).filter((b) => validateSchema(structuredClone(value), b, path).length === 0).length
  if (schema.oneOf !== undefined && branches(schema.oneOf) !== 1) out.push({ field: path, message: `Invalid value: ${JSON.stringify(shallow(value))}: ${path} in body must validate one and only one schema (oneOf)` })
  if (schema.anyOf !== undefined && branches(schema.anyOf) === 0) out.push({ field: path, message: `Invalid value: ${JSON.stringify(shallow(value))}: ${path} in body must validate at least one schema (anyOf)` })
  if (schema.not !== undefined && validateSchema(structuredClone(value), schema.not, path).length === 0) out.push({ field: path, message: `Invalid value: ${JSON.stringify(shallow(value))}: ${path} in body should not be valid against the schema in "not"` })
  return out
}

function keepsUnknown (schema: Schema, key: string): boolean {
  if (schema['x-kubernetes-preserve-unknown-fields'] === true) return true
  return schema['x-kubernetes-embedded-resource'] === true && (key === 'apiVersion' || key === 'kind' || key === 'metadata')
}

function hasType (v: unknown, t: string): boolean {
  switch (t) {
    case 'object': return typeof v === 'object' && v !== null && !Array.isArray(v)
    case 'array': return Array.isArray(v)
    case 'string': return typeof v === 'string'
    case 'integer': return typeof v === 'number' && Number.isInteger(v)
    case 'number': return typeof v === 'number'
    case 'boolean': return typeof v === 'boolean'
    default: return true
  }
}

function typeName (v: unknown): string {
  if (Array.isArray(v)) return 'array'
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number'
  return typeof v
}

function shallow (v: unknown): unknown {
  return typeof v === 'object' && v !== null ? (Array.isArray(v) ? 'array' : 'object') : v
}

/** The CEL forms modelled; undefined for a rule that is not (it is then not enforced). */
function evalRule (rule: string, self: O): boolean | undefined {
  const has = (f: string): boolean => self[f] !== undefined && self[f] !== null
  const xor = /^has\(self\.(\w+)\)\s*!=\s*has\(self\.(\w+)\)$/.exec(rule.trim())
  if (xor !== null) return has(xor[1] as string) !== has(xor[2] as string)
  const nand = /^!has\(self\.(\w+)\)\s*\|\|\s*!has\(self\.(\w+)\)$/.exec(rule.trim())
  if (nand !== null) return !has(nand[1] as string) || !has(nand[2] as string)
  return undefined
}

/** The schema of `version` in a stored CRD object. */
export function crdSchema (crd: O, version: string): Schema | undefined {
  const v = arr(obj(crd.spec).versions).map(obj).find((x) => str(x.name) === version)
  const s = obj(obj(v?.schema).openAPIV3Schema)
  return Object.keys(s).length === 0 ? undefined : s as Schema
}
