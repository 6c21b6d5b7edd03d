/**
 * DNS name rules for the names Weft serves. Pure string checks: no resolver, no I/O.
 *
 * - A label is an RFC 1123 label: 1-63 characters of `[a-z0-9-]`, not starting or ending
 *   with `-`. Names are served lowercased, so upper case is folded before checking.
 * - A name is at most 253 characters in text form without the trailing dot (255 octets on
 *   the wire, RFC 1035 section 2.3.4).
 * - SRV owner names start with two underscore labels, `_<port>._<proto>` (RFC 2782); those
 *   are checked as `_` followed by an RFC 1123 label.
 */

export const MAX_LABEL_LENGTH = 63
export const MAX_NAME_LENGTH = 253

const LABEL = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/

/** Lowercase and drop one trailing dot: the form used as a key in the DNS table. */
export function normalizeName (name: string): string {
  const lower = name.toLowerCase()
  return lower.endsWith('.') ? lower.slice(0, -1) : lower
}

/** Why `label` is not an RFC 1123 label, or undefined when it is one. */
export function labelProblem (label: string): string | undefined {
  if (label.length === 0) return 'empty label'
  if (label.length > MAX_LABEL_LENGTH) return `label "${label}" is ${label.length} characters (at most ${MAX_LABEL_LENGTH})`
  if (!LABEL.test(label)) {
    return label.startsWith('-') || label.endsWith('-')
      ? `label "${label}" starts or ends with "-"`
      : `label "${label}" has characters outside [a-z0-9-]`
  }
  return undefined
}

export function isValidLabel (label: string): boolean {
  return labelProblem(label) === undefined
}

export interface NameOptions {
  /** How many leading `_label`s are allowed (2 for SRV owner names). */
  underscoreLabels?: number
}

/**
 * Why `name` (already normalized: lowercase, no trailing dot) is not a name Weft may serve,
 * or undefined when it is valid.
 */
export function nameProblem (name: string, opts: NameOptions = {}): string | undefined {
  if (name.length === 0) return 'empty name'
  if (name.length > MAX_NAME_LENGTH) return `name is ${name.length} characters (at most ${MAX_NAME_LENGTH})`
  const labels = name.split('.')
  const underscores = opts.underscoreLabels ?? 0
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i] as string
    if (i < underscores) {
      if (!label.startsWith('_')) return `label "${label}" must start with "_"`
      const p = labelProblem(label.slice(1))
      if (p !== undefined) return p
      continue
    }
    const p = labelProblem(label)
    if (p !== undefined) return p
  }
  return undefined
}

export function isValidName (name: string, opts: NameOptions = {}): boolean {
  return nameProblem(name, opts) === undefined
}

/** True when `name` equals `zone` or lies below it (both normalized). */
export function isInZone (name: string, zone: string): boolean {
  return name === zone || name.endsWith('.' + zone)
}
