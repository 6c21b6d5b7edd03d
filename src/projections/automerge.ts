/**
 * Automerge, loaded the first time a settings document is needed (~20 MB of RSS with its WASM):
 * a network whose settings were never changed never loads it (issue 16: load what a node uses).
 *
 * Every user in the process must share this one instance: a document made by one copy of the
 * library cannot be read by another (they keep their state under module-private symbols), so
 * nothing else imports '@automerge/automerge' for its values. It is required synchronously
 * (the CommonJS build, which instantiates its WASM synchronously), so the fold stays synchronous.
 */
import { createRequire } from 'node:module'
import type * as AM from '@automerge/automerge'

export type Automerge = typeof AM

let loaded: Automerge | undefined

/** The library, loading it on first use. */
export function automerge (): Automerge {
  loaded ??= createRequire(import.meta.url)('@automerge/automerge') as Automerge
  return loaded
}

/** The library if something already loaded it (no document can exist otherwise). */
export function automergeIfLoaded (): Automerge | undefined {
  return loaded
}
