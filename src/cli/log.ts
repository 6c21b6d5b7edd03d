import type { Command } from 'commander'
import { run } from './errors.js'
import { dataDirOption, intParser, jsonOption } from './options.js'
import type { CatOpts, DirOpts } from './log-read.js'

/**
 * `weft log <verb>`: read, check, export and import the event log of a data dir. The verbs are
 * loaded when run, so `weft token …` does not pay for LevelDB and the schemas at start-up.
 */
const read = async (): Promise<typeof import('./log-read.js')> => await import('./log-read.js')

export function registerLog (program: Command): void {
  const log = program.command('log').description('inspect, verify, export and import the event log of a data dir')

  const verb = (name: string, description: string): Command =>
    dataDirOption(log.command(name).description(description))

  jsonOption(verb('ls', 'list author feeds: seq, head, fork status, hostname'))
    .action(async (o: DirOpts) => { await run(async () => await (await read()).logLs(o)) })

  jsonOption(verb('show', 'show one event').argument('<event>', 'event id (or a unique prefix, at least 4 hex digits), or <peer id | author hex>:<seq>'))
    .action(async (ref: string, o: DirOpts) => { await run(async () => await (await read()).logShow(ref, o)) })

  jsonOption(verb('cat', 'print events in total order (lamport, author, seq)')
    .option('--from <lamport>', 'start at this lamport', intParser(0))
    .option('--limit <n>', 'print at most n events', intParser(1))
    .option('--type <type>', 'only events of this type (node.join, ip.claim, …)')
    .option('--author <peer>', 'only events of this author (peer id or author hex)'), 'print JSON Lines, one event per line')
    .action(async (o: CatOpts) => { await run(async () => await (await read()).logCat(o)) })

  jsonOption(verb('verify', 're-verify every stored event: signature, schema, chain, lamport, forks'))
    .action(async (o: DirOpts) => { await run(async () => await (await import('./log-verify.js')).logVerify(o)) })

  jsonOption(verb('state', 'print the folded state (at the end, or at a point of the log)')
    .option('--at <point>', 'a lamport (whole number) or an event id / unique prefix'), 'print the whole state object as JSON')
    .action(async (o: DirOpts & { at?: string }) => { await run(async () => await (await read()).logState(o)) })

  jsonOption(verb('replay', 'fold the log up to a point, printing each event applied and the state reached')
    .requiredOption('--until <point>', 'a lamport (whole number) or an event id / unique prefix'), 'print {until, events, state} as JSON')
    .action(async (o: DirOpts & { until: string }) => { await run(async () => await (await read()).logReplay(o)) })

  verb('export', 'print every event as signed JSON Lines (only "envelope" is authoritative)')
    .action(async (o: DirOpts) => { await run(async () => await (await read()).logExport(o)) })

  jsonOption(verb('import', 'verify and store events from JSON Lines (as printed by export)')
    .argument('<file>', 'a JSON Lines file, or "-" for stdin')
    .option('--net <network id>', 'network id (16 hex digits) for a new store; default: the network of the first valid line'), 'print the report as JSON')
    .action(async (file: string, o: DirOpts & { net?: string }) => { await run(async () => await (await import('./log-import.js')).logImport(file, o)) })

  jsonOption(log.command('diff').description('compare the logs of two data dirs (exit 1 if they differ)')
    .argument('<data-dir-a>').argument('<data-dir-b>'))
    .action(async (a: string, b: string, o: { json: boolean }) => { await run(async () => await (await import('./log-diff.js')).logDiff(a, b, o)) })
}
