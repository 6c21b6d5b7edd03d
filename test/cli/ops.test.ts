import { createServer, type Server } from 'node:net'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { formatToken, newToken } from '../../src/log/token.js'
import { weft } from './helpers.js'
import { documentedShapes, shapeMismatches } from './doc-shapes.js'
import { spawnUp, startDaemon, tempDir, waitFor, type DaemonProc } from '../mesh/daemons.js'

/** Issue 17 item 4 against real daemons: peers, ping, node ls/leave, bind conflicts, signals, log format. */
describe('weft peers / ping / node against running daemons', () => {
  const cleanups: Array<() => Promise<unknown>> = []
  afterAll(async () => { for (const c of cleanups.reverse()) await c() })

  it('peers ls shows overlay address, path and RTT; ping says direct and answers; node ls lists members; node leave drops one', async () => {
    const dir = await tempDir('weft-ops-')
    cleanups.push(dir.cleanup)
    const token = formatToken(newToken())
    const a: DaemonProc = await startDaemon({ token, dataDir: join(dir.dir, 'a'), name: 'alpha' })
    cleanups.push(a.stop)
    const b: DaemonProc = await startDaemon({ token, dataDir: join(dir.dir, 'b'), name: 'bravo', peers: [a.listen[0] as string] })
    cleanups.push(b.stop)
    const peerB = async (): Promise<Record<string, any> | undefined> => (await a.get('/api/v1/peers')).peers.find((p: { peerId: string }) => p.peerId === b.peerId)
    await waitFor(async () => { const p = await peerB(); return p?.address !== undefined && p.latencyMs !== undefined && p.path !== undefined }, 'bravo with an address, RTT and path on alpha', 20_000)
    const pb = await peerB() as Record<string, any>
    expect(pb).toMatchObject({ hostname: 'bravo', connected: true, vpn: false, path: { direct: true } })
    expect(pb.address).toMatch(/^10\.\d+\.\d+\.\d+$/)

    const peers = await weft(['peers', 'ls', '--data-dir', a.dataDir])
    expect(peers.code).toBe(0)
    expect(peers.stdout).toMatch(/^PEER ID\s+HOST\s+OVERLAY\s+CONNECTED\s+ONLINE\s+LAST SEEN\s+RTT\s+PATH\s+ADDRESSES\n/)
    expect(peers.stdout).toMatch(new RegExp(`bravo\\s+${pb.address.replace(/\./g, '\\.')} \\(no VPN\\)\\s+yes\\s+yes\\s+\\S+ ago\\s+[\\d.]+ ms\\s+/ip4/127\\.0\\.0\\.1/tcp/\\d+ \\(direct\\)`))

    const ping = await weft(['ping', 'bravo', '--count', '2', '--data-dir', a.dataDir])
    expect(ping.stderr).toBe('')
    expect(ping.code).toBe(0)
    expect(ping.stdout).toMatch(new RegExp(`^PING bravo \\(${pb.address.replace(/\./g, '\\.')}\\) ${b.peerId}: direct via /ip4/127\\.0\\.0\\.1/tcp/\\d+\\n`))
    expect(ping.stdout).toMatch(/reply 2: rtt [\d.]+ ms\n2 sent, 2 answered; rtt min\/avg\/max/)
    const shapes = documentedShapes()
    const peersJson = JSON.parse((await weft(['peers', 'ls', '--json', '--data-dir', a.dataDir])).stdout) as unknown
    expect(shapeMismatches(shapes.get('weft peers ls')!, peersJson)).toEqual([])
    const byAddress = JSON.parse((await weft(['ping', pb.address, '--count', '1', '--json', '--data-dir', a.dataDir])).stdout) as Record<string, any>
    expect(shapeMismatches(shapes.get('weft ping')!, byAddress)).toEqual([])
    expect(byAddress).toMatchObject({ peerId: b.peerId, hostname: 'bravo', lost: 0, path: { direct: true } })
    expect(byAddress.rttMs).toHaveLength(1)
    const nobody = await weft(['ping', 'nobody', '--data-dir', a.dataDir])
    expect(nobody.code).toBe(2)
    expect(nobody.stderr).toMatch(/^weft: .*no member "nobody": give a host name, DNS name, overlay address or peer id/)

    const ls = await weft(['node', 'ls', '--data-dir', a.dataDir])
    expect(ls.code).toBe(0)
    expect(ls.stdout).toMatch(/^HOST\s+CLUSTER\s+ROLE\s+ADDRESS\s+DNS NAME\s+STATE\s+LAST SEEN\s+PEER ID\n/)
    expect(ls.stdout).toMatch(/alpha\s+default\s+\S+\s+10\.\S+ \(no VPN\)\s+alpha\.default\.weft\.internal\s+this node/)
    expect(ls.stdout).toMatch(new RegExp(`bravo\\s+default\\s+\\S+\\s+10\\.\\S+ \\(no VPN\\)\\s+bravo\\.default\\.weft\\.internal\\s+online\\s+\\S+ ago\\s+${b.peerId}`))

    expect(shapeMismatches(shapes.get('weft node ls')!, JSON.parse((await weft(['node', 'ls', '--json', '--data-dir', a.dataDir])).stdout))).toEqual([])

    const left = await weft(['node', 'leave', '--reason', 'decommissioned', '--json', '--data-dir', b.dataDir])
    expect(shapeMismatches(shapes.get('weft node leave')!, JSON.parse(left.stdout))).toEqual([])
    expect(left.stderr).toBe('')
    expect(left.code).toBe(0)
    expect(JSON.parse(left.stdout)).toMatchObject({ event: expect.stringMatching(/^[0-9a-f]{64}$/), pushedTo: 1 })
    // The leaving daemon stops by itself, cleanly.
    expect(await b.exited).toBe(0)
    expect(existsSync(join(b.dataDir, 'api.json'))).toBe(false)
    // The other drops it: no longer a member, its address and name free.
    const nodes = JSON.parse((await weft(['node', 'ls', '--json', '--data-dir', a.dataDir])).stdout) as { nodes: Array<{ hostname: string }> }
    expect(nodes.nodes.map((n) => n.hostname)).toEqual(['alpha'])
    const state = await a.get('/api/v1/state')
    expect(state.view.departed).toEqual([expect.objectContaining({ how: 'leave', reason: 'decommissioned' })])
  }, 90_000)
})

