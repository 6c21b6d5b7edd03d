import { existsSync } from 'node:fs'
import { Resolver } from 'node:dns/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { formatToken, newToken } from '../../src/log/token.js'
import { startDaemon, tempDir, waitFor, type DaemonProc } from '../mesh/daemons.js'

const why = process.getuid?.() !== 0 ? 'not root' : !existsSync('/dev/net/tun') ? 'no /dev/net/tun' : ''
if (why !== '') console.warn(`the DNS daemon test runs bravo without a TUN device: ${why}; its name is then checked reserved (NODATA), not answered`)

/**
 * `weft up --dns`: the daemon serves its network's names over real UDP, following the log. A
 * node without a VPN device (--no-tun) holds its name but answers no address for it (issue 17:
 * its overlay address reaches nothing); a node with one (bravo, with TUN when root) is answered.
 */
describe('weft up --dns', () => {
  const token = formatToken(newToken())
  const nodes: DaemonProc[] = []
  let dir: { dir: string, cleanup: () => Promise<void> } | undefined
  afterAll(async () => { await Promise.all(nodes.map(async (n) => await n.stop())); await dir?.cleanup() })

  it('answers node names of the network, a node that joins later without a restart, and no address for a --no-tun node', async () => {
    dir = await tempDir('weft-dns-')
    const a = await startDaemon({ token, dataDir: join(dir.dir, 'a'), name: 'alpha', extra: ['--dns', '127.0.0.1:0'] })
    nodes.push(a)
    const listen = (await a.get('/api/v1/status')).dns.listen as string[]
    const udp = listen.find((l) => l.startsWith('udp://'))?.slice('udp://'.length) as string
    expect(udp).toMatch(/^127\.0\.0\.1:\d+$/)
    const resolver = new Resolver({ timeout: 1000, tries: 1 })
    resolver.setServers([udp])
    const code = async (name: string): Promise<string> => await resolver.resolve4(name).then(() => 'resolved', (err: NodeJS.ErrnoException) => err.code ?? 'no code')
    const self = async (d: DaemonProc): Promise<{ address?: string, dnsName?: string, vpn?: boolean }> => (await d.get('/api/v1/status')).self
    await waitFor(async () => (await self(a)).address !== undefined, 'alpha to lease an address')
    // alpha runs with --no-tun: its address is held, marked, and its name answers no A.
    expect(await self(a)).toMatchObject({ dnsName: 'alpha.default.weft.internal', vpn: false })
    expect(await code('alpha.default.weft.internal')).toBe('ENODATA')
    expect(await code('alpha.weft.internal')).toBe('ENODATA')
    expect(await code('nobody.default.weft.internal')).toBe('ENOTFOUND')
    expect(await code('bravo.default.weft.internal')).toBe('ENOTFOUND')
    // No upstream configured: names outside Weft's zones are refused, not guessed.
    expect(await code('example.com')).toBe('EREFUSED')

    const tun = why === ''
    const b = await startDaemon({ token, dataDir: join(dir.dir, 'b'), name: 'bravo', peers: [a.listen[0] as string], ...(tun ? { tun: true, extra: ['--tun-name', `wd${process.pid % 100000}`] } : {}) })
    nodes.push(b)
    await waitFor(async () => (await self(b)).address !== undefined, 'bravo to lease an address')
    const bAddr = (await self(b)).address as string
    expect((await self(b)).vpn).toBe(tun)
    if (tun) {
      await waitFor(async () => (await resolver.resolve4('bravo.default.weft.internal').catch((): string[] => [])).includes(bAddr), 'alpha to answer for bravo', 10_000)
      expect(await resolver.resolve4('bravo.weft.internal')).toEqual([bAddr])
    } else {
      await waitFor(async () => (await code('bravo.default.weft.internal')) === 'ENODATA', 'alpha to reserve bravo\'s name', 10_000)
    }
    // alpha still answers no address for itself.
    expect(await code('alpha.default.weft.internal')).toBe('ENODATA')
  }, 60_000)
})
