import { createHash } from 'node:crypto'
import type { KubeObject } from '../../adapters/kube/client.js'
import {
  LABEL_APP_MANAGED_BY, LABEL_K8S_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_SOURCE_CLUSTER,
  WEFT_ENDPOINTSLICE_MANAGER, WEFT_MANAGER
} from '../../adapters/kube/types.js'

/**
 * Names and labels of the objects the MCS agent writes, and the one ownership rule: an object
 * is Weft's when it carries `app.kubernetes.io/managed-by: weft`. Nothing else is ever
 * updated or deleted (see docs/mcs.md).
 */

export { LABEL_APP_MANAGED_BY, LABEL_K8S_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_SOURCE_CLUSTER, WEFT_ENDPOINTSLICE_MANAGER, WEFT_MANAGER }

function hash (text: string, chars: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, chars)
}

/** `derived-<10 hex>`: the selectorless Service behind an import (a DNS-1035 label). */
export function derivedServiceName (namespace: string, name: string): string {
  return `derived-${hash(`${namespace}/${name}`, 10)}`
}

/** One EndpointSlice per (import, exporting cluster, listener address). */
export function endpointSliceName (namespace: string, name: string, cluster: string, host: string): string {
  return `${derivedServiceName(namespace, name)}-${hash(`${cluster}/${host}`, 8)}`
}

export function isWeftOwned (obj: KubeObject | undefined): boolean {
  return obj?.metadata.labels?.[LABEL_APP_MANAGED_BY] === WEFT_MANAGER
}

/** Label selectors of what the agent garbage-collects. */
export const SELECTOR_SERVICE_IMPORTS = `${LABEL_APP_MANAGED_BY}=${WEFT_MANAGER}`
export const SELECTOR_DERIVED_SERVICES = `${LABEL_APP_MANAGED_BY}=${WEFT_MANAGER},${LABEL_SERVICE_NAME}`
export const SELECTOR_ENDPOINT_SLICES = `${LABEL_APP_MANAGED_BY}=${WEFT_MANAGER},${LABEL_MANAGED_BY}=${WEFT_ENDPOINTSLICE_MANAGER}`

/** Canonical JSON (sorted keys, undefined dropped): equality of plain data. */
export function canonical (v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`
  }
  return JSON.stringify(v)
}

export function same (a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b)
}
