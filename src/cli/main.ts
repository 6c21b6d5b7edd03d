#!/bin/sh
//bin/true; case "$1" in up|bridge) m=$(awk '/^MemTotal:/ { m = int($2 / 4096); if (m > 1024) m = 1024; if (m < 256) m = 256; print m }' /proc/meminfo 2>/dev/null); exec /usr/bin/env node --max-semi-space-size=4 --max-old-space-size="${m:-1024}" "$0" "$@";; esac; exec /usr/bin/env node "$0" "$@"
// The two lines above are both shell and JavaScript (for Node.js the second is a comment): run
// as `weft`, sh starts Node.js, and the long-running daemons (`up`, `bridge`) with V8's heap
// sized for an edge node, not for the machine (docs/operations.md, "Memory of an idle node"):
// - a young generation of at most 4 MB per semi-space instead of 16 MB. The start (module
//   loading, the first syncs) grows it to its maximum and V8 keeps it: ~25–30 MB of RSS for
//   nothing;
// - an old generation of at most a quarter of the machine's memory, and never more than 1 GB
//   (nor less than 256 MB). V8 derives its limit from the machine's memory the same way, but up
//   to 4 GB, and from that limit how far the heap may grow between full collections (up to 4×
//   the live heap). A node's live heap is 35–100 MB, so on a large machine it carried 2–3× that
//   in garbage; capped at 1 GB, as on a 4 GB edge machine, it does not, for the same CPU. On a
//   smaller machine the limit is what V8 would choose anyway.
// Run as `node dist/cli/main.js`, none of it applies.
import { readFileSync } from 'node:fs'
import { Command, CommanderError } from 'commander'
import { EXIT_OK, EXIT_USAGE, oneLine, run } from './errors.js'
import { flush } from './output.js'
import { intParser, jsonOption } from './options.js'
import { registerToken } from './token.js'
import { registerAdmin } from './admin.js'
import { registerLog } from './log.js'
import { registerUp } from './up.js'
import { registerStatus } from './status.js'
import { registerSettings } from './settings.js'
import { registerGetKubeconfig } from './get-kubeconfig-command.js'
import { registerDns } from './dns.js'
import { registerService } from './service.js'
import { registerKubeProxy } from './kube-proxy.js'
import { registerKube } from './kube.js'
import { registerNode } from './node.js'
import { registerPing } from './ping.js'
import { registerCompletion } from './completion.js'
import { registerDashboard } from './dashboard.js'
import { registerSidecar } from './sidecar.js'

/**
 * `weft <noun> <verb>`. One file per noun registers its verbs; output and exit-code rules live
 * in ./output.ts and ./errors.ts (0 ok, 1 a check failed, 2 usage or input error).
 */
function version (): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
  } catch {
    return 'unknown'
  }
}

export function buildProgram (): Command {
  const program = new Command('weft')
    .description('Weft: a private network of machines and Kubernetes clusters, with no hub')
    .version(version(), '-V, --version')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      // Commander's own errors ("error: unknown option '--x'") become "weft: unknown option '--x'".
      outputError: (str, write) => { write(`weft: ${oneLine(str.replace(/^error: /, ''))}\n`) }
    })

  registerToken(program)
  registerLog(program)
  registerUp(program)
  registerStatus(program)
  registerSettings(program)
  registerAdmin(program)
  registerGetKubeconfig(program)
  registerDns(program)
  registerService(program)
  registerKubeProxy(program)
  registerKube(program)
  registerNode(program)
  registerPing(program)
  registerCompletion(program)
  registerDashboard(program)
  registerSidecar(program)

  jsonOption(program.command('demo').description('start real "weft up" processes on loopback with a new token, print the state they agree on, run until Ctrl-C')
    .option('--nodes <n>', 'number of nodes (2-9)', intParser(2), 3)
    .option('--exit-when-converged', 'stop the nodes and exit 0 once they agree (for scripts)', false)
    .option('--timeout <ms>', 'give up when the nodes have not agreed after this long', intParser(1000), 60_000), 'print {token, convergedMs, view} as JSON')
    .action(async (opts: { nodes: number, json: boolean, exitWhenConverged: boolean, timeout: number }) => {
      await run(async () => await (await import('./demo.js')).runDemo(opts))
    })

  return program
}

async function main (argv: string[]): Promise<void> {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    // `weft log cat | head`: the reader went away; that is not an error.
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? EXIT_OK)
    throw err
  })
  try {
    await buildProgram().parseAsync(argv)
  } catch (err) {
    flush()
    if (err instanceof CommanderError) {
      // Help and version exit 0; every parse error (already printed) exits 2.
      process.exitCode = err.exitCode === 0 ? EXIT_OK : EXIT_USAGE
      return
    }
    await run(() => { throw err })
  }
}

await main(process.argv)
