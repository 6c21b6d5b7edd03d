import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { K3sProcess, k3sPaths, type K3sLogger, type K3sProcessOptions } from '../../src/adapters/k3s-process.js'
import { isK3sWait, planK3s, type K3sPlan } from '../../src/projections/k3s-plan.js'
import { k3sClusterToken } from '../../src/log/token.js'
import { LogBuilder, join as joinBody } from '../projections/support.js'
import { TEST_TOKEN } from '../support/fixtures.js'
import { waitFor } from '../net/support.js'

const FAKE = fileURLToPath(new URL('./fake-k3s.mjs', import.meta.url))
const TOKEN = k3sClusterToken(TEST_TOKEN, 'default')

interface Entry { level: string, obj: Record<string, unknown>, msg: string }
interface Record_ { event: 'start' | 'term', pid: number, argv: string[], env: Record<string, string>, config: Record<string, string> | null, configMode: string | null }

function recorder (): K3sLogger & { entries: Entry[] } {
  const entries: Entry[] = []
  const at = (level: string) => (obj: object, msg: string): void => { entries.push({ level, obj: obj as Record<string, unknown>, msg }) }
  return { entries, debug: () => {}, info: at('info'), warn: at('warn'), error: at('error') }
}

let root: string
let n = 0
const running: K3sProcess[] = []

beforeAll(() => {
  chmodSync(FAKE, 0o755)
  root = mkdtempSync(join(tmpdir(), 'weft-k3s-'))
})
afterEach(async () => { await Promise.all(running.splice(0).map(async (p) => { await p.stop() })) })
afterAll(() => { rmSync(root, { recursive: true, force: true }) })

interface Setup { dataDir: string, recordFile: string, kubeconfig: string, log: ReturnType<typeof recorder>, k3s: K3sProcess }

function setup (extra: Partial<K3sProcessOptions> & { env?: Record<string, string> } = {}, dataDir = join(root, `node${n++}`)): Setup {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  const recordFile = join(dataDir, 'record.jsonl')
  const kubeconfig = join(dataDir, 'k3s.yaml')
  const log = recorder()
  const k3s = new K3sProcess({
    dataDir,
    k3sBin: FAKE,
    clusterToken: (c) => k3sClusterToken(TEST_TOKEN, c),
    log,
    kubeconfigPath: kubeconfig,
    backoff: { initialMs: 50, maxMs: 200 },
    stopGraceMs: 2_000,
    settleMs: 0,
    ...extra,
    env: { FAKE_K3S_RECORD: recordFile, ...extra.env }
  })
  running.push(k3s)
  return { dataDir, recordFile, kubeconfig, log, k3s }
}

function records (file: string): Record_[] {
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record_)
}
const starts = (file: string): Record_[] => records(file).filter((r) => r.event === 'start')

/** Every author appends an event that has seen everything (the whole cluster follows), then all sync. */
function everyoneCatchesUp (b: LogBuilder, authors: readonly number[]): void {
  for (const a of authors) b.ack(a, 'default', { seesAll: true })
  b.syncAll()
}

function plan (p: ReturnType<typeof planK3s>): K3sPlan {
  if (isK3sWait(p)) throw new Error(`waits: ${p.wait}`)
  return p
}

/** A plan by hand, for the supervisor's own behaviour. */
function handPlan (dataDir: string, role: K3sPlan['role'], ip = '10.1.0.9', extra: string[] = []): K3sPlan {
  const config = k3sPaths(dataDir).config
  const url = 'https://10.1.0.1:6443'
  const node = ['--node-ip', ip, '--flannel-iface', 'weft0']
  const args = role === 'init'
    ? ['server', '--config', config, '--cluster-init', ...node, '--tls-san', ip, ...extra]
    : role === 'server' ? ['server', '--config', config, '--server', url, ...node, '--tls-san', ip, ...extra] : ['agent', '--config', config, '--server', url, ...node, ...extra]
  return { role, cluster: 'default', nodeIp: ip, master: 'aa', args, ...(role === 'init' ? {} : { serverUrl: url }) }
}

