import { networkReducer } from '../projections/network.js'

/**
 * The projections the CLI folds: the ONE place to add a reducer. `weft log state` renders each
 * key with the renderer registered for it in ./render-state.ts, or as generic JSON.
 * A function, because the network reducer keeps a per-replica event locator.
 */
export function cliReducers (): { network: ReturnType<typeof networkReducer> } {
  return { network: networkReducer() }
}

export type CliReducers = ReturnType<typeof cliReducers>
