import type { Condition as KubeCondition } from '../../adapters/kube/types.js'

/**
 * metav1.Condition bookkeeping: the agent decides type, status, reason and message; this
 * keeps `lastTransitionTime` while the status stays the same (as meta.SetStatusCondition does)
 * and stamps `observedGeneration`.
 */

export interface WantedCondition {
  type: string
  status: 'True' | 'False' | 'Unknown'
  reason: string
  message: string
}

/** The conditions to write, or undefined when `current` already says exactly that. */
export function mergeConditions (current: readonly KubeCondition[] | undefined, wanted: readonly WantedCondition[], generation: number | undefined, now: Date): KubeCondition[] | undefined {
  const cur = current ?? []
  const out: KubeCondition[] = []
  let changed = false
  for (const w of wanted) {
    const old = cur.find((c) => c.type === w.type)
    const c: KubeCondition = {
      type: w.type,
      status: w.status,
      reason: w.reason,
      message: w.message,
      lastTransitionTime: old !== undefined && old.status === w.status ? old.lastTransitionTime : rfc3339(now),
      ...(generation !== undefined ? { observedGeneration: generation } : {})
    }
    if (old === undefined || old.status !== c.status || old.reason !== c.reason || old.message !== c.message || old.observedGeneration !== c.observedGeneration) changed = true
    out.push(c)
  }
  // Conditions of other types (another controller's) are kept as they are.
  for (const c of cur) if (!wanted.some((w) => w.type === c.type)) out.push(c)
  return changed ? out : undefined
}

/** RFC 3339 with seconds, as metav1.Time serialises. */
export function rfc3339 (d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z')
}
