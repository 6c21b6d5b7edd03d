import { networkReducer } from '../projections/network.js'
import type { ReducerContext } from '../adapters/replica.js'

/**
 * The projections the CLI folds: the ONE place to add a reducer. `weft log state` renders each
 * key with the renderer registered for it in ./render-state.ts, or as generic JSON.
 * A function, because the network reducer keeps a per-replica event locator.
 */
export function cliReducers (): (ctx: ReducerContext) => { network: ReturnType<typeof networkReducer> } {
  return ({ log, owner }) => ({ network: networkReducer({ ...(owner !== undefined ? { owner } : {}), frozenAt: (a) => log.freezeSeq(a) }) })
}

export type CliReducers = ReturnType<ReturnType<typeof cliReducers>>
