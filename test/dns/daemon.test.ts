import { Resolver } from 'node:dns/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { formatToken, newToken } from '../../src/log/token.js'
import { startDaemon, tempDir, waitFor, type DaemonProc } from '../mesh/daemons.js'

/** `weft up --dns`: the daemon serves its network's names over real UDP, following the log. */
describe('weft up --dns', () => {
  const token = formatToken(newToken())
  const nodes: DaemonProc[] = []
  let dir: { dir: string, cleanup: () => Promise<void> } | undefined
  afterAll(async () => { await Promise.all(nodes.map(async (n) => await n.stop())); await dir?.cleanup() })

  it('answers node names of the network, and a node that joins later without a restart', async () => {
    dir = await tempDir('weft-dns-')
    const a = await startDaemon({ token, dataDir: join(dir.dir, 'a'), name: 'alpha', extra: ['--dns', '127.0.0.1:0'] })
    nodes.push(a)
    const listen = (await a.get('/api/v1/status')).dns.listen as string[]
    const udp = listen.find((l) => l.startsWith('udp://'))?.slice('udp://'.length) as string
    expect(udp).toMatch(/^127\.0\.0\.1:\d+$/)
    const resolver = new Resolver({ timeout: 1000, tries: 1 })
    resolver.setServers([udp])
    const addressOf = async (d: DaemonProc): Promise<string | undefined> => (await d.get('/api/v1/status')).self.address
    await waitFor(async () => (await addressOf(a)) !== undefined, 'alpha to lease an address')
    expect(await resolver.resolve4('alpha.default.weft.internal')).toEqual([await addressOf(a)])
    await expect(resolver.resolve4('nobody.default.weft.internal')).rejects.toMatchObject({ code: 'ENOTFOUND' })
    // No upstream configured: names outside Weft's zones are refused, not guessed.
    await expect(resolver.resolve4('example.com')).rejects.toMatchObject({ code: 'EREFUSED' })

    const b = await startDaemon({ token, dataDir: join(dir.dir, 'b'), name: 'bravo', peers: [a.listen[0] as string] })
    nodes.push(b)
    await waitFor(async () => (await addressOf(b)) !== undefined, 'bravo to lease an address')
    const bAddr = await addressOf(b)
    await waitFor(async () => (await resolver.resolve4('bravo.default.weft.internal').catch((): string[] => [])).includes(bAddr as string), 'alpha to answer for bravo', 10_000)
  }, 60_000)
})
