import { Option, type Command } from 'commander'
import type { ApiCliOptions } from './api-client.js'
import type { ServicesResponse } from '../node/service-api-types.js'
import { EXIT_OK, run } from './errors.js'
import { dataDirOption, intParser, jsonOption } from './options.js'
import { out, printJson, shortId, shortPeer, table } from './output.js'
import { apiOptions } from './status.js'

/**
 * `weft service expose|unexpose|connect|disconnect|ls`: plain TCP services over the mesh, without
 * Kubernetes (as edgevpn's service-add / service-connect). Every verb asks the running daemon,
 * which holds the node's key, serves the exposed targets and runs the local listeners. See
 * docs/services.md.
 */

const client = async (o: ApiCliOptions): Promise<import('./api-client.js').ApiClient> =>
  await (await import('./api-client.js')).ApiClient.fromOptions(o)

type Opts = ApiCliOptions & { json: boolean, namespace?: string, port?: number }

const namespaceOption = (): Option => new Option('-n, --namespace <ns>', 'the service\'s namespace (default: default)')

function common (cmd: Command, json: string): Command {
  return jsonOption(apiOptions(dataDirOption(cmd)), json)
}

export function registerService (program: Command): void {
  const svc = program.command('service').description('expose TCP services to the network and connect to them, through the running node')

  common(svc.command('expose')
    .description('serve <name> from this node: connections other members open to it go to <host:port> (a service.export for this node\'s cluster)')
    .argument('<name>', 'the service name (an RFC 1123 label)')
    .argument('<host:port>', 'where this node connects for each connection: ip:port, [ipv6]:port or hostname:port')
    .addOption(namespaceOption())
    .option('-p, --port <port>', 'the service port in the export (default: the target\'s port)', intParser(1)), 'print the API answer as JSON')
    .action(async (name: string, target: string, o: Opts) => {
      await run(async () => {
        const r = await (await client(o)).serviceExpose({ name, target, ...(o.namespace !== undefined ? { namespace: o.namespace } : {}), ...(o.port !== undefined ? { port: o.port } : {}) })
        if (o.json) printJson(r)
        else {
          out(`${r.service} port ${r.port} → ${r.target}${r.event !== null ? ` (exported: event ${shortId(r.event)})` : ''}`)
          if (r.note !== undefined) out(`note: ${r.note}`)
        }
        return EXIT_OK
      })
    })

  common(svc.command('unexpose')
    .description('stop serving <name> from this node and withdraw its export')
    .argument('<name>', 'the service name')
    .addOption(namespaceOption()), 'print the API answer as JSON')
    .action(async (name: string, o: Opts) => {
      await run(async () => {
        const r = await (await client(o)).serviceUnexpose({ name, ...(o.namespace !== undefined ? { namespace: o.namespace } : {}) })
        if (o.json) printJson(r)
        else out(`${r.service} no longer exposed here${r.event !== null ? ` (unexported: event ${shortId(r.event)})` : ''}`)
        return EXIT_OK
      })
    })

  common(svc.command('connect')
    .description('listen on <listen> on this node; each connection is carried over the mesh to a member that serves <name>')
    .argument('<name>', 'the service name')
    .argument('<listen>', 'local address: port (on 127.0.0.1), ip:port or [ipv6]:port; port 0 picks a free one')
    .addOption(namespaceOption())
    .option('-p, --port <port>', 'the service port (needed when the service has several)', intParser(1)), 'print the API answer as JSON')
    .action(async (name: string, listen: string, o: Opts) => {
      await run(async () => {
        const r = await (await client(o)).serviceConnect({ name, listen, ...(o.namespace !== undefined ? { namespace: o.namespace } : {}), ...(o.port !== undefined ? { port: o.port } : {}) })
        if (o.json) printJson(r)
        else out(`${r.listen} → ${r.service} port ${r.port}${r.created ? '' : ' (already listening)'}`)
        return EXIT_OK
      })
    })

  common(svc.command('disconnect')
    .description('stop a local listener started by "weft service connect": by its address, or every listener of a service name')
    .argument('<listen|name>', 'the listen address (port, ip:port), or the service name')
    .addOption(namespaceOption()), 'print the API answer as JSON')
    .action(async (what: string, o: Opts) => {
      await run(async () => {
        // An address has a colon or is a bare port; a service name is a label (rarely all digits).
        const byAddress = what.includes(':') || /^\d+$/.test(what)
        const api = await client(o)
        const r = byAddress
          ? await api.serviceDisconnect({ listen: what })
          : await api.serviceDisconnect({ name: what, ...(o.namespace !== undefined ? { namespace: o.namespace } : {}) })
        if (o.json) printJson(r)
        else out(`stopped ${r.stopped.join(', ')}`)
        return EXIT_OK
      })
    })

  common(svc.command('ls')
    .description('list the services the log exports, who serves them, and this node\'s exposes and listeners'), 'print {services, exposes, connects, tunnels} as JSON')
    .action(async (o: Opts) => {
      await run(async () => {
        const r = await (await client(o)).serviceLs()
        if (o.json) printJson(r)
        else out(renderServices(r))
        return EXIT_OK
      })
    })
}

function bytes (n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`
}

export function renderServices (r: ServicesResponse): string {
  const parts: string[] = []
  if (r.services.length === 0) {
    parts.push('no services exported')
  } else {
    const rows: string[][] = []
    for (const s of r.services) {
      const ports = s.ports.map((p) => `${p.port}/${p.protocol}`).join(',') || '-'
      s.exporters.forEach((e, i) => {
        rows.push([
          i === 0 ? `${s.namespace}/${s.name}` : '',
          i === 0 ? ports : '',
          e.cluster,
          e.hostname ?? (e.peerId !== undefined ? shortPeer(e.peerId) : shortId(e.author)),
          e.plain ? 'expose' : 'kubernetes',
          e.contributing ? 'ready' : e.ready.toLowerCase()
        ])
      })
      if (s.conflicts.length > 0) rows.push(['', '', '', '', '', `conflicts: ${s.conflicts.join(', ')}`])
    }
    parts.push(table(['SERVICE', 'PORTS', 'CLUSTER', 'NODE', 'BY', 'STATE'], rows))
  }
  if (r.exposes.length > 0) {
    parts.push('', 'exposed here:', table(['SERVICE', 'PORT', 'TARGET', 'EXPORTED', 'ACTIVE', 'CONNS', 'IN', 'OUT'], r.exposes.map((e) => [
      e.service, String(e.port), e.target, e.exported ? 'yes' : 'no', String(e.traffic.active), String(e.traffic.opened), bytes(e.traffic.bytesIn), bytes(e.traffic.bytesOut)
    ])))
  }
  if (r.connects.length > 0) {
    parts.push('', 'listening here:', table(['LISTEN', 'SERVICE', 'PORT', 'ACTIVE', 'CONNS', 'FAILED', 'IN', 'OUT', 'LAST ERROR'], r.connects.map((c) => [
      c.listen, c.service, String(c.port), String(c.traffic.active), String(c.traffic.opened), String(c.traffic.failed + c.traffic.refused),
      bytes(c.traffic.bytesIn), bytes(c.traffic.bytesOut), c.traffic.lastError ?? ''
    ])))
  }
  return parts.join('\n')
}
