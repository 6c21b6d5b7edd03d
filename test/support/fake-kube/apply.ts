/**
 * Server-side apply for the fake API server (PATCH with `application/apply-patch+yaml`), as far
 * as Weft relies on it: the applied configuration is merged into the live object (objects field
 * by field, lists replaced as a whole, as for atomic lists), and a field that the same manager
 * applied last time and no longer applies is removed. Not modelled: conflicts between managers
 * (so `force` changes nothing), list merge keys (associative lists), `managedFields` in answers.
 */

type Json = Record<string, unknown>

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)

export function applyPatch<T extends Json> (live: T, lastApplied: Json | undefined, applied: Json): T {
  const next = merge(removeDropped(structuredClone(live), lastApplied ?? {}, applied), applied) as T
  // The server keeps what identifies the live object; the resourceVersion is the live one.
  const meta = { ...(live.metadata as Json), ...(next.metadata as Json) }
  meta.resourceVersion = (live.metadata as Json).resourceVersion
  meta.uid = (live.metadata as Json).uid
  return { ...next, metadata: meta }
}

/** Remove from `live` the fields present in `before` and absent from `now` (this manager's). */
function removeDropped (live: Json, before: Json, now: Json): Json {
  for (const [k, v] of Object.entries(before)) {
    if (k === 'apiVersion' || k === 'kind') continue
    if (!(k in now)) delete live[k]
    else if (isObject(v) && isObject(now[k]) && isObject(live[k])) removeDropped(live[k], v, now[k])
  }
  return live
}

function merge (live: unknown, applied: unknown): unknown {
  if (!isObject(live) || !isObject(applied)) return structuredClone(applied)
  const out: Json = { ...live }
  for (const [k, v] of Object.entries(applied)) out[k] = merge(live[k], v)
  return out
}
