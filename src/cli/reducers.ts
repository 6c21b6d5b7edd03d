import { members } from '../projections/members.js'

/**
 * The projections the CLI folds: the ONE place to add a reducer. `weft log state` renders each
 * key with the renderer registered for it in ./render-state.ts, or as generic JSON.
 */
export const cliReducers = { members }

export type CliReducers = typeof cliReducers
