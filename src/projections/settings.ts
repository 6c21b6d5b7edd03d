import * as A from '@automerge/automerge'
import { z } from 'zod'
import type { SignedEvent } from '../log/event.js'
import { formatZodIssues } from '../log/event.js'
import { WeftError } from '../log/errors.js'
import { parseCidr } from './ip.js'

/**
 * Network settings: one Automerge document, edited by any member. The change bytes travel
 * inside signed `settings.change` events and are applied in the log's order; Automerge's own
 * sync protocol is never used (it does not authenticate authors).
 */
const cidrOf = (family: 4 | 6) => z.string().refine((v) => {
  try { return parseCidr(v).family === family } catch { return false }
}, `must be an IPv${family} CIDR such as ${family === 4 ? '10.1.0.0/16' : 'fd00:1::/64'}`)

const zoneName = z.string().max(200).regex(/^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/,
  'must be a DNS name of RFC 1123 labels, e.g. weft.internal')

export const settingSchemas = {
  overlayCidr: cidrOf(4).refine((v) => parseCidr(v).prefix <= 30, 'the overlay needs at least a /30'),
  overlayCidr6: cidrOf(6).nullable(),
  zone: zoneName,
  minNodes: z.int().min(1).max(1000),
  serverCount: z.int().min(1).max(15),
  dynamicRoles: z.boolean(),
  mtu: z.int().min(576).max(9000)
} as const

export type SettingKey = keyof typeof settingSchemas
export type Settings = { [K in SettingKey]: z.infer<(typeof settingSchemas)[K]> }

export const DEFAULT_SETTINGS: Settings = {
  overlayCidr: '10.1.0.0/16',
  overlayCidr6: null,
  zone: 'weft.internal',
  minNodes: 1,
  serverCount: 1,
  dynamicRoles: false,
  mtu: 1420
}

export const SETTING_KEYS = Object.keys(DEFAULT_SETTINGS) as SettingKey[]

export interface SettingOrigin { author: string, event: string, lamport: number }

export interface SettingsState {
  doc: A.Doc<Record<string, unknown>>
  /** Effective values: the document's valid values over the defaults. */
  values: Settings
  /** Which event last set each key (absent = default). */
  origin: Partial<Record<SettingKey, SettingOrigin>>
  /** Changes or values that were refused, with why. */
  problems: Array<{ event: string, key?: string, reason: string }>
}

export function initialSettings (): SettingsState {
  return { doc: A.init(), values: { ...DEFAULT_SETTINGS }, origin: {}, problems: [] }
}

export function cloneSettings (s: SettingsState): SettingsState {
  return { doc: A.clone(s.doc), values: { ...s.values }, origin: { ...s.origin }, problems: [...s.problems] }
}

const MAX_PROBLEMS = 100

export function applySettings (s: SettingsState, e: SignedEvent): void {
  if (e.fields.type !== 'settings.change') return
  const change = e.fields.body.change
  const problem = (reason: string, key?: string): void => {
    s.problems.push({ event: e.idHex, key, reason })
    if (s.problems.length > MAX_PROBLEMS) s.problems.shift()
  }
  let actor: string
  try {
    actor = A.decodeChange(change).actor
  } catch (err) {
    problem(`not an Automerge change: ${(err as Error).message}`)
    return
  }
  // An author may only speak as itself: Automerge's actor must be the event's author.
  if (actor !== e.authorHex) {
    problem('the Automerge actor of the change is not the event author')
    return
  }
  const before = A.toJS(s.doc)
  try {
    s.doc = A.applyChanges(s.doc, [change])[0]
  } catch (err) {
    problem(`the change does not apply: ${(err as Error).message}`)
    return
  }
  const after = A.toJS(s.doc)
  for (const key of Object.keys(after)) {
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

/** Parse a value typed on the command line for a key: numbers, booleans and null as JSON. */
export function parseSettingValue (key: string, text: string): unknown {
  if (!Object.hasOwn(settingSchemas, key)) {
    throw new WeftError('ERR_BAD_INPUT', `unknown setting "${key}"; known settings: ${SETTING_KEYS.join(', ')}`)
  }
  const k = key as SettingKey
  let raw: unknown = text
  if (/^(true|false|null|-?\d+)$/.test(text)) raw = JSON.parse(text)
  const r = settingSchemas[k].safeParse(raw)
  if (!r.success) throw new WeftError('ERR_BAD_INPUT', `invalid value for ${k}: ${formatZodIssues(r.error)}`)
  return r.data
}

/**
 * The Automerge change that sets `key` on top of the current document, made with the author's
 * own actor id so the projection accepts it.
 */
export function makeSettingsChange (s: SettingsState, authorHex: string, key: string, value: unknown): Uint8Array {
  const checked = parseSettingValue(key, typeof value === 'string' ? value : JSON.stringify(value))
  const doc = A.change(A.clone(s.doc, { actor: authorHex }), (d) => { d[key] = checked as never })
  const change = A.getLastLocalChange(doc)
  if (change === undefined) throw new WeftError('ERR_BAD_INPUT', `setting ${key} already has that value`)
  return change
}
