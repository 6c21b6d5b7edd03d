import { request } from 'node:http'
import type { Command } from 'commander'
import { API_PREFIX, DEFAULT_KUBE_PROXY_LISTEN, KUBE_PROXY_ROUTE, parseApiUrl } from '../adapters/api-types.js'
import { readApiEndpoint, readApiToken, readTokenFile } from '../adapters/api-token.js'
import type { KubeProxiesResponse, KubeProxyResponse } from '../node/kube-share.js'
import { CliError, EXIT_OK, run } from './errors.js'
import { dataDirOption, jsonOption } from './options.js'
import { out, printJson, table } from './output.js'
import { apiOptions } from './status.js'

/**
 * `weft kube-proxy --cluster east --listen 127.0.0.1:8001`: the running daemon of the data dir
 * listens there and carries every connection over the mesh to a member of cluster `east` that
 * shares its Kubernetes API (`weft up --share-kube-api --allow …`). TLS runs end to end: point
 * kubectl's kubeconfig at https://<listen>, keep its credentials. See docs/kube-remote.md.
 */

interface Opts { dataDir: string, api?: string, apiTokenFile?: string, cluster?: string, listen: string, stop: boolean, list: boolean, json: boolean }

/** One JSON call to the daemon's API (http:// or unix:); its error body becomes a CliError. */
export async function daemonCall (o: Pick<Opts, 'dataDir' | 'api' | 'apiTokenFile'>, method: string, path: string, body?: unknown): Promise<unknown> {
  let url = o.api
  if (url === undefined || url === '') {
    const ep = await readApiEndpoint(o.dataDir)
    if (ep === undefined) throw new CliError(`no running daemon found for ${o.dataDir}: "weft kube-proxy" runs its listener in the daemon; start one with "weft up" (or give --api <url>)`)
    url = ep.url
  }
  const target = parseApiUrl(url)
  if (target === undefined) throw new CliError(`"${url}" is not an API URL`)
  const token = o.apiTokenFile !== undefined ? await readTokenFile(o.apiTokenFile) : (process.env.WEFT_API_TOKEN ?? await readApiToken(o.dataDir))
  const payload = body === undefined ? undefined : JSON.stringify(body)
  const headers: Record<string, string> = { Authorization: `Bearer ${token}`, Accept: 'application/json', ...(payload !== undefined ? { 'Content-Type': 'application/json' } : {}) }
  const full = `${API_PREFIX}${path}`
  const { status, text } = await new Promise<{ status: number, text: string }>((resolve, reject) => {
    const base = target.kind === 'http' ? new URL(target.base) : undefined
    const req = request({
      method,
      path: full,
      headers,
      timeout: 30_000,
      ...(target.kind === 'unix' ? { socketPath: target.path } : { host: base?.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(base?.port === '' ? 80 : base?.port) })
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }) })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(new Error('no answer within 30 s')) })
    req.on('error', (err) => { reject(new CliError(`cannot reach the daemon at ${url ?? ''}: ${err.message}`)) })
    req.end(payload)
  })
  let json: unknown
  try {
    json = text === '' ? undefined : JSON.parse(text)
  } catch {
    throw new CliError(`the daemon answered ${status} with something that is not JSON`)
  }
  if (status === 404 && (json as { error?: { message?: string } } | undefined)?.error?.message?.startsWith('no route') === true) {
    throw new CliError('this daemon has no kube-proxy route (an older weft?)')
  }
  if (status < 200 || status > 299) {
    const msg = (json as { error?: { message?: string } } | undefined)?.error?.message ?? `HTTP ${status}`
    throw new CliError(msg)
  }
  return json
}

export function registerKubeProxy (program: Command): void {
  jsonOption(apiOptions(dataDirOption(program.command('kube-proxy')
    .description('serve the Kubernetes API of another cluster on a local port, over the mesh (the cluster must share it: weft up --share-kube-api --allow <this node>)')
    .option('--cluster <name>', 'the cluster whose API to reach')
    .option('--listen <host:port>', 'where to listen (a port alone: 127.0.0.1)', DEFAULT_KUBE_PROXY_LISTEN)
    .option('--stop', 'stop the listener on --listen instead', false)
    .option('--list', 'list the listeners and this node\'s own share', false))), 'print the daemon\'s answer as JSON')
    .action(async (o: Opts) => {
      await run(async () => {
        if (o.list) {
          const r = await daemonCall(o, 'GET', KUBE_PROXY_ROUTE) as KubeProxiesResponse
          if (o.json) { printJson(r); return EXIT_OK }
          out(table(['LISTEN', 'CLUSTER', 'OPENED', 'REFUSED', 'FAILED', 'LAST ERROR'], r.proxies.map((p) => [p.listen, p.cluster, String(p.traffic.opened), String(p.traffic.refused), String(p.traffic.failed), p.traffic.lastError ?? '-'])))
          if (r.share !== null) out(`this node shares its Kubernetes API (${r.share.target}) with ${r.share.allow.join(', ')}: ${r.share.accepted} accepted, ${r.share.refused} refused`)
          return EXIT_OK
        }
        if (o.stop) {
          const r = await daemonCall(o, 'DELETE', KUBE_PROXY_ROUTE, { listen: o.listen })
          if (o.json) printJson(r)
          else out(`stopped ${(r as { stopped: string[] }).stopped.join(', ')}`)
          return EXIT_OK
        }
        if (o.cluster === undefined) throw new CliError('give --cluster <name>: the cluster whose API to reach')
        const r = await daemonCall(o, 'POST', KUBE_PROXY_ROUTE, { cluster: o.cluster, listen: o.listen }) as KubeProxyResponse
        if (o.json) { printJson(r); return EXIT_OK }
        out(`${r.created ? 'listening' : 'already listening'} on ${r.listen} for the API of cluster ${r.cluster} (${r.members} member${r.members === 1 ? '' : 's'} to try)`)
        out(`point your kubeconfig for ${r.cluster} at https://${r.listen} (kubectl config set-cluster <name> --server=https://${r.listen}); keep its credentials, and set tls-server-name to a name in the API server's certificate if ${r.listen.replace(/:\d+$/, '')} is not one`)
        out(`stop it with: weft kube-proxy --stop --listen ${r.listen}`)
        return EXIT_OK
      })
    })
}
