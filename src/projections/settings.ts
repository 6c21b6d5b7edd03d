import type * as AM from '@automerge/automerge'
import { automerge } from './automerge.js'
import { z } from 'zod'
import type { SignedEvent } from '../log/event.js'
import { formatZodIssues } from '../log/event.js'
import { WeftError } from '../log/errors.js'
import { parseCidr } from './ip.js'
import { DEFAULT_SETTINGS } from './settings-defaults.js'

/**
 * Network settings: one Automerge document, edited by any member. The change bytes travel
 * inside signed `settings.change` events and are applied in the log's order; Automerge's own
 * sync protocol is never used (it does not authenticate authors).
 */

/**
 * One refinement that parses once: a chain of refinements would run the prefix check on text
 * that is not a CIDR, and parseCidr throws, which would escape safeParse and stop the fold.
 */
const cidrOf = (family: 4 | 6, maxPrefix: number) => z.string().superRefine((v, ctx) => {
  let c: ReturnType<typeof parseCidr>
  try {
    c = parseCidr(v)
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message })
    return
  }
  if (c.family !== family) {
    ctx.addIssue({ code: 'custom', message: `must be an IPv${family} CIDR such as ${family === 4 ? '10.1.0.0/16' : 'fd00:1::/64'}` })
  } else if (c.prefix > maxPrefix) {
    ctx.addIssue({ code: 'custom', message: `the overlay needs at least a /${maxPrefix}` })
  }
})

const zoneName = z.string().max(200).regex(/^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/,
  'must be a DNS name of RFC 1123 labels, e.g. weft.internal')

export const settingSchemas = {
  // A /30 has two host addresses; an IPv6 /126 has three (no broadcast, but not the network
  // address either). Anything smaller leaves candidateAddress nothing to pick.
  overlayCidr: cidrOf(4, 30),
  overlayCidr6: cidrOf(6, 126).nullable(),
  zone: zoneName,
  minNodes: z.int().min(1).max(1000),
  serverCount: z.int().min(1).max(15),
  dynamicRoles: z.boolean(),
  mtu: z.int().min(576).max(9000)
} as const

export type SettingKey = keyof typeof settingSchemas
export type Settings = { [K in SettingKey]: z.infer<(typeof settingSchemas)[K]> }

// In their own module so the CLI can show them without loading Automerge.
export { DEFAULT_SETTINGS }

export const SETTING_KEYS = Object.keys(DEFAULT_SETTINGS) as SettingKey[]

export interface SettingOrigin { author: string, event: string, lamport: number }

export interface SettingsState {
  /** The Automerge document; null until the first change (no Automerge loaded for defaults). */
  doc: AM.Doc<Record<string, unknown>> | null
  /** Effective values: the document's valid values over the defaults. */
  values: Settings
  /** Which event last set each key (absent = default). */
  origin: Partial<Record<SettingKey, SettingOrigin>>
  /** Changes or values that were refused, with why. */
  problems: Array<{ event: string, key?: string, reason: string }>
}

export function initialSettings (): SettingsState {
  return { doc: null, values: { ...DEFAULT_SETTINGS }, origin: {}, problems: [] }
}

export function cloneSettings (s: SettingsState): SettingsState {
  return { doc: s.doc === null ? null : automerge().clone(s.doc), values: { ...s.values }, origin: { ...s.origin }, problems: [...s.problems] }
}

const MAX_PROBLEMS = 100

