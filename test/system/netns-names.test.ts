/**
 * System test of service names (issue 14): three machines in network namespaces on one bridge,
 * each with its own loopback: A runs `weft up` and a TCP echo server on its 127.0.0.1:7000,
 * exposed as `echo` port 80 (`weft service expose`); B is a plain node and C a bridge
 * (`weft bridge`), each serving Weft's DNS on its own 127.0.0.1:5300 (5353 is mDNS's). From B and from C, a
 * program resolves `echo.default.svc.clusterset.local` (and the network-zone form) through its
 * node's DNS, connects to the answer on port 80 and gets its bytes echoed: the name is a working
 * address on every member, through the member's own service-address listener. The Kubernetes
 * node case is in test/mcs/daemon.test.ts (the fake API server, ClusterSetIP).
 *
 * Needs root, `ip netns` and /dev/net/tun; skipped with the reason printed otherwise.
 * Needs dist/ (`npm run build`).
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NetnsLab, tunNetnsSupport, startWeft, tail, waitApi, waitFor, weftApi, type LabHost, type WeftNode } from './netns.js'

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))

const supported = tunNetnsSupport()
if (!supported.ok) console.warn(`skipping test/system/netns-names.test.ts: ${supported.reason}`)

/** Resolve argv[1] through the DNS server argv[2], connect to the address on port argv[3], send argv[4], print the JSON outcome. */
const PROBE = `
const { Resolver } = require('node:dns').promises
const net = require('node:net')
const [name, server, port, text] = process.argv.slice(1)
const r = new Resolver({ timeout: 2000, tries: 1 })
r.setServers([server])
r.resolve4(name).then((ips) => new Promise((resolve, reject) => {
  const s = net.connect(Number(port), ips[0], () => { s.end(text) })
  let got = ''
  s.setEncoding('utf8').on('data', (d) => { got += d }).on('end', () => resolve({ ips, got })).on('error', reject)
  setTimeout(() => reject(new Error('no echo within 5 s')), 5000)
})).then((o) => { console.log(JSON.stringify(o)) }, (e) => { console.log(JSON.stringify({ error: String(e && e.message || e) })); process.exitCode = 1 })
`

describe.skipIf(!supported.ok)('service names connect from every kind of member (network namespaces)', () => {
  let lab: NetnsLab | undefined
  let token = ''
  const nodes: WeftNode[] = []
  const L = (): NetnsLab => lab as NetnsLab

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`)
    lab = await NetnsLab.create(3, { hostnamePrefix: 'names' })
    token = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [CLI, 'token', 'new'], (err, stdout) => { err !== null ? reject(err) : resolve(stdout.trim()) })
    })
  }, 30_000)

  afterAll(async () => { await lab?.destroy() }, 30_000)

  async function withLogs<T> (fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      const logs = await Promise.all(nodes.map(async (n) => `--- ${n.host.hostname} (${n.host.ns}) ---\n${await tail(n.proc.logFile, 20)}`))
      ;(err as Error).message += `\n${logs.join('\n')}`
      throw err
    }
  }

  async function probe (host: LabHost, name: string): Promise<{ ips?: string[], got?: string, error?: string }> {
    const r = await L().exec(host, [process.execPath, '-e', PROBE, name, '127.0.0.1:5300', '80', `hello from ${host.hostname}`], 15_000)
    try {
      return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as { ips?: string[], got?: string, error?: string }
    } catch {
      return { error: `${r.stdout}${r.stderr}`.trim() }
    }
  }

  it('a plain node and a bridge each reach the echo server exposed on A by its name', async () => {
    const l = L()
    const [a, b, c] = l.hosts as [LabHost, LabHost, LabHost]
    await withLogs(async () => {
      l.spawn(a, [process.execPath, '-e', 'require("node:net").createServer((s) => { s.pipe(s) }).listen(7000, "127.0.0.1")'])
      nodes.push(startWeft(l, a, CLI, token))
      nodes.push(startWeft(l, b, CLI, token, ['--dns', '127.0.0.1:5300']))
      const dataDir = join(l.dir, 'data-bridge')
      const bridge: WeftNode = {
        host: c,
        dataDir,
        proc: l.spawn(c, [process.execPath, CLI, 'bridge', '--token', token, '--data-dir', dataDir, '--dns', '127.0.0.1:5300'], {
          logFile: `${dataDir}.log`,
          env: { ...process.env, WEFT_TOKEN: '', WEFT_DATA_DIR: '' }
        }),
        spawnedAt: performance.now()
      }
      nodes.push(bridge)
      await Promise.all(nodes.map(async (n) => { await waitApi(n, 30_000) }))
      await weftApi(l, nodes[0] as WeftNode, 'POST', '/services/expose', { name: 'echo', target: '127.0.0.1:7000', port: 80 })

      for (const [host, node] of [[b, nodes[1]], [c, bridge]] as Array<[LabHost, WeftNode]>) {
        for (const name of ['echo.default.svc.clusterset.local', 'echo.default.svc.weft.internal']) {
          let last: { ips?: string[], got?: string, error?: string } = {}
          await waitFor(async () => {
            last = await probe(host, name)
            return last.got === `hello from ${host.hostname}`
          }, () => `${host.hostname} to reach ${name}:80 by name; last: ${JSON.stringify(last)}`, 45_000, 300)
          expect(last.ips).toHaveLength(1)
          expect(last.ips?.[0]).toMatch(/^127\.77\./)
        }
        // The connection went through this member's own listener on the service address.
        const listed = await weftApi<{ addresses?: Array<{ service: string, cluster?: string, listen: string, error?: string, traffic?: { opened: number } }> }>(l, node, 'GET', '/services')
        const front = listed.addresses?.find((x) => x.service === 'default/echo' && x.cluster === undefined)
        expect(front?.error).toBeUndefined()
        expect(front?.listen).toMatch(/^127\.77\.\d+\.\d+:80$/)
        expect(front?.traffic?.opened).toBeGreaterThanOrEqual(2)
      }
    })
  }, 150_000)
})
