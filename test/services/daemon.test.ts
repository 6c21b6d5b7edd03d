import { createServer, connect, type Server } from 'node:net'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { formatToken, newToken } from '../../src/log/token.js'
import { weft } from '../cli/helpers.js'
import { startDaemon, tempDir, waitFor, type DaemonProc } from '../mesh/daemons.js'

/** `weft service expose/connect` against two running daemons, through their APIs. */
describe('weft service through running daemons', () => {
  const token = formatToken(newToken())
  const procs: DaemonProc[] = []
  let echo: Server | undefined
  let dir: { dir: string, cleanup: () => Promise<void> } | undefined
  afterAll(async () => {
    await Promise.all(procs.map(async (p) => await p.stop()))
    await new Promise<void>((resolve) => { if (echo === undefined) resolve(); else echo.close(() => { resolve() }) })
    await dir?.cleanup()
  })

  it('exposes an echo server on A and reaches it from B through a local listener', async () => {
    dir = await tempDir('weft-svc-')
    echo = createServer((s) => { s.pipe(s) })
    await new Promise<void>((resolve) => echo?.listen(0, '127.0.0.1', resolve))
    const echoPort = (echo.address() as { port: number }).port
    const a = await startDaemon({ token, dataDir: join(dir.dir, 'a'), name: 'a' })
    const b = await startDaemon({ token, dataDir: join(dir.dir, 'b'), name: 'b', peers: [a.listen[0] as string] })
    procs.push(a, b)
    const exposed = await weft(['service', 'expose', 'echo', `127.0.0.1:${echoPort}`, '--data-dir', a.dataDir, '--json'])
    expect(exposed.stderr).toBe('')
    expect(exposed.code).toBe(0)
    await waitFor(async () => {
      const ls = await weft(['service', 'ls', '--data-dir', b.dataDir, '--json'])
      return ls.code === 0 && ls.stdout.includes('"echo"')
    }, 'B to see the export')
    const connected = await weft(['service', 'connect', 'echo', '0', '--data-dir', b.dataDir, '--json'])
    expect(connected.code).toBe(0)
    const port = Number(/"listen":\s*"127\.0\.0\.1:(\d+)"/.exec(connected.stdout)?.[1])
    expect(port).toBeGreaterThan(0)
    const reply = await new Promise<string>((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => { s.end('hello through the mesh') })
      let got = ''
      s.setEncoding('utf8').on('data', (d: string) => { got += d }).on('end', () => { resolve(got) }).on('error', reject)
    })
    expect(reply).toBe('hello through the mesh')
  }, 60_000)
})
