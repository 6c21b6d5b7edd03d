/**
 * System test: mDNS works or says why not (issue 15, item 5). Two machines on one bridge whose
 * namespaces have NO route for multicast (no default route, the lab's 224.0.0.0/4 route deleted):
 * `weft up` with only the token (and --no-public-discovery, so mDNS is the only way) must still
 * find each other, because the node names the interface for multicast itself. A third machine
 * with only a loopback interface cannot do LAN discovery: `weft status` (the API's `problems`)
 * says so, with the fix, and so does the log, once.
 *
 * Needs root and `ip netns` (CI runs as root); skipped with the reason printed otherwise.
 * Needs dist/ (`npm run build`).
 */
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { formatToken, newToken } from '../../src/log/token.js'
import type { NodeStatus } from '../../src/adapters/api-types.js'
import { NetnsLab, netnsSupport, startWeft, tail, waitApi, waitFor, weftApi, withNodeLogs, type WeftNode } from './netns.js'

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))
const support = netnsSupport()
if (!support.ok) console.warn(`skipping test/system/netns-lan-discovery.test.ts: ${support.reason}`)

describe.skipIf(!support.ok)('LAN discovery without a route for multicast', () => {
  let lab: NetnsLab | undefined
  const nodes: WeftNode[] = []
  const token = formatToken(newToken())
  const flags = ['--no-tun', '--no-public-discovery', '--join-wait', '0']

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`)
    lab = await NetnsLab.create(2, { subnet: '10.78.0' })
    for (const h of lab.hosts) {
      const r = await lab.exec(h, ['ip', 'route', 'del', '224.0.0.0/4'])
      if (r.code !== 0) throw new Error(`cannot delete the multicast route in ${h.ns}: ${r.stderr}`)
    }
  }, 30_000)

  afterAll(async () => { await lab?.destroy() }, 30_000)

  const withLogs = async <T>(fn: () => Promise<T>): Promise<T> => await withNodeLogs(nodes, fn, 20)


  it('two token-only nodes find each other by mDNS on the interface the node picked', async () => {
    const l = lab as NetnsLab
    const routes = await l.exec(l.hosts[0]!, ['ip', 'route', 'show'])
    expect(routes.stdout).not.toMatch(/default|224\.0\.0\.0/)
    for (const h of l.hosts) nodes.push(startWeft(l, h, CLI, token, flags))
    await withLogs(async () => {
      for (const n of nodes) await waitApi(n, 30_000)
      await waitFor(async () => (await Promise.all(nodes.map(async (n) => (await weftApi<NodeStatus>(l, n, 'GET', '/status')).peers.connected))).every((c) => c >= 1),
        'both nodes connected through mDNS', 30_000, 250)
      for (const n of nodes) expect(((await weftApi<NodeStatus>(l, n, 'GET', '/status')).problems ?? []).filter((p) => p.code === 'mdns-unusable')).toEqual([])
    })
  }, 90_000)

  it('a machine with only loopback says, in status and once in the log, that LAN discovery cannot work and how to fix it', async () => {
    const l = lab as NetnsLab
    const alone = await l.addStandaloneHost('alone')
    const n = startWeft(l, alone, CLI, token, flags)
    nodes.push(n)
    await withLogs(async () => {
      await waitApi(n, 30_000)
      const s = await weftApi<NodeStatus>(l, n, 'GET', '/status')
      expect(s.problems?.find((p) => p.code === 'mdns-unusable')).toMatchObject({ message: expect.stringMatching(/mDNS cannot find peers.*--peer/), fix: expect.stringMatching(/--peer/) })
      const shown = await l.exec(alone, [process.execPath, CLI, 'status', '--data-dir', n.dataDir])
      expect(shown.stdout).toMatch(/problems\s+WARNING mdns-unusable: mDNS cannot find peers/)
      const log = await tail(n.proc.logFile, 200)
      expect(log.split('\n').filter((line) => line.includes('mDNS cannot find peers'))).toHaveLength(1)
    })
  }, 60_000)
})
