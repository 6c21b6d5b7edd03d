/**
 * Bench entry: `npm run bench -- <name> [<name>…]` runs `bench/<name>.ts`, whose
 * `run(): Promise<void>` prints one JSON object per line on stdout:
 *   {"bench":"<name>","metric":"…","value":…,"unit":"…","target":"…"|null}
 * Progress goes to stderr, so stdout stays machine-readable. Without a name, lists the benches.
 * Files starting with "_" are helpers, not benches.
 */
import { readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))

function available (): string[] {
  return readdirSync(here)
    .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.startsWith('_') && !f.endsWith('.d.ts'))
    .map((f) => f.slice(0, -3))
    .sort()
}

async function main (names: string[]): Promise<number> {
  const benches = available()
  if (names.length === 0) {
    process.stdout.write(`usage: npm run bench -- <name> [<name>…]\navailable benches: ${benches.join(', ') || '(none)'}\n`)
    return 0
  }
  const unknown = names.filter((n) => !benches.includes(n))
  if (unknown.length > 0) {
    process.stderr.write(`unknown bench ${unknown.map((n) => `"${n}"`).join(', ')}; available: ${benches.join(', ')}\n`)
    return 2
  }
  for (const name of names) {
    const mod = await import(pathToFileURL(join(here, `${name}.ts`)).href) as { run?: () => Promise<void> }
    if (typeof mod.run !== 'function') {
      process.stderr.write(`bench/${name}.ts does not export "async function run(): Promise<void>"\n`)
      return 2
    }
    await mod.run()
  }
  return 0
}

process.exitCode = await main(process.argv.slice(2))
