import { readFileSync } from 'node:fs'

let cached: string | undefined

/** The package version, which nodes put in their join events. */
export function weftVersion (): string {
  if (cached !== undefined) return cached
  try {
    cached = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
  } catch {
    cached = 'unknown'
  }
  return cached
}
