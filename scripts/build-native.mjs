/**
 * Builds the VPN's native packet loop (native/*.c → native/build/packet-loop.so) with
 * the machine's C compiler, when there is one (docs/vpn.md "The native packet loop"). Run by
 * `npm install` (the install script) and `npm run build`.
 *
 * It never fails the install: without a compiler (or off Linux) it says so and the packet thread
 * runs its JavaScript loop, which carries the same bytes, only slower per wake-up. The library
 * links nothing but libc: OpenSSL is the one inside Node.js, found at run time.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const dir = fileURLToPath(new URL('../native/', import.meta.url))
const source = `${dir}packet-loop.c`
const outDir = `${dir}build/`
const out = `${outDir}packet-loop.so`

function say (msg) { console.log(`weft: native packet loop: ${msg}`) }

if (process.platform !== 'linux') {
  say(`not built (it is for Linux; this is ${process.platform}): the VPN uses its JavaScript loop`)
} else if (!existsSync(source)) {
  say('not built (native/packet-loop.c is missing from this copy)')
} else if (existsSync(out) && readdirSync(dir).filter((f) => /\.[ch]$/.test(f)).every((f) => statSync(out).mtimeMs >= statSync(`${dir}${f}`).mtimeMs)) {
  // Up to date: nothing to say on every build.
} else {
  const cc = process.env.CC ?? 'cc'
  mkdirSync(outDir, { recursive: true })
  const tmp = `${out}.${process.pid}.tmp`
  const sources = readdirSync(dir).filter((f) => f.endsWith('.c')).map((f) => `${dir}${f}`)
  const r = spawnSync(cc, ['-O2', '-fPIC', '-shared', '-Wall', '-Wextra', '-o', tmp, ...sources, '-ldl'], { encoding: 'utf8' })
  if (r.error !== undefined || r.status !== 0) {
    const why = r.error !== undefined ? `${cc} could not run (${r.error.code ?? r.error.message})` : `${cc} failed:\n${r.stderr}`
    say(`not built: ${why}\nThe VPN uses its JavaScript loop (slower per packet). To build it: install a C compiler (Debian: apt-get install gcc libc6-dev) and run npm rebuild weft, or npm run build in a checkout.`)
  } else {
    if (r.stderr.trim() !== '') process.stderr.write(r.stderr)
    renameSync(tmp, out)
    say(`built ${out}`)
  }
}