describe('weft up: addresses in use, signals, log format', () => {
  const cleanups: Array<() => Promise<unknown>> = []
  afterAll(async () => { for (const c of cleanups.reverse()) await c() })

  const occupy = async (): Promise<{ server: Server, port: number }> => {
    const server = createServer()
    await new Promise<void>((resolve) => { server.listen({ host: '127.0.0.1', port: 0 }, resolve) })
    cleanups.push(async () => { await new Promise((resolve) => { server.close(resolve) }) })
    return { server, port: (server.address() as { port: number }).port }
  }

  it('--listen or --api in use: one clean line each, exit 2, before the data dir is even made', async () => {
    const dir = await tempDir('weft-ops-')
    cleanups.push(dir.cleanup)
    const { port: p1 } = await occupy()
    const { port: p2 } = await occupy()
    const dataDir = join(dir.dir, 'x')
    const r = await weft(['up', '--token', formatToken(newToken()), '--data-dir', dataDir, '--no-tun', '--no-mdns', '--listen', `/ip4/127.0.0.1/tcp/${p1}`, '--api', `127.0.0.1:${p2}`])
    expect(r.code).toBe(2)
    expect(r.stderr.split('\n').filter((l) => l !== '')).toEqual([
      expect.stringMatching(new RegExp(`^weft: --listen /ip4/127\\.0\\.0\\.1/tcp/${p1}: the address is in use by another process .*give another --listen`)),
      expect.stringMatching(new RegExp(`^weft: --api 127\\.0\\.0\\.1:${p2}: the address is in use by another process .*give another --api`))
    ])
    expect(r.stderr).not.toMatch(/faultTolerance|    at /)
    expect(existsSync(dataDir)).toBe(false)
  }, 30_000)

  it('a second SIGTERM exits at once and still removes api.json', async () => {
    const dir = await tempDir('weft-ops-')
    cleanups.push(dir.cleanup)
    const d = await startDaemon({ token: formatToken(newToken()), dataDir: join(dir.dir, 'a'), name: 'alpha' })
    cleanups.push(d.stop)
    expect(existsSync(join(d.dataDir, 'api.json'))).toBe(true)
    d.proc.kill('SIGTERM')
    d.proc.kill('SIGTERM')
    const code = await d.exited
    // 0 when the clean stop won the race, 130 when the second signal did: api.json goes either way.
    expect([0, 130]).toContain(code)
    expect(existsSync(join(d.dataDir, 'api.json'))).toBe(false)
  }, 30_000)

  it('a clean stop that outlasts its deadline exits anyway (code 1), says so once and removes api.json', async () => {
    const dir = await tempDir('weft-ops-')
    cleanups.push(dir.cleanup)
    // A deadline of 1 ms: no clean stop (libp2p, the store) finishes that fast, so the watchdog
    // is what ends the process; without it the stop would end it with 0.
    const d = await startDaemon({ token: formatToken(newToken()), dataDir: join(dir.dir, 'w'), name: 'watchdog', env: { WEFT_STOP_DEADLINE_MS: '1' } })
    cleanups.push(d.stop)
    d.proc.kill('SIGTERM')
    expect(await d.exited).toBe(1)
    expect(d.logs.filter((l) => l.msg === 'the clean stop did not finish in time: exiting without it')).toHaveLength(1)
    expect(existsSync(join(d.dataDir, 'api.json'))).toBe(false)
  }, 30_000)

  it('--log-format pretty: one readable line per log record with an ISO time and the level', async () => {
    const dir = await tempDir('weft-ops-')
    cleanups.push(dir.cleanup)
    const s = spawnUp({ token: formatToken(newToken()), dataDir: join(dir.dir, 'p'), name: 'pretty', extra: ['--log-format', 'pretty', '--log-level', 'info'] })
    cleanups.push(async () => { s.proc.kill('SIGTERM'); await s.exited })
    await waitFor(() => s.stderr().includes('weft node started'), 'the started line', 20_000)
    const line = s.stderr().split('\n').find((l) => l.includes('weft node started')) as string
    expect(line).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z {2}INFO {3}weft node started {2}peerId=12D3KooW\S+ {2}network=[0-9a-f]{16}/)
    expect(s.logs).toEqual([]) // no JSON lines
  }, 30_000)
})
