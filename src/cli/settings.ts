import type { Command } from 'commander'
import type { SettingsResponse } from '../adapters/api-types.js'
import { authorName } from '../log/author.js'
import { fromHex } from '../log/bytes.js'
import type { ApiCliOptions } from './api-client.js'
import { CliError, EXIT_OK, run } from './errors.js'
import { dataDirOption, jsonOption } from './options.js'
import { out, printJson, shortId, shortPeer, table } from './output.js'
import { apiOptions } from './status.js'
import { ownerKeyOption } from './admin.js'

/**
 * `weft settings get|set`: the network's shared settings (see docs/projections.md). `get` asks
 * the running daemon, or folds a stopped data dir's log itself; `set` appends a signed
 * settings.change through the daemon, which holds the node's key. The settings schemas
 * (Automerge), the API client and the store are loaded when a command runs.
 */

/** For --help without loading Automerge; test/api checks it against SETTING_KEYS. */
export const KEYS_HELP = 'overlayCidr, overlayCidr6, zone, minNodes, serverCount, dynamicRoles, mtu'

const client = async (o: ApiCliOptions): Promise<import('./api-client.js').ApiClient> =>
  await (await import('./api-client.js')).ApiClient.fromOptions(o)

type Opts = ApiCliOptions & { json: boolean, ownerKey?: string }

export function registerSettings (program: Command): void {
  const settings = program.command('settings').description('show and change the network\'s shared settings')

  jsonOption(apiOptions(dataDirOption(settings.command('get')
    .description('show settings with where each value comes from (default, or the event that set it)')
    .argument('[key]', `one setting: ${KEYS_HELP}`))), 'print JSON: {values, origin, problems}, or {key, value, origin} for one key')
    .action(async (key: string | undefined, o: Opts) => { await run(async () => await settingsGet(key, o)) })

  jsonOption(ownerKeyOption(apiOptions(dataDirOption(settings.command('set')
    .description('change a setting for the whole network (through the running daemon, which signs the change)')
    .argument('<key>', `one of: ${KEYS_HELP}`)
    .argument('<value>', 'the new value (numbers, true/false and null are read as such where the setting takes them)')))), 'print the API answer as JSON')
    .action(async (key: string, value: string, o: Opts) => { await run(async () => await settingsSet(key, value, o)) })
}

/** The daemon's settings (by --api, or when it holds the store), else a local fold of the store. */
async function loadSettings (o: Opts): Promise<SettingsResponse> {
  if (o.api !== undefined && o.api !== '') return await (await client(o)).settings()
  const { hasStore, heldByDaemon, openReplica } = await import('./data-dir.js')
  if (!hasStore(o.dataDir)) return await (await client(o)).settings()
  let r
  try {
    r = await openReplica(o.dataDir, { viaDaemon: false })
  } catch (err) {
    if (heldByDaemon(o.dataDir, err)) return await (await client(o)).settings()
    throw err
  }
  try {
    const s = r.replica.states().network.settings
    return JSON.parse(JSON.stringify({ values: s.values, origin: s.origin, problems: s.problems })) as SettingsResponse
  } finally {
    await r.close()
  }
}

export async function settingsGet (key: string | undefined, o: Opts): Promise<number> {
  const { SETTING_KEYS } = await import('../projections/settings.js')
  if (key !== undefined && !SETTING_KEYS.includes(key as never)) {
    throw new CliError(`unknown setting "${key}"; known settings: ${SETTING_KEYS.join(', ')}`)
  }
  const s = await loadSettings(o)
  const keys = key === undefined ? Object.keys(s.values) : [key]
  if (o.json) {
    if (key === undefined) printJson(s)
    else printJson({ key, value: s.values[key] ?? null, origin: s.origin[key] ?? null })
    return EXIT_OK
  }
  out(table(['KEY', 'VALUE', 'ORIGIN'], keys.map((k) => [k, JSON.stringify(s.values[k] ?? null), originText(s, k)])))
  const problems = s.problems.filter((p) => key === undefined || p.key === key)
  if (problems.length > 0) {
    out()
    out('refused changes:')
    out(table(['EVENT', 'KEY', 'REASON'], problems.map((p) => [shortId(p.event), p.key ?? '-', p.reason])))
  }
  return EXIT_OK
}

function originText (s: SettingsResponse, key: string): string {
  const o = s.origin[key]
  if (o === undefined) return 'default'
  return `event ${shortId(o.event)} by ${shortPeer(authorName(fromHex(o.author)))} (lamport ${o.lamport})`
}

export async function settingsSet (key: string, value: string, o: Opts): Promise<number> {
  // Checked here first, so a typo is reported even when no daemon runs; the daemon checks again.
  const { parseSettingValue } = await import('../projections/settings.js')
  parseSettingValue(key, value)
  const api = await client(o).catch((err: unknown) => {
    if (err instanceof CliError && (o.api === undefined || o.api === '')) {
      throw new CliError(`${err.message}; "settings set" goes through the running daemon, which signs the change with the node's key`)
    }
    throw err
  })
  const parsed = parseSettingValue(key, value)
  const current = (await api.settings()).values[key]
  let r: { event: string | null, key: string, value: unknown, unchanged: boolean }
  if (JSON.stringify(current ?? null) === JSON.stringify(parsed)) {
    r = { event: null, key, value: parsed, unchanged: true }
  } else {
    // A settings change needs the owner's or a delegate's authority: cosigned here when needed.
    const { adminAct } = await import('./admin.js')
    const ev = await adminAct({ type: 'settings.change', key, value }, o)
    r = { event: ev.id, key, value: parsed, unchanged: false }
  }
  if (o.json) {
    printJson(r)
    return EXIT_OK
  }
  if (r.unchanged || r.event === null) out(`${key} is already ${JSON.stringify(r.value)}; nothing changed`)
  else out(`${key} = ${JSON.stringify(r.value)} (event ${shortId(r.event)}; it reaches the other nodes with the next gossip)`)
  return EXIT_OK
}