export function applySettings (s: SettingsState, e: SignedEvent): void {
  if (e.fields.type !== 'settings.change') return
  const change = e.fields.body.change
  const problem = (reason: string, key?: string): void => {
    s.problems.push({ event: e.idHex, key, reason })
    if (s.problems.length > MAX_PROBLEMS) s.problems.shift()
  }
  const A = automerge()
  let actor: string
  let deps: string[]
  try {
    const decoded = A.decodeChange(change)
    actor = decoded.actor
    deps = decoded.deps
  } catch (err) {
    problem(`not an Automerge change: ${(err as Error).message}`)
    return
  }
  // An author may only speak as itself: Automerge's actor must be the event's author.
  if (actor !== e.authorHex) {
    problem('the Automerge actor of the change is not the event author')
    return
  }
  const doc = s.doc ?? A.init<Record<string, unknown>>()
  const before = A.toJS(doc)
  try {
    s.doc = A.applyChanges(doc, [change])[0]
  } catch (err) {
    problem(`the change does not apply: ${(err as Error).message}`)
    return
  }
  // Automerge queues a change whose dependencies it lacks instead of refusing it: say so, or the
  // edit would vanish without a trace. It applies (in a later event) if they ever arrive.
  const missing = deps.length === 0 ? [] : A.getMissingDeps(s.doc, deps)
  if (missing.length > 0) {
    problem(`the change waits for Automerge changes that are not in the log (${missing.map((h) => h.slice(0, 12)).join(', ')}); not applied`)
  }
  const after = A.toJS(s.doc)
  // Sorted: the document's own key order is Automerge's (a loaded document lists its keys in
  // another order than one built change by change), and origin and problems must not depend on it.
  for (const key of Object.keys(after).sort()) {
    if (!Object.hasOwn(settingSchemas, key)) {
      if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) problem(`unknown setting "${key}" is ignored`, key)
      continue
    }
    const k = key as SettingKey
    if (JSON.stringify(before[key]) === JSON.stringify(after[key])) continue
    const r = settingSchemas[k].safeParse(after[key])
    if (r.success) {
      (s.values as Record<string, unknown>)[k] = r.data
      s.origin[k] = { author: e.authorHex, event: e.idHex, lamport: e.fields.lamport }
    } else {
      problem(`invalid value for ${k}: ${formatZodIssues(r.error)}; keeping ${JSON.stringify(s.values[k])}`, k)
    }
  }
  for (const key of Object.keys(before)) {
    if (!(key in after) && Object.hasOwn(settingSchemas, key)) {
      const k = key as SettingKey
      ;(s.values as Record<string, unknown>)[k] = DEFAULT_SETTINGS[k]
      s.origin[k] = { author: e.authorHex, event: e.idHex, lamport: e.fields.lamport }
    }
  }
}

function checkSettingValue (k: SettingKey, raw: unknown): unknown {
  const r = settingSchemas[k].safeParse(raw)
  if (!r.success) throw new WeftError('ERR_BAD_INPUT', `invalid value for ${k}: ${formatZodIssues(r.error)}`)
  return r.data
}

function settingKey (key: string): SettingKey {
  if (!Object.hasOwn(settingSchemas, key)) {
    throw new WeftError('ERR_BAD_INPUT', `unknown setting "${key}"; known settings: ${SETTING_KEYS.join(', ')}`)
  }
  return key as SettingKey
}

/**
 * Parse a value typed on the command line for a key: numbers, booleans and null as JSON, the
 * rest as text (and text that only looks like a number, such as the zone "123", stays text
 * where the setting is text).
 */
export function parseSettingValue (key: string, text: string): unknown {
  const k = settingKey(key)
  if (/^(true|false|null|-?\d+)$/.test(text)) {
    const parsed: unknown = JSON.parse(text)
    if (settingSchemas[k].safeParse(parsed).success || !settingSchemas[k].safeParse(text).success) return checkSettingValue(k, parsed)
  }
  return checkSettingValue(k, text)
}

/**
 * The Automerge change that sets `key` on top of the current document, made with the author's
 * own actor id so the projection accepts it. A string value is parsed as command-line text; any
 * other value is checked as it is.
 */
export function makeSettingsChange (s: SettingsState, authorHex: string, key: string, value: unknown): Uint8Array {
  const checked = typeof value === 'string' ? parseSettingValue(key, value) : checkSettingValue(settingKey(key), value)
  const A = automerge()
  const current = s.doc === null ? undefined : (A.toJS(s.doc) as Record<string, unknown>)[key]
  if (current !== undefined && JSON.stringify(current) === JSON.stringify(checked)) {
    throw new WeftError('ERR_BAD_INPUT', `setting ${key} already has that value`)
  }
  const base = s.doc === null ? A.init<Record<string, unknown>>({ actor: authorHex }) : A.clone(s.doc, { actor: authorHex })
  const doc = A.change(base, (d) => { d[key] = checked as never })
  const change = A.getLastLocalChange(doc)
  if (change === undefined) throw new WeftError('ERR_BAD_INPUT', `setting ${key} already has that value`)
  return change
}
