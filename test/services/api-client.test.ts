import { createServer, type Server } from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import { identifiers } from '../../src/log/token.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import { ApiClient } from '../../src/cli/api-client.js'
import { CliError } from '../../src/cli/errors.js'
import { renderServices } from '../../src/cli/service.js'
import { LocalServices, ServiceError } from '../../src/node/local-services.js'
import { serviceRoutes, type ServiceMethod } from '../../src/node/service-api.js'
import { joinBody, TEST_TOKEN } from '../support/fixtures.js'
import { closeServer, echoServer, exchange, startServiceNode, stopNodes, type ServiceNode } from './support.js'

/** The routes mounted the way the daemon's API server is asked to: JSON in, JSON out, ServiceError → its status. */
async function mount (services: LocalServices): Promise<{ server: Server, url: string }> {
  const routes = new Map(serviceRoutes)
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      void (async () => {
        const handler = routes.get(new URL(req.url ?? '/', 'http://x').pathname)?.[(req.method ?? 'GET') as ServiceMethod]
        let status = 200
        let body: unknown
        try {
          if (handler === undefined) throw new ServiceError(404, 'not_found', 'no route')
          const text = Buffer.concat(chunks).toString('utf8')
          body = await handler(text === '' ? undefined : JSON.parse(text), { services })
        } catch (err) {
          status = err instanceof ServiceError ? err.status : 500
          body = { error: { code: err instanceof ServiceError ? err.code : 'internal', message: (err as Error).message } }
        }
        res.writeHead(status, { 'Content-Type': 'application/json' })
        res.end(JSON.stringify(body))
      })()
    })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const a = server.address() as { port: number }
  return { server, url: `http://127.0.0.1:${a.port}` }
}

describe('the weft service client against the service routes', () => {
  let nodes: ServiceNode[] = []
  let cleanup: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const c of cleanup) await c()
    await stopNodes(nodes)
    nodes = []
    cleanup = []
  })

  it('expose, ls, connect, disconnect, unexpose through ApiClient; refusals become CliErrors', async () => {
    const echo = await echoServer()
    const a = await startServiceNode(0, [])
    nodes.push(a)
    await a.replica.append('node.join', joinBody('alpha', 'east'), Date.now())
    const services = new LocalServices({
      self: a.author,
      append: async (type, body) => await a.replica.append(type, body as never, Date.now()),
      state: () => a.replica.states().network,
      host: a.mesh.host,
      ids: identifiers(TEST_TOKEN),
      log: silentLogger
    })
    await services.start()
    const { server, url } = await mount(services)
    cleanup.push(async () => {
      await services.stop()
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
      await closeServer(echo.server)
    })
    const api = new ApiClient({ url, token: 'a'.repeat(32) })

    const e = await api.serviceExpose({ name: 'echo', target: `127.0.0.1:${echo.port}` })
    expect(e).toMatchObject({ service: 'default/echo', port: echo.port })
    const c = await api.serviceConnect({ name: 'echo', listen: '0' })
    expect(c.created).toBe(true)
    const got = await exchange(Number(c.listen.split(':')[1]), Buffer.from('via the API'))
    expect(got.data.toString()).toBe('via the API')

    const ls = await api.serviceLs()
    expect(ls.services.map((s) => `${s.namespace}/${s.name}`)).toEqual(['default/echo'])
    expect(ls.exposes).toHaveLength(1)
    expect(ls.connects).toHaveLength(1)
    const text = renderServices(ls)
    expect(text).toContain('default/echo')
    expect(text).toContain('exposed here:')
    expect(text).toContain('listening here:')
    expect(text).toContain(c.listen)

    expect(await api.serviceDisconnect({ listen: c.listen })).toEqual({ stopped: [c.listen] })
    expect((await api.serviceUnexpose({ name: 'echo' })).event).toMatch(/^[0-9a-f]{64}$/)
    await expect(api.serviceUnexpose({ name: 'echo' })).rejects.toBeInstanceOf(CliError)
    await expect(api.serviceUnexpose({ name: 'echo' })).rejects.toThrow(/does not expose default\/echo.*HTTP 404/)
    await expect(api.serviceExpose({ name: 'echo', target: 'nowhere' })).rejects.toThrow(/expected host:port/)
    expect(renderServices(await api.serviceLs())).toBe('no services exported')
  })
})
