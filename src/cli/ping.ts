import type { Command } from 'commander'
import type { PingResponse } from '../adapters/api-types.js'
import type { ApiCliOptions } from './api-client.js'
import { EXIT_CHECK_FAILED, EXIT_OK, run } from './errors.js'
import { dataDirOption, intParser, jsonOption } from './options.js'
import { out, printJson } from './output.js'
import { apiOptions, rtt } from './status.js'

/**
 * `weft ping <node>`: libp2p pings from the running daemon to a member, over the mesh connection
 * the overlay's packets take too; says which path (direct or relayed) and each round-trip time.
 */
export function registerPing (program: Command): void {
  jsonOption(apiOptions(dataDirOption(program.command('ping')
    .description('ping a member over the mesh (the connection its VPN packets take): path, direct or relayed, round-trip times')
    .argument('<node>', 'host name, DNS name, overlay address, peer id or author hex')
    .option('-c, --count <n>', 'pings to send (1-10)', intParser(1), 3))), 'print the API\'s answer as JSON')
    .action(async (node: string, o: ApiCliOptions & { json: boolean, count: number }) => {
      await run(async () => {
        const { ApiClient } = await import('./api-client.js')
        const r = await (await ApiClient.fromOptions(o)).ping({ node, count: Math.min(o.count, 10) })
        if (o.json) printJson(r)
        else out(renderPing(r))
        return r.rttMs.length > 0 ? EXIT_OK : EXIT_CHECK_FAILED
      })
    })
}

export function renderPing (r: PingResponse): string {
  const who = `${r.hostname ?? r.peerId}${r.address !== undefined ? ` (${r.address})` : ''}`
  const path = r.path === undefined ? 'no connection' : `${r.path.direct ? 'direct' : 'relayed'} via ${r.path.addr.replace(/\/p2p\/[^/]+$/, '')}`
  const lines = [`PING ${who} ${r.peerId}: ${path}`]
  for (const [i, ms] of r.rttMs.entries()) lines.push(`reply ${i + 1}: rtt ${rtt(ms)}`)
  const sent = r.rttMs.length + r.lost
  const summary = `${sent} sent, ${r.rttMs.length} answered`
  if (r.rttMs.length === 0) return [...lines, `${summary}: no answer${r.error !== undefined ? ` (${r.error})` : ''}`].join('\n')
  const min = Math.min(...r.rttMs)
  const max = Math.max(...r.rttMs)
  const avg = r.rttMs.reduce((a, b) => a + b, 0) / r.rttMs.length
  return [...lines, `${summary}; rtt min/avg/max ${rtt(min)} / ${rtt(avg)} / ${rtt(max)}`].join('\n')
}
