import { spawn } from 'node:child_process'
import type { Command } from 'commander'
import type { ApiCliOptions } from './api-client.js'
import { CliError, EXIT_OK, run } from './errors.js'
import { dataDirOption, jsonOption } from './options.js'
import { out, printJson } from './output.js'
import { apiOptions } from './status.js'

/**
 * `weft dashboard [--open]`: asks the running daemon for a one-time login code (with the API
 * token, which never leaves this machine's files) and prints the URL that trades it for a
 * browser session; `--open` hands the URL to the desktop's browser. See docs/dashboard.md.
 */

/** Loaded when the command runs: every CLI start pays for what main.ts imports (issue 16). */
async function loginSchema (): Promise<import('zod').ZodType<{ path: string, expiresAt: number }>> {
  const { z } = await import('zod')
  return z.object({ path: z.string().startsWith('/dashboard/login?code='), expiresAt: z.number() })
}

type Opts = ApiCliOptions & { json: boolean, open: boolean }

/** The browser's URL for an API URL: a wildcard listen address is reached on loopback. */
export function dashboardUrl (apiUrl: string, path: string): string {
  if (apiUrl.startsWith('unix:')) {
    throw new CliError(`the daemon's API is a unix socket (${apiUrl}), which a browser cannot open: run the daemon with --api 127.0.0.1:<port> to use the dashboard`)
  }
  const u = new URL(apiUrl)
  if (u.hostname === '0.0.0.0') u.hostname = '127.0.0.1'
  if (u.hostname === '[::]') u.hostname = '[::1]'
  return `${u.origin}${path}`
}

/** The desktop's "open this URL" command; resolves false when there is none. */
async function openBrowser (url: string): Promise<boolean> {
  const [cmd, args] = process.platform === 'darwin' ? ['open', [url]] : process.platform === 'win32' ? ['cmd', ['/c', 'start', '', url]] : ['xdg-open', [url]]
  return await new Promise((resolve) => {
    const child = spawn(cmd as string, args as string[], { stdio: 'ignore', detached: true })
    child.once('error', () => { resolve(false) })
    child.once('spawn', () => { child.unref(); resolve(true) })
  })
}

export function registerDashboard (program: Command): void {
  jsonOption(apiOptions(dataDirOption(program.command('dashboard')
    .description('print a one-time login URL for the web dashboard of the running node (valid 60 s, once)')
    .option('--open', 'open the URL in the desktop\'s browser too', false))), 'print {url, expiresAt} as JSON')
    .action(async (o: Opts) => {
      await run(async () => {
        const { ApiClient } = await import('./api-client.js')
        const client = await ApiClient.fromOptions(o)
        const base = dashboardUrl(client.url, '/')
        const r = await client.callRaw('POST', '/dashboard/login', {})
        if (r.status === 404) throw new CliError(`the daemon at ${client.url} has no dashboard (is it an older weft?)`)
        if (r.status === 401) throw new CliError(`the API at ${client.url} refused the token; use the api.token of the daemon's data dir, --api-token-file or WEFT_API_TOKEN`)
        const login = (await loginSchema()).safeParse(r.json)
        if (r.status !== 200 || !login.success) throw new CliError(`the API at ${client.url} did not give a login code (HTTP ${r.status})`)
        const url = dashboardUrl(client.url, login.data.path)
        if (o.json) printJson({ url, expiresAt: new Date(login.data.expiresAt).toISOString() })
        else {
          out(url)
          out(`(one-time login, valid until ${new Date(login.data.expiresAt).toISOString()}; afterwards the dashboard is at ${base}dashboard/)`)
        }
        if (o.open && !(await openBrowser(url))) out('could not start a browser (no xdg-open/open): open the URL above yourself')
        return EXIT_OK
      })
    })
}
