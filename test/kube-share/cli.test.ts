import { createServer, type Server } from 'node:http'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Command } from 'commander'
import { RESOURCES, type KubeObject } from '../../src/adapters/kube/client.js'
import { registerKube } from '../../src/cli/kube.js'
import { daemonCall } from '../../src/cli/kube-proxy.js'
import { KubeProxies, kubeProxyRoutes, type KubeMethod } from '../../src/node/kube-share.js'
import { ServiceError } from '../../src/node/local-services.js'
import { startFakeKube } from '../support/fake-kube.js'
import { silentLogger } from '../../src/net/mesh-logger.js'

type CM = KubeObject & { data?: Record<string, string> }

describe('the kube CLI commands', () => {
  const cleanup: Array<() => Promise<void>> = []
  afterEach(async () => { for (const c of cleanup.splice(0).reverse()) await c() })

  it('weft kube dns-setup --kubeconfig … --server … patches the coredns ConfigMap; --remove restores it', async () => {
    const fake = await startFakeKube({ tls: true })
    const dir = await mkdtemp(join(tmpdir(), 'weft-kube-cli-'))
    cleanup.push(async () => { await fake.close(); await rm(dir, { recursive: true, force: true }) })
    const kc = join(dir, 'kubeconfig')
    await fake.writeKubeconfig(kc)
    fake.put<CM>(RESOURCES.configMaps, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'coredns', namespace: 'kube-system' }, data: { Corefile: '.:53 {\n    forward . /etc/resolv.conf\n}\n' } })
    const runCli = async (args: string[]): Promise<void> => {
      const program = new Command('weft').exitOverride()
      registerKube(program)
      await program.parseAsync(['node', 'weft', 'kube', 'dns-setup', '--kubeconfig', kc, ...args])
    }
    const before = process.exitCode
    await runCli(['--server', '10.1.0.1,10.1.0.2:53', '--json'])
    expect(process.exitCode ?? 0).toBe(0)
    expect(fake.get<CM>(RESOURCES.configMaps, 'kube-system', 'coredns')?.data?.Corefile).toContain('forward . 10.1.0.1:53 10.1.0.2:53')
    await runCli(['--remove', '--json'])
    expect(fake.get<CM>(RESOURCES.configMaps, 'kube-system', 'coredns')?.data?.Corefile).toBe('.:53 {\n    forward . /etc/resolv.conf\n}\n')
    process.exitCode = before
  })

  it('daemonCall reaches the kube-proxy routes mounted on an API server, and turns errors into messages', async () => {
    const kube = new KubeProxies({ state: () => ({ members: { active: new Map() } }) as never, client: {} as never, log: silentLogger })
    const routes = new Map(kubeProxyRoutes)
    const server: Server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        void (async () => {
          let status = 200
          let body: unknown
          try {
            if (req.headers.authorization !== 'Bearer QuimP8PZTpFNdvLamg6qJKljYPvXzwI9nzQUOaasXDk') throw new ServiceError(400, 'bad_request', 'bad token')
            const h = routes.get(new URL(req.url ?? '/', 'http://x').pathname)?.[(req.method ?? 'GET') as KubeMethod]
            if (h === undefined) throw new ServiceError(404, 'not_found', 'no route')
            const text = Buffer.concat(chunks).toString('utf8')
            body = await h(text === '' ? undefined : JSON.parse(text), { kube })
          } catch (err) {
            status = err instanceof ServiceError ? err.status : 500
            body = { error: { code: 'x', message: (err as Error).message } }
          }
          res.writeHead(status, { 'Content-Type': 'application/json' })
          res.end(JSON.stringify(body))
        })()
      })
    })
    await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
    const dir = await mkdtemp(join(tmpdir(), 'weft-kube-cli-'))
    cleanup.push(async () => { await new Promise<void>((resolve) => { server.close(() => { resolve() }) }); await rm(dir, { recursive: true, force: true }) })
    const tokenFile = join(dir, 'token')
    await writeFile(tokenFile, 'QuimP8PZTpFNdvLamg6qJKljYPvXzwI9nzQUOaasXDk\n', { mode: 0o600 })
    const o = { dataDir: dir, api: `http://127.0.0.1:${(server.address() as { port: number }).port}`, apiTokenFile: tokenFile }
    expect(await daemonCall(o, 'GET', '/kube-proxy')).toEqual({ proxies: [], share: null })
    await expect(daemonCall(o, 'POST', '/kube-proxy', { cluster: 'east', listen: '0' })).rejects.toThrow(/no member of cluster east/)
    await expect(daemonCall({ dataDir: dir }, 'GET', '/kube-proxy')).rejects.toThrow(/no running daemon/)
  })
})
