import { InvalidArgumentError, Option, type Command } from 'commander'
import { DEFAULT_DATA_DIR_TEXT, defaultDataDir } from '../node/data-dir.js'

/** Shared flags, so every command spells and documents them the same way. */
export function jsonOption (cmd: Command, what = 'print JSON instead of a table'): Command {
  return cmd.option('--json', what, false)
}

export function dataDirOption (cmd: Command): Command {
  return cmd.addOption(new Option('--data-dir <dir>', `node data directory (identity.key, events/); default ${DEFAULT_DATA_DIR_TEXT}`)
    .env('WEFT_DATA_DIR').default(defaultDataDir()))
}

/** Commander argument parser for a non-negative integer (`min` raises the floor). */
export function intParser (min = 0): (value: string) => number {
  return (value: string): number => {
    if (!/^\d{1,15}$/.test(value.trim())) throw new InvalidArgumentError('expected a whole number')
    const n = Number.parseInt(value, 10)
    if (n < min) throw new InvalidArgumentError(`must be at least ${min}`)
    return n
  }
}