describe('K3sProcess with a stand-in k3s', () => {
  it('runs the exact command lines of a 4-node cluster with serverCount=3, the token only in a 0600 config file', async () => {
    const b = new LogBuilder(4)
    b.setting(0, 'serverCount', 3)
    for (let a = 0; a < 4; a++) {
      b.append(a, 'node.join', joinBody(`n${a}`), { seesAll: true })
      b.append(a, 'ip.claim', { addr: `10.1.0.${a + 1}` })
    }
    everyoneCatchesUp(b, [0, 1, 2, 3])
    const nodes = [0, 1, 2, 3].map(() => setup())
    const plans = nodes.map((x, a) => plan(planK3s(b.stateOf(a), b.hex(a), { tunName: 'weft0', configPath: k3sPaths(x.dataDir).config })))
    // The daemon's own environment: the network token and stray k3s settings must not reach k3s.
    const saved = { WEFT_TOKEN: process.env.WEFT_TOKEN, K3S_URL: process.env.K3S_URL }
    process.env.WEFT_TOKEN = 'weft1secret'
    process.env.K3S_URL = 'https://elsewhere.example:6443'
    try {
      await Promise.all(nodes.map(async (x, a) => { await x.k3s.apply(plans[a] as K3sPlan) }))
    } finally {
      for (const [k, v] of Object.entries(saved)) { if (v === undefined) Reflect.deleteProperty(process.env, k); else process.env[k] = v }
    }
    await waitFor(() => nodes.every((x) => starts(x.recordFile).length === 1), 'four k3s starts')
    await waitFor(() => nodes.every((x) => existsSync(k3sPaths(x.dataDir).sentinel)), 'four sentinels')

    const url = 'https://10.1.0.1:6443'
    const argv = nodes.map((x) => (starts(x.recordFile)[0] as Record_).argv)
    expect(argv).toEqual([
      ['server', '--config', k3sPaths(nodes[0]!.dataDir).config, '--cluster-init', '--node-ip', '10.1.0.1', '--flannel-iface', 'weft0', '--tls-san', '10.1.0.1'],
      ['server', '--config', k3sPaths(nodes[1]!.dataDir).config, '--server', url, '--node-ip', '10.1.0.2', '--flannel-iface', 'weft0', '--tls-san', '10.1.0.2'],
      ['server', '--config', k3sPaths(nodes[2]!.dataDir).config, '--server', url, '--node-ip', '10.1.0.3', '--flannel-iface', 'weft0', '--tls-san', '10.1.0.3'],
      ['agent', '--config', k3sPaths(nodes[3]!.dataDir).config, '--server', url, '--node-ip', '10.1.0.4', '--flannel-iface', 'weft0']
    ])
    for (const [a, x] of nodes.entries()) {
      const r = starts(x.recordFile)[0] as Record_
      // The token: in the config file (mode 0600) and nowhere else.
      expect(r.config).toEqual(a < 3 ? { token: TOKEN, 'write-kubeconfig': x.kubeconfig } : { token: TOKEN })
      expect(r.configMode).toBe('600')
      expect(r.argv.join(' ')).not.toContain(TOKEN)
      expect(r.env).toEqual({})
      expect(statSync(k3sPaths(x.dataDir).dir).mode & 0o777).toBe(0o700)
      const sentinel = JSON.parse(readFileSync(k3sPaths(x.dataDir).sentinel, 'utf8')) as Record<string, unknown>
      expect(sentinel).toMatchObject({ role: plans[a]?.role, cluster: 'default', nodeIp: `10.1.0.${a + 1}` })
      // The role, not the server it joined through (that one may stop or move).
      expect(sentinel.serverUrl).toBeUndefined()
      expect(x.k3s.status()).toMatchObject({ state: 'running', role: plans[a]?.role, restarts: 0, pid: r.pid })
    }
    // The init master reads the kubeconfig k3s wrote; an agent has none to give.
    await waitFor(async () => (await nodes[0]!.k3s.readKubeconfig()) !== undefined, 'the kubeconfig')
    expect(await nodes[0]!.k3s.readKubeconfig()).toContain('server: https://127.0.0.1:6443')
    expect(await nodes[3]!.k3s.readKubeconfig()).toBeUndefined()
  })

  it('starts nothing while the decision is tentative, then starts once it is stable', async () => {
    const b = new LogBuilder(3)
    b.append(0, 'node.join', joinBody('n0'))
    b.append(1, 'node.join', joinBody('n1', 'default', 'master'))
    b.append(2, 'node.join', joinBody('n2'))
    for (let a = 0; a < 3; a++) b.append(a, 'ip.claim', { addr: `10.1.0.${a + 1}` })
    b.syncAll()
    const x = setup()
    const opts = { tunName: 'weft0', configPath: k3sPaths(x.dataDir).config }
    const tentative = planK3s(b.stateOf(1), b.hex(1), opts)
    expect(isK3sWait(tentative)).toBe(true)
    await x.k3s.apply(tentative)
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(records(x.recordFile)).toEqual([])
    expect(existsSync(k3sPaths(x.dataDir).sentinel)).toBe(false)
    expect(existsSync(k3sPaths(x.dataDir).config)).toBe(false)
    expect(x.k3s.status()).toMatchObject({ state: 'waiting', reason: expect.stringContaining('tentative') })

    everyoneCatchesUp(b, [0, 1, 2])
    await x.k3s.apply(planK3s(b.stateOf(1), b.hex(1), opts))
    await waitFor(() => starts(x.recordFile).length === 1, 'the start')
    expect(starts(x.recordFile)[0]?.argv.slice(0, 4)).toEqual(['server', '--config', opts.configPath, '--cluster-init'])
  })

  it('restarts k3s with exponential backoff when it exits, and from the start delay again after a long run', async () => {
    // A node process takes a while to start and exit under load: no reset in this part.
    const x = setup({ env: { FAKE_K3S_EXIT_CODE: '3' }, backoff: { initialMs: 50, maxMs: 200, resetAfterMs: 60_000 } })
    await x.k3s.apply(handPlan(x.dataDir, 'agent'))
    await waitFor(() => starts(x.recordFile).length >= 5, 'five starts')
    const exits = x.log.entries.filter((e) => e.msg.startsWith('k3s exited'))
    expect(exits.slice(0, 4).map((e) => e.obj.restartInMs)).toEqual([50, 100, 200, 200])
    expect(exits[0]?.obj).toMatchObject({ code: 3, signal: null })
    expect(x.k3s.status().restarts).toBeGreaterThanOrEqual(4)
    // The same argv every time.
    expect(new Set(starts(x.recordFile).map((r) => r.argv.join(' '))).size).toBe(1)
    await x.k3s.stop()

    // Runs longer than resetAfterMs: every restart comes after the first delay.
    const y = setup({ env: { FAKE_K3S_EXIT_CODE: '1', FAKE_K3S_EXIT_AFTER_MS: '250' }, backoff: { initialMs: 50, maxMs: 200, resetAfterMs: 150 } })
    await y.k3s.apply(handPlan(y.dataDir, 'agent'))
    await waitFor(() => y.log.entries.filter((e) => e.msg.startsWith('k3s exited')).length >= 3, 'three exits')
    expect(y.log.entries.filter((e) => e.msg.startsWith('k3s exited')).slice(0, 3).map((e) => e.obj.restartInMs)).toEqual([50, 50, 50])
  })

  it('restarts a k3s that was killed from outside', async () => {
    const x = setup()
    await x.k3s.apply(handPlan(x.dataDir, 'server'))
    await waitFor(() => starts(x.recordFile).length === 1, 'the start')
    const first = (starts(x.recordFile)[0] as Record_).pid
    process.kill(first, 'SIGKILL')
    await waitFor(() => starts(x.recordFile).length === 2, 'the restart')
    expect((starts(x.recordFile)[1] as Record_).pid).not.toBe(first)
    expect(x.log.entries.find((e) => e.msg.startsWith('k3s exited'))?.obj).toMatchObject({ signal: 'SIGKILL', restartInMs: 50 })
    await waitFor(() => x.k3s.status().state === 'running', 'running again')
  })

  it('the sentinel refuses a later plan under another role: nothing is started for it', async () => {
    const dataDir = join(root, `node${n++}`)
    const first = setup({}, dataDir)
    await first.k3s.apply(handPlan(dataDir, 'agent'))
    await waitFor(() => existsSync(k3sPaths(dataDir).sentinel) && starts(first.recordFile).length === 1, 'the start and the sentinel')
    // While it runs, the log makes it a server: refused, and the running agent is left alone.
    await first.k3s.apply(handPlan(dataDir, 'server'))
    expect(first.k3s.status()).toMatchObject({ state: 'refused', role: 'agent', reason: expect.stringContaining('bootstrapped as agent') })
    expect(first.log.entries.some((e) => e.level === 'error' && e.msg.includes('never bootstraps twice'))).toBe(true)
    expect(starts(first.recordFile)).toHaveLength(1)
    expect(records(first.recordFile).filter((r) => r.event === 'term')).toEqual([])
    await first.k3s.stop()
    expect(records(first.recordFile).filter((r) => r.event === 'term')).toHaveLength(1)

    // The node restarts and the log says init: refused, not started.
    const again = setup({}, dataDir)
    await again.k3s.apply(handPlan(dataDir, 'init'))
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(starts(again.recordFile)).toHaveLength(1)
    expect(again.k3s.status()).toMatchObject({ state: 'refused', sentinel: { role: 'agent', cluster: 'default' } })
    expect(again.log.entries.filter((e) => e.level === 'error').map((e) => e.msg).join('\n')).toMatch(/refused: .*init \(it bootstrapped as agent\)/)
    // Under its recorded role it starts again at once.
    await again.k3s.apply(handPlan(dataDir, 'agent'))
    await waitFor(() => starts(again.recordFile).length === 2, 'the restart under the recorded role')
    await again.k3s.stop()
    // Init and server are both k3s servers with an etcd member: a server that takes over as init
    // (dynamicRoles) starts with --cluster-init on its datastore; the sentinel keeps its first role.
    const serverDir = join(root, `node${n++}`)
    const server = setup({}, serverDir)
    await server.k3s.apply(handPlan(serverDir, 'server'))
    await waitFor(() => existsSync(k3sPaths(serverDir).sentinel) && starts(server.recordFile).length === 1, 'the server')
    await server.k3s.apply(handPlan(serverDir, 'init'))
    await waitFor(() => starts(server.recordFile).length === 2, 'the restart as init')
    expect(starts(server.recordFile)[1]?.argv).toContain('--cluster-init')
    expect(server.k3s.status()).toMatchObject({ state: 'running', role: 'init', sentinel: { role: 'server' } })
    await server.k3s.apply(handPlan(serverDir, 'agent'))
    expect(server.k3s.status()).toMatchObject({ state: 'refused', role: 'init' })
    // A damaged sentinel also stops it from starting.
    await again.k3s.stop()
    writeFileSync(k3sPaths(dataDir).sentinel, '{"role": "agent"')
    const damaged = setup({}, dataDir)
    await damaged.k3s.apply(handPlan(dataDir, 'agent'))
    expect(damaged.k3s.status()).toMatchObject({ state: 'refused', reason: expect.stringContaining('damaged') })
  })

  it('restarts with new arguments under the same role, keeps running while the log is unsure, stops with SIGTERM', async () => {
    const x = setup()
    await x.k3s.apply(handPlan(x.dataDir, 'agent', '10.1.0.9'))
    await waitFor(() => starts(x.recordFile).length === 1, 'the start')
    await x.k3s.apply({ wait: 'the k3s roles of cluster default are tentative: acting only on a stable decision', role: 'agent' })
    expect(x.k3s.status()).toMatchObject({ state: 'running', reason: expect.stringContaining('keeps running') })
    await x.k3s.apply(handPlan(x.dataDir, 'agent', '10.1.0.9', ['--node-label', 'zone=a']))
    await waitFor(() => starts(x.recordFile).length === 2, 'the restart')
    const rs = records(x.recordFile)
    expect(rs.map((r) => r.event)).toEqual(['start', 'term', 'start'])
    expect(rs[2]?.argv.slice(-2)).toEqual(['--node-label', 'zone=a'])
    expect(x.k3s.status()).toMatchObject({ state: 'running', restarts: 1 })
    // Another server to join through is not a new run: k3s already knows the servers.
    const moved = handPlan(x.dataDir, 'agent', '10.1.0.9', ['--node-label', 'zone=a'])
    await x.k3s.apply({ ...moved, serverUrl: 'https://10.1.0.7:6443', args: moved.args.map((v) => (v === moved.serverUrl ? 'https://10.1.0.7:6443' : v)) })
    expect(x.k3s.status()).toMatchObject({ state: 'running', restarts: 1 })
    await x.k3s.stop()
    expect(records(x.recordFile).map((r) => r.event)).toEqual(['start', 'term', 'start', 'term'])
    expect(x.k3s.status().state).toBe('stopped')
  })

  it('SIGKILLs a k3s that ignores SIGTERM after the grace period', async () => {
    const x = setup({ env: { FAKE_K3S_IGNORE_TERM: '1' }, stopGraceMs: 300 })
    await x.k3s.apply(handPlan(x.dataDir, 'agent'))
    await waitFor(() => starts(x.recordFile).length === 1, 'the start')
    const t0 = Date.now()
    await x.k3s.stop()
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290)
    expect(x.log.entries.some((e) => e.msg.includes('SIGKILL'))).toBe(true)
    expect(x.k3s.status().lastExit).toMatchObject({ signal: 'SIGKILL' })
  })

  it('waits for the settle time before the first bootstrap only', async () => {
    const x = setup({ settleMs: 400 })
    const t0 = Date.now()
    await x.k3s.apply(handPlan(x.dataDir, 'init'))
    expect(x.k3s.status().state).toBe('settling')
    await waitFor(() => starts(x.recordFile).length === 1, 'the start')
    expect(Date.now() - t0).toBeGreaterThanOrEqual(390)
    await x.k3s.stop()
    // Bootstrapped: a restart of the node starts k3s at once.
    const again = setup({ settleMs: 60_000 }, x.dataDir)
    await again.k3s.apply(handPlan(x.dataDir, 'init'))
    await waitFor(() => starts(again.recordFile).length === 2, 'the second start')
  })

  it('says clearly when the binary is missing, and keeps trying', async () => {
    const x = setup({ k3sBin: join(root, 'no-such-k3s') })
    await x.k3s.apply(handPlan(x.dataDir, 'agent'))
    await waitFor(() => x.log.entries.some((e) => e.level === 'error' && String(e.obj.err).includes('not found')), 'the error')
    expect(x.k3s.status().state).toBe('backoff')
    expect(existsSync(k3sPaths(x.dataDir).sentinel)).toBe(false)
  })
})
