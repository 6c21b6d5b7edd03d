import { isKubeError, type KubeClient, type KubeObject, type ResourceRef } from '../../adapters/kube/client.js'
import { isWeftOwned, same } from './names.js'

/**
 * Writing the objects the agent owns. Every write first reads the object: one that exists
 * without Weft's label is never touched (it is reported instead), and an update carries the
 * resourceVersion it read, so a concurrent change is a 409 Conflict and the next pass retries.
 */

export type EnsureResult = 'created' | 'updated' | 'unchanged' | 'foreign'

export interface EnsureOptions {
  /** Top-level fields (besides metadata and status) the agent decides. */
  fields: readonly string[]
  /**
   * 'exact': these fields, labels and annotations are replaced as a whole (custom resources,
   * EndpointSlices). 'merge': only the keys inside each field that the agent sets are
   * compared and replaced, so what the API server defaults (a Service's clusterIP,
   * ipFamilies…) is kept.
   */
  mode: 'exact' | 'merge'
  /** Write `status` through the status subresource too. */
  status?: boolean
}

type Obj = KubeObject & Record<string, unknown>

function fieldMatches (cur: unknown, want: unknown, mode: 'exact' | 'merge'): boolean {
  if (mode === 'exact' || typeof want !== 'object' || want === null || Array.isArray(want)) return same(cur, want)
  const c = (typeof cur === 'object' && cur !== null ? cur : {}) as Record<string, unknown>
  return Object.entries(want).every(([k, v]) => same(c[k], v))
}

function metaMatches (cur: KubeObject, want: KubeObject, mode: 'exact' | 'merge'): boolean {
  const labels = want.metadata.labels ?? {}
  const annotations = want.metadata.annotations ?? {}
  if (mode === 'exact') return same(cur.metadata.labels ?? {}, labels) && same(cur.metadata.annotations ?? {}, annotations)
  return fieldMatches(cur.metadata.labels ?? {}, labels, 'merge') && fieldMatches(cur.metadata.annotations ?? {}, annotations, 'merge')
}

export async function ensureOwned<T extends KubeObject> (client: KubeClient, res: ResourceRef, desired: T, opts: EnsureOptions): Promise<{ result: EnsureResult, object: T }> {
  const ns = desired.metadata.namespace
  const name = desired.metadata.name as string
  const want = desired as unknown as Obj
  let result: EnsureResult = 'unchanged'
  let cur = await client.get<T>(res, ns, name)
  if (cur === undefined) {
    const { status: _status, ...body } = want
    try {
      cur = await client.create<T>(res, ns, body as unknown as T)
      result = 'created'
    } catch (err) {
      if (!isKubeError(err, 'AlreadyExists')) throw err
      cur = await client.get<T>(res, ns, name)
      if (cur === undefined) throw err
    }
  }
  if (!isWeftOwned(cur)) return { result: 'foreign', object: cur }
  const have = cur as unknown as Obj
  if (!metaMatches(cur, desired, opts.mode) || !opts.fields.every((f) => fieldMatches(have[f], want[f], opts.mode))) {
    const next: Obj = {
      ...have,
      metadata: {
        ...cur.metadata,
        labels: opts.mode === 'exact' ? { ...desired.metadata.labels } : { ...cur.metadata.labels, ...desired.metadata.labels },
        annotations: opts.mode === 'exact' ? { ...desired.metadata.annotations } : { ...cur.metadata.annotations, ...desired.metadata.annotations }
      }
    }
    for (const f of opts.fields) {
      const w = want[f]
      next[f] = opts.mode === 'merge' && typeof w === 'object' && w !== null && !Array.isArray(w) ? { ...(have[f] as object), ...w } : w
    }
    cur = await client.replace<T>(res, ns, next as unknown as T)
    if (result === 'unchanged') result = 'updated'
  }
  if (opts.status === true && want.status !== undefined && !fieldMatches((cur as unknown as Obj).status, want.status, 'merge')) {
    const withStatus = { ...(cur as unknown as Obj), status: { ...((cur as unknown as Obj).status as object | undefined), ...(want.status as object) } }
    cur = await client.replaceStatus<T>(res, ns, withStatus as unknown as T)
    if (result === 'unchanged') result = 'updated'
  }
  return { result, object: cur }
}

/**
 * Delete the objects matching `labelSelector` (Weft's own) whose `namespace/name` is not in
 * `keep`. Each delete is conditional on the uid listed, so an object recreated meanwhile stays.
 */
export async function deleteOwnedExcept (client: KubeClient, res: ResourceRef, labelSelector: string, keep: ReadonlySet<string> | ((key: string) => boolean)): Promise<string[]> {
  const kept = typeof keep === 'function' ? keep : (k: string) => keep.has(k)
  const listed = await client.list(res, undefined, { labelSelector })
  const deleted: string[] = []
  for (const obj of listed.items) {
    const key = `${obj.metadata.namespace ?? ''}/${obj.metadata.name ?? ''}`
    if (kept(key) || !isWeftOwned(obj)) continue
    try {
      const uid = obj.metadata.uid
      if (await client.delete(res, obj.metadata.namespace, obj.metadata.name as string, uid !== undefined ? { preconditions: { uid } } : {})) deleted.push(key)
    } catch (err) {
      if (!isKubeError(err, 'Conflict') && !isKubeError(err, 'NotFound')) throw err
    }
  }
  return deleted
}
