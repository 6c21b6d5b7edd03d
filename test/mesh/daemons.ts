import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI, assertBuilt } from '../cli/helpers.js'
import { waitFor } from '../net/support.js'

export { waitFor }

/** A `weft up` child process on loopback, with its log lines and an API client. */
export interface DaemonProc {
  name: string
  dataDir: string
  proc: ChildProcess
  logs: Array<Record<string, unknown>>
  stderr: () => string
  exited: Promise<number | null>
  url: string
  token: string
  peerId: string
  listen: string[]
  get: <T = any>(path: string) => Promise<T>
  put: <T = any>(path: string, body: unknown) => Promise<T>
  stop: () => Promise<number | null>
}

export interface DaemonArgs { token: string, dataDir: string, name: string, peers?: string[], extra?: string[], /** Open a TUN device (needs root); off by default. */ tun?: boolean, /** `up` (default) or `bridge`. */ command?: 'up' | 'bridge', /** More environment for the process. */ env?: Record<string, string> }

export async function tempDir (prefix = 'weft-mesh-'): Promise<{ dir: string, cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  return { dir, cleanup: async () => { await rm(dir, { recursive: true, force: true }) } }
}

export function spawnUp (a: DaemonArgs): { proc: ChildProcess, logs: Array<Record<string, unknown>>, stderr: () => string, exited: Promise<number | null> } {
  assertBuilt()
  const bridge = a.command === 'bridge'
  const args = [CLI, a.command ?? 'up', '--token', a.token, '--data-dir', a.dataDir, '--hostname', a.name,
    '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', '--no-mdns', ...(a.tun === true || bridge ? [] : ['--no-tun']), ...(bridge ? [] : ['--sync-interval', '1s']), '--log-level', 'debug',
    ...(a.peers ?? []).flatMap((p) => ['--peer', p]), ...(a.extra ?? [])]
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, WEFT_TOKEN: '', WEFT_DATA_DIR: '', ...(a.env ?? {}) } })
  const logs: Array<Record<string, unknown>> = []
  let raw = ''
  let partial = ''
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
    raw += d
    partial += d
    const lines = partial.split('\n')
    partial = lines.pop() ?? ''
    for (const l of lines) {
      try { logs.push(JSON.parse(l) as Record<string, unknown>) } catch {}
    }
  })
  proc.stdout?.resume()
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => { resolve(code) }))
  return { proc, logs, stderr: () => raw, exited }
}

export async function startDaemon (a: DaemonArgs): Promise<DaemonProc> {
  const s = spawnUp(a)
  let dead = false
  void s.exited.then(() => { dead = true })
  let endpoint: { url: string, peerId: string, listen: string[], pid: number } | undefined
  await waitFor(async () => {
    if (dead) throw new Error(`weft up (${a.name}) exited early:\n${s.stderr()}`)
    try {
      const e = JSON.parse(await readFile(join(a.dataDir, 'api.json'), 'utf8')) as typeof endpoint
      if (e?.pid === s.proc.pid) endpoint = e
    } catch {}
    return endpoint !== undefined
  }, `${a.name} to write api.json`, 30_000)
  const ep = endpoint as NonNullable<typeof endpoint>
  const token = (await readFile(join(a.dataDir, 'api.token'), 'utf8')).trim()
  const call = async (method: string, path: string, body?: unknown): Promise<any> => {
    const res = await fetch(`${ep.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    const json = await res.json() as unknown
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`)
    return json
  }
  return {
    name: a.name,
    dataDir: a.dataDir,
    proc: s.proc,
    logs: s.logs,
    stderr: s.stderr,
    exited: s.exited,
    url: ep.url,
    token,
    peerId: ep.peerId,
    listen: ep.listen,
    get: async (path) => await call('GET', path),
    put: async (path, body) => await call('PUT', path, body),
    stop: async () => {
      if (s.proc.exitCode === null && s.proc.signalCode === null) s.proc.kill('SIGTERM')
      return await s.exited
    }
  }
}

export interface MemberSummary { hostname: string, role: string, address?: string, dnsName?: string }

/** The part of a node's state that must agree across the network. */
export async function summary (d: DaemonProc): Promise<{ events: number, members: MemberSummary[] }> {
  const s = await d.get('/api/v1/state')
  const members = (s.view.members as Array<Record<string, unknown>>).map((m) => ({
    hostname: m.hostname as string, role: m.role as string, address: m.address as string | undefined, dnsName: m.dnsName as string | undefined
  })).sort((x, y) => (x.hostname < y.hostname ? -1 : 1))
  return { events: s.at.events as number, members }
}

/** True when every node has `n` members, each with an address, and all summaries are equal. */
export async function agreed (nodes: DaemonProc[], n: number): Promise<boolean> {
  const all = await Promise.all(nodes.map(summary))
  const first = JSON.stringify(all[0])
  return all.every((s) => s.members.length === n && s.members.every((m) => m.address !== undefined) && JSON.stringify(s) === first)
}
