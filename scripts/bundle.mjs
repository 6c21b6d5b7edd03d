/**
 * The second half of `npm run build`: bundles what tsc wrote to dist/ into the `weft` executable,
 * dist/cli/main.js, with esbuild (docs/operations.md, "One bundle").
 *
 * Why: a node loaded ~900 modules one by one (resolution, a file opened and compiled per module),
 * about 0.9 s of a 2.1 s start with 100,000 events. The bundle is a few dozen files, loaded in
 * ~0.4 s. Lazily loaded parts stay lazy: each dynamic import becomes a chunk of its own.
 *
 * - Outputs go to dist/cli/ beside tsc's files, so the paths the code resolves from its own URL
 *   (../../package.json, ../../web/dashboard/, ../projections/ for the fold's code id, the packet
 *   thread's ./packet-thread-worker.js, the demo's ./main.js) point where they did.
 * - tsc's own entry is kept as dist/cli/main-modules.js: the same program, module by module (for
 *   tools that patch a library's classes, as bench/_protocol-bytes.mjs does, and to rule the
 *   bundle out when debugging).
 * - Left outside (loaded by Node.js as before): native addons (koffi, classic-level), packages
 *   that find their own files at run time (Automerge's wasm, pino's transport threads), and the
 *   CommonJS packages the code imports dynamically by name, whose named exports only Node.js'
 *   loader provides (a split chunk exports only `default`).
 * - The first lines of src/cli/main.ts are both shell and JavaScript (the daemon's V8 flags);
 *   esbuild keeps only the `#!` line, so they are put back as they were.
 * - dist/cli/bundle-meta.json is esbuild's account of what went where (its metafile).
 * - Identifiers keep their names and source maps point at src/ (`node --enable-source-maps`), so
 *   stack traces stay readable.
 */
import { build } from 'esbuild'
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const dist = fileURLToPath(new URL('../dist/cli/', import.meta.url))
const main = `${dist}main.js`
const modules = `${dist}main-modules.js`

const tscMain = readFileSync(main, 'utf8')
// The header: every line up to the first import (the sh line and the comment that explains it).
const header = tscMain.slice(0, tscMain.search(/^import /m))
if (!header.startsWith('#!/bin/sh\n')) throw new Error('dist/cli/main.js does not start with the sh line of src/cli/main.ts; run tsc first (npm run build)')
writeFileSync(modules, tscMain.replace(/main\.js\.map\s*$/, 'main-modules.js.map'))
copyFileSync(`${main}.map`, `${modules}.map`)

const result = await build({
  entryPoints: { main: modules, 'packet-thread-worker': fileURLToPath(new URL('../dist/net/packet-thread-worker.js', import.meta.url)) },
  outdir: dist,
  allowOverwrite: true,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['koffi', 'classic-level', '@automerge/automerge', '@kubernetes/client-node', 'pino', 'yaml', 'prom-client'],
  minifyWhitespace: true,
  minifySyntax: true,
  keepNames: true,
  sourcemap: 'linked',
  // Licence notices that packages put in their code go beside the outputs (*.LEGAL.txt).
  legalComments: 'external',
  // CommonJS packages inside the bundle call require(): give each ESM output file one.
  banner: { js: "import{createRequire as __weftRequire}from'node:module';const require=__weftRequire(import.meta.url);" },
  logLevel: 'warning',
  metafile: true
})
if (result.errors.length > 0) process.exit(1)
// What each output imports, as esbuild resolved it (test/cli/bundle.test.ts reads it).
writeFileSync(`${dist}bundle-meta.json`, JSON.stringify(result.metafile))

const bundled = readFileSync(main, 'utf8')
writeFileSync(main, header + bundled.replace(/^#![^\n]*\n/, ''))
chmodSync(main, 0o755)
// The header's lines replace one: move the source map's lines down by the difference.
const map = JSON.parse(readFileSync(`${main}.map`, 'utf8'))
map.mappings = ';'.repeat(header.split('\n').length - 2) + map.mappings
writeFileSync(`${main}.map`, JSON.stringify(map))
