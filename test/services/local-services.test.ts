import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Server } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { identifiers } from '../../src/log/token.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import { LocalServices, ServiceError, servicesFileStore } from '../../src/node/local-services.js'
import { EXPOSE_ANNOTATION } from '../../src/node/service-registry.js'
import { connectRoute, exposeRoute, listServicesRoute, serviceRoutes, unexposeRoute } from '../../src/node/service-api.js'
import { joinBody, TEST_TOKEN } from '../support/fixtures.js'
import { closeServer, echoServer, exchange, startServiceNode, stopNodes, waitFor, type ServiceNode } from './support.js'

const ids = identifiers(TEST_TOKEN)

function services (node: ServiceNode, store?: ReturnType<typeof servicesFileStore>): LocalServices {
  return new LocalServices({
    self: node.author,
    append: async (type, body) => await node.replica.append(type, body as never, Date.now()),
    state: () => node.replica.states().network,
    host: node.mesh.host,
    ids,
    log: silentLogger,
    ...(store !== undefined ? { store } : {})
  })
}

describe('LocalServices: weft service expose / connect end to end', () => {
  let nodes: ServiceNode[] = []
  let servers: Server[] = []
  let locals: LocalServices[] = []
  let dirs: string[] = []
  afterEach(async () => {
    for (const l of locals) await l.stop()
    for (const s of servers) await closeServer(s)
    await stopNodes(nodes)
    for (const d of dirs) await rm(d, { recursive: true, force: true })
    nodes = []
    servers = []
    locals = []
    dirs = []
  })

  async function twoClusters (): Promise<[ServiceNode, ServiceNode, LocalServices, LocalServices]> {
    const a = await startServiceNode(0, [])
    const b = await startServiceNode(1, [a.addr])
    nodes.push(a, b)
    await a.replica.append('node.join', joinBody('alpha', 'east'), Date.now())
    await b.replica.append('node.join', joinBody('beta', 'west'), Date.now())
    await waitFor(() => a.replica.states().network.members.active.size === 2 && b.replica.states().network.members.active.size === 2, 'both members everywhere')
    const sa = services(a)
    const sb = services(b)
    locals.push(sa, sb)
    a.replica.onChange(() => { void sa.update() })
    b.replica.onChange(() => { void sb.update() })
    await sa.start()
    await sb.start()
    return [a, b, sa, sb]
  }

  it('expose on A reaches B through the log; connect on B carries connections; unexpose withdraws it', async () => {
    const echo = await echoServer()
    servers.push(echo.server)
    const [a, b, sa, sb] = await twoClusters()

    const exposed = await sa.expose({ name: 'echo', target: `127.0.0.1:${echo.port}` })
    expect(exposed).toMatchObject({ service: 'default/echo', port: echo.port, target: `127.0.0.1:${echo.port}` })
    expect(exposed.event).toMatch(/^[0-9a-f]{64}$/)
    // Exposing the same again appends nothing.
    expect((await sa.expose({ name: 'echo', target: `127.0.0.1:${echo.port}` })).event).toBeNull()
    const rec = a.replica.states().network.services.exports.get('default/echo/east')
    expect(rec?.spec).toMatchObject({ cluster: 'east', type: 'ClusterSetIP', ports: [{ protocol: 'TCP', port: echo.port }], sessionAffinity: 'None', labels: {}, annotations: { [EXPOSE_ANNOTATION]: 'true' } })

    await waitFor(() => b.replica.states().network.services.exports.has('default/echo/east'), 'the export replicated to B')
    const listed = sb.list().services
    expect(listed).toHaveLength(1)
    expect(listed[0]).toMatchObject({ namespace: 'default', name: 'echo', imported: true, ports: [{ protocol: 'TCP', port: echo.port, clusters: ['east'] }] })
    expect(listed[0]?.exporters).toEqual([expect.objectContaining({ cluster: 'east', author: a.author, hostname: 'alpha', plain: true, contributing: true, ready: 'Exported' })])

    // The port comes from the import when not given.
    const c = await sb.connect({ name: 'echo', listen: '127.0.0.1:0' })
    expect(c).toMatchObject({ service: 'default/echo', port: echo.port, created: true })
    const port = Number(c.listen.split(':')[1])
    const got = await exchange(port, Buffer.from('hello over the mesh'))
    expect(got.data.toString()).toBe('hello over the mesh')
    expect(got.ended).toBe(true)
    // The same listener asked again is the same one.
    expect(await sb.connect({ name: 'echo', listen: c.listen })).toMatchObject({ created: false, listen: c.listen })
    await expect(sb.connect({ name: 'other', listen: c.listen, port: 1 })).rejects.toMatchObject({ status: 409 })

    await waitFor(() => sa.list().exposes[0]?.traffic.active === 0 && sb.list().connects[0]?.traffic.active === 0, 'the tunnel closed')
    expect(sa.list().exposes).toEqual([expect.objectContaining({ service: 'default/echo', exported: true, traffic: expect.objectContaining({ opened: 1, bytesIn: 19, bytesOut: 19 }) })])
    expect(sb.list().connects).toEqual([expect.objectContaining({ service: 'default/echo', listen: c.listen, traffic: expect.objectContaining({ opened: 1, bytesIn: 19, bytesOut: 19 }) })])

    const un = await sa.unexpose({ name: 'echo' })
    expect(un.event).toMatch(/^[0-9a-f]{64}$/)
    expect(a.replica.states().network.services.exports.has('default/echo/east')).toBe(false)
    // A refuses at once, whatever B's log says yet.
    await expect(sb.client.open(a.mesh.host.peerId, 'default/echo', echo.port)).rejects.toMatchObject({ code: 'unknown-service' })
    await waitFor(() => !b.replica.states().network.services.exports.has('default/echo/east'), 'the unexport replicated to B')
    const after = await exchange(port, Buffer.from('anyone?'))
    expect(after.data.byteLength).toBe(0)
    expect(after.ended).toBe(true)
    expect(sb.list().connects[0]?.traffic.lastError).toContain('no member serves default/echo')
    await expect(sa.unexpose({ name: 'echo' })).rejects.toBeInstanceOf(ServiceError)
    expect((await sb.disconnect({ listen: c.listen })).stopped).toEqual([c.listen])
  })

  it('refuses tunnels from non-members and for the wrong port', async () => {
    const echo = await echoServer()
    servers.push(echo.server)
    const [a, , sa] = await twoClusters()
    await sa.expose({ name: 'echo', target: `127.0.0.1:${echo.port}`, port: 7 })
    expect(sa.resolve('default/echo', 7, 'ff'.repeat(32))).toMatchObject({ refuse: 'not-member' })
    expect(sa.resolve('default/echo', 8, a.author)).toMatchObject({ refuse: 'unknown-service' })
    expect(sa.resolve('default/echo', 7, a.author)).toEqual({ host: '127.0.0.1', port: echo.port })
  })

  it('a node that exposes and connects to the same service connects directly', async () => {
    const echo = await echoServer()
    servers.push(echo.server)
    const [, , sa] = await twoClusters()
    await sa.expose({ name: 'echo', target: `127.0.0.1:${echo.port}` })
    const c = await sa.connect({ name: 'echo', listen: '0' })
    const got = await exchange(Number(c.listen.split(':')[1]), Buffer.from('local'))
    expect(got.data.toString()).toBe('local')
  })

  it('keeps exposes and listeners in a file; a restart without them withdraws the stale export', async () => {
    const echo = await echoServer()
    servers.push(echo.server)
    const dir = await mkdtemp(join(tmpdir(), 'weft-services-'))
    dirs.push(dir)
    const a = await startServiceNode(0, [])
    nodes.push(a)
    await a.replica.append('node.join', joinBody('alpha', 'east'), Date.now())
    const file = join(dir, 'services.json')
    const first = services(a, servicesFileStore(file))
    await first.start()
    await first.expose({ name: 'echo', target: `127.0.0.1:${echo.port}` })
    await first.connect({ name: 'echo', listen: '127.0.0.1:0' })
    await first.stop()
    const saved = JSON.parse(await readFile(file, 'utf8')) as { exposes: unknown[], connects: Array<{ listen: string }> }
    expect(saved.exposes).toEqual([{ namespace: 'default', name: 'echo', target: `127.0.0.1:${echo.port}`, port: echo.port }])
    expect(saved.connects).toHaveLength(1)

    // Restarted with the file: the expose is served again, no event appended, the listener is back.
    const size = a.replica.log.size
    const second = services(a, servicesFileStore(file))
    locals.push(second)
    await second.start()
    expect(a.replica.log.size).toBe(size)
    expect(second.list().exposes[0]).toMatchObject({ service: 'default/echo', exported: true })
    const listen = saved.connects[0]?.listen as string
    const got = await exchange(Number(listen.split(':')[1]), Buffer.from('back'))
    expect(got.data.toString()).toBe('back')
    await second.stop()

    // Restarted without it (no store): the export of a service no longer served is withdrawn.
    const third = services(a)
    locals.push(third)
    await third.start()
    expect(a.replica.states().network.services.exports.has('default/echo/east')).toBe(false)
  })

  it('the API handlers validate bodies and map errors to HTTP statuses', async () => {
    const [, , sa] = await twoClusters()
    const ctx = { services: sa }
    expect(serviceRoutes.map(([p, h]) => `${Object.keys(h).join(',')} ${p}`)).toEqual([
      'GET /api/v1/services', 'POST,DELETE /api/v1/services/expose', 'POST,DELETE /api/v1/services/connect'
    ])
    await expect(exposeRoute({ name: 'Bad_Name', target: '127.0.0.1:1' }, ctx)).rejects.toMatchObject({ status: 400, code: 'bad_request' })
    await expect(exposeRoute({ name: 'ok', target: 'nope' }, ctx)).rejects.toMatchObject({ status: 400 })
    await expect(exposeRoute({ name: 'ok', target: '127.0.0.1:1', extra: 1 }, ctx)).rejects.toMatchObject({ status: 400 })
    await expect(unexposeRoute({ name: 'ghost' }, ctx)).rejects.toMatchObject({ status: 404, code: 'not_found' })
    await expect(connectRoute({ name: 'ghost', listen: '0' }, ctx)).rejects.toMatchObject({ status: 404 })
    await expect(connectRoute({ name: 'ghost', listen: 'localhost:80' }, ctx)).rejects.toMatchObject({ status: 400 })
    const r = await exposeRoute({ name: 'web', target: 'localhost:8080', namespace: 'apps', port: 80 }, ctx)
    expect(r).toMatchObject({ service: 'apps/web', target: 'localhost:8080', port: 80 })
    const list = await listServicesRoute(undefined, ctx)
    expect(list.exposes).toEqual([expect.objectContaining({ service: 'apps/web', port: 80, exported: true })])
    expect(list.services[0]).toMatchObject({ namespace: 'apps', name: 'web', ports: [{ port: 80, protocol: 'TCP', clusters: ['east'] }] })
  })
})
