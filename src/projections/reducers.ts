import { networkReducer } from './network.js'

/**
 * What reducers need that no event carries: the merged log's fork proofs and the owner key from
 * the token. A structural type, so this layer imports nothing above it.
 */
export interface ReducerContext {
  log: {
    freezeSeq: (authorHex: string) => number | undefined
    /** A logged event by id (the merged log's `get`); reducers locate parents through it. */
    get?: (id: string) => { readonly authorHex: string, readonly fields: { readonly seq: number } } | undefined
  }
  owner?: Uint8Array
}

/**
 * The projections every replica folds (daemon, CLI, API): the ONE place to add a reducer.
 * `weft log state` renders each key with the renderer registered in cli/render-state.ts, or as
 * generic JSON. A function, because the network reducer keeps a per-replica event locator.
 */
export function replicaReducers (): (ctx: ReducerContext) => { network: ReturnType<typeof networkReducer> } {
  return ({ log, owner }) => {
    const get = log.get?.bind(log)
    const locate = get === undefined ? undefined : { get: (id: string) => { const e = get(id); return e === undefined ? undefined : { author: e.authorHex, seq: e.fields.seq } } }
    return { network: networkReducer({ ...(owner !== undefined ? { owner } : {}), ...(locate !== undefined ? { locate } : {}), frozenAt: (a) => log.freezeSeq(a) }) }
  }
}

export type ReplicaReducers = ReturnType<ReturnType<typeof replicaReducers>>
