import { isKubeError, type KubeClient, type KubeObject, type ResourceRef } from '../../adapters/kube/client.js'
import type { Condition } from '../../adapters/kube/types.js'
import { mergeConditions, type WantedCondition } from '../mcs/conditions.js'

/**
 * Writing a custom resource's status: conditions merged as meta.SetStatusCondition does
 * (lastTransitionTime kept while the status stays), the other status fields replaced, through
 * the status subresource; nothing written when nothing changed; a 409 re-reads and retries
 * (5 attempts).
 */
export async function writeStatus<T extends KubeObject & { status?: { conditions?: Condition[], observedGeneration?: number } }> (
  kube: KubeClient, res: ResourceRef, cached: T, wanted: readonly WantedCondition[], fields: Record<string, unknown>, now: Date
): Promise<void> {
  const ns = cached.metadata.namespace
  const name = cached.metadata.name as string
  let cur: T | undefined = cached
  for (let attempt = 0; ; attempt++) {
    if (cur === undefined) return
    const merged = mergeConditions(cur.status?.conditions, wanted, cur.metadata.generation, now)
    const status: Record<string, unknown> = { ...cur.status, ...fields, conditions: merged ?? cur.status?.conditions ?? [] }
    if (cur.metadata.generation !== undefined) status.observedGeneration = cur.metadata.generation
    for (const [k, v] of Object.entries(status)) if (v === undefined) delete status[k]
    if (merged === undefined && JSON.stringify(status) === JSON.stringify(cur.status ?? {})) return
    try {
      await kube.replaceStatus<T>(res, ns, { ...cur, status })
      return
    } catch (err) {
      if (isKubeError(err, 'NotFound')) return
      if (!isKubeError(err, 'Conflict') || attempt >= 4) throw err
      cur = await kube.get<T>(res, ns, name)
    }
  }
}

export type { WantedCondition }
