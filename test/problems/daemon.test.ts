import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { formatToken, newToken } from '../../src/log/token.js'
import { weft } from '../cli/helpers.js'
import { startDaemon, tempDir, waitFor, type DaemonProc } from '../mesh/daemons.js'

describe('problems said out loud (daemon)', () => {
  const cleanups: Array<() => Promise<unknown>> = []
  afterAll(async () => { for (const c of cleanups.reverse()) await c() })

  it('two machines with one host name: the later one has hostname-taken in GET /status and human weft status, logged once at warn', async () => {
    const dir = await tempDir('weft-problems-')
    cleanups.push(dir.cleanup)
    const token = formatToken(newToken())
    const a: DaemonProc = await startDaemon({ token, dataDir: join(dir.dir, 'a'), name: 'web' })
    cleanups.push(a.stop)
    await waitFor(async () => (await a.get('/api/v1/status')).self.dnsName !== undefined, 'the first node to have its name', 20_000)
    const b: DaemonProc = await startDaemon({ token, dataDir: join(dir.dir, 'b'), name: 'web', peers: [a.listen[0] as string] })
    cleanups.push(b.stop)
    const problems = async (d: DaemonProc): Promise<Array<Record<string, unknown>>> => (await d.get('/api/v1/status')).problems
    await waitFor(async () => (await problems(b)).some((p) => p.code === 'hostname-taken'), 'the hostname-taken problem in status', 20_000)
    const p = (await problems(b)).find((x) => x.code === 'hostname-taken') as Record<string, unknown>
    expect(p).toMatchObject({ severity: 'warning', message: expect.stringContaining(`member ${a.peerId} (web) joined first`), fix: expect.stringMatching(/--hostname/) })
    expect(typeof p.since).toBe('number')
    // The first one keeps its name and has no such problem.
    expect((await problems(a)).map((x) => x.code)).not.toContain('hostname-taken')

    const human = await weft(['status', '--data-dir', b.dataDir])
    expect(human.code).toBe(0)
    expect(human.stdout).toMatch(/problems\s+WARNING hostname-taken: the host name "web" is taken/)
    expect(human.stdout).toMatch(/fix: give each machine its own name/)
    expect(human.stdout).toMatch(/\nk3s\s+off \(no --k3s\)/)

    // Asked again: still one warn line for it.
    await b.get('/api/v1/status')
    const warned = b.logs.filter((l) => l.problem === 'hostname-taken' && l.level === 40)
    expect(warned).toHaveLength(1)
    expect(warned[0]?.fix).toMatch(/--hostname/)
  }, 60_000)
})
