import { existsSync } from 'node:fs'
/**
 * Network-namespace labs for system tests and benches (Linux, root).
 *
 * A lab is one Linux bridge and N network namespaces, each joined to the bridge by a veth pair
 * (the namespace side is called `eth0`, with `lo` up and a multicast route, so mDNS works across
 * the bridge). Processes started in a host get their own UTS namespace too, so each "machine"
 * has its own hostname. The bridge has no address on the host, so two labs with the same subnet
 * never collide; every name carries this process's pid (base 36) and a random suffix, so
 * parallel runs do not collide either, and a lab left behind by a run that was killed is swept
 * by the next one (its pid is dead).
 *
 * A namespace's 127.0.0.1 is its own: `http()` reaches a port on a host's loopback through a
 * small forwarder started in that namespace, listening on a unix socket in the lab directory
 * (filesystem sockets are not bound to a network namespace).
 *
 * `destroy()` stops every process the lab started (by process group, TERM then KILL), then
 * deletes the namespaces and the bridge. It is safe to call twice, and a process `exit` hook
 * does the same synchronously if a run ends without calling it.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, rmSync } from 'node:fs'
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'

export interface Support { ok: boolean, reason: string }

let cachedSupport: Support | undefined

/** Whether this machine can run a lab; when not, a reason to print with the skip. */
export function netnsSupport (): Support {
  cachedSupport ??= probe()
  return cachedSupport
}

function probe (): Support {
  if (process.platform !== 'linux') return { ok: false, reason: `network namespaces need Linux (this is ${process.platform})` }
  const uid = process.getuid?.()
  if (uid !== 0) return { ok: false, reason: `needs root for ip netns, veth pairs and a bridge (uid is ${String(uid)})` }
  const run = (cmd: string, args: string[]): string | undefined => {
    try {
      execFileSync(cmd, args, { stdio: 'pipe', timeout: 10_000 })
      return undefined
    } catch (err) {
      const e = err as { stderr?: Buffer, message: string }
      return (e.stderr?.toString().trim() ?? '') || e.message
    }
  }
  const noIp = run('ip', ['netns', 'list'])
  if (noIp !== undefined) return { ok: false, reason: `"ip netns" is unavailable (install iproute2): ${noIp}` }
  const noUnshare = run('unshare', ['--version'])
  if (noUnshare !== undefined) return { ok: false, reason: `"unshare" (util-linux) is missing; each node needs its own hostname: ${noUnshare}` }
  // Root in a container may still lack CAP_SYS_ADMIN / CAP_NET_ADMIN: try for real.
  const name = `wft-probe-${process.pid.toString(36)}`
  const noNs = run('ip', ['netns', 'add', name])
  if (noNs !== undefined) return { ok: false, reason: `cannot create a network namespace: ${noNs}` }
  const noUts = run('ip', ['netns', 'exec', name, 'unshare', '--uts', 'true'])
  run('ip', ['netns', 'del', name])
  if (noUts !== undefined) return { ok: false, reason: `cannot create a UTS namespace: ${noUts}` }
  return { ok: true, reason: '' }
}

export interface LabHost {
  index: number
  /** Network namespace name. */
  ns: string
  /** Host side of the veth pair (on the bridge); its link state is the host's cable. */
  hostVeth: string
  /** IPv4 address on eth0 inside the namespace. */
  ip: string
  /** The hostname processes started with `spawn` see. */
  hostname: string
}

export interface LabProc {
  host: LabHost
  pid: number
  child: ChildProcess
  /** Resolves with the exit code (or the signal name) once the process is gone. */
  exited: Promise<number | string | null>
  exitCode: number | string | null | undefined
  logFile?: string
}

export interface ExecResult { code: number | null, stdout: string, stderr: string }

export interface HttpResult { status: number, body: string }

export interface LabOptions {
  /** First three octets of the /24 the hosts share (default 10.77.0). Hosts are .11, .12, … */
  subnet?: string
  /** Hostname prefix (default "node"): hosts are node-1, node-2, … */
  hostnamePrefix?: string
}

const FORWARDER = `
const net = require('node:net'); const fs = require('node:fs')
const [path, port] = process.argv.slice(1)
try { fs.unlinkSync(path) } catch {}
net.createServer((c) => {
  const u = net.connect(Number(port), '127.0.0.1')
  c.pipe(u); u.pipe(c)
  u.on('error', () => c.destroy()); c.on('error', () => u.destroy())
}).listen(path, () => { process.stdout.write('ready\\n') })
`

function sh (cmd: string, args: readonly string[], timeoutMs = 20_000): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null
      resolve({ code, stdout, stderr: stderr !== '' ? stderr : err?.message ?? '' })
    })
  })
}

async function ip (...args: string[]): Promise<void> {
  const r = await sh('ip', args)
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')} failed: ${r.stderr.trim()}`)
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

const NS_NAME = /^wft-([0-9a-z]+)-([0-9a-z]{2})-\d+$/
const BRIDGE_NAME = /^wfl([0-9a-z]+)([0-9a-z]{2})br$/
const LAB_DIR = /^weft-lab-([0-9a-z]+)([0-9a-z]{2})-[A-Za-z0-9]{6}$/

/**
 * Delete namespaces, bridges and temporary dirs of labs whose creating process is gone (a run
 * killed before it could clean up), and kill the processes still running in those namespaces.
 */
export async function sweepStaleLabs (): Promise<string[]> {
  const swept: string[] = []
  const list = await sh('ip', ['netns', 'list'])
  for (const line of list.stdout.split('\n')) {
    const name = line.trim().split(/\s+/)[0] ?? ''
    const m = NS_NAME.exec(name)
    if (m === null || alive(parseInt(m[1] as string, 36))) continue
    // Processes a killed run left in the namespace (they keep it alive after `ip netns del`).
    const pids = await sh('ip', ['netns', 'pids', name])
    for (const pid of pids.stdout.split(/\s+/).filter((x) => /^\d+$/.test(x))) {
      try { process.kill(Number(pid), 'SIGKILL') } catch {}
    }
    if ((await sh('ip', ['netns', 'del', name])).code === 0) swept.push(name)
  }
  const links = await sh('ip', ['-o', 'link', 'show', 'type', 'bridge'])
  for (const line of links.stdout.split('\n')) {
    const name = /^\d+:\s+([^:@\s]+)/.exec(line)?.[1] ?? ''
    const m = BRIDGE_NAME.exec(name)
    if (m === null || alive(parseInt(m[1] as string, 36))) continue
    if ((await sh('ip', ['link', 'del', name])).code === 0) swept.push(name)
  }
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    const m = LAB_DIR.exec(name)
    if (m === null || alive(parseInt(m[1] as string, 36))) continue
    await rm(join(tmpdir(), name), { recursive: true, force: true }).catch(() => {})
    swept.push(name)
  }
  return swept
}

export class NetnsLab {
  readonly hosts: LabHost[] = []
  private readonly procs = new Set<LabProc>()
  private readonly forwarders = new Map<string, Promise<string>>()
  private destroyed = false
  private readonly onExit = (): void => { this.destroySync() }

  private constructor (readonly id: string, readonly dir: string, readonly bridge: string) {}

  /** A bridge and `n` namespaces on it. Throws (after cleaning up) when any step fails. */
  static async create (n: number, opts: LabOptions = {}): Promise<NetnsLab> {
    const support = netnsSupport()
    if (!support.ok) throw new Error(`network namespaces unavailable: ${support.reason}`)
    if (n < 1 || n > 200) throw new Error(`a lab has 1 to 200 hosts, not ${n}`)
    await sweepStaleLabs()
    const rand = Math.floor(Math.random() * 36 * 36).toString(36).padStart(2, '0')
    const pid36 = process.pid.toString(36)
    const id = `${pid36}${rand}`
    const dir = await mkdtemp(join(tmpdir(), `weft-lab-${id}-`))
    const lab = new NetnsLab(id, dir, `wfl${id}br`)
    process.once('exit', lab.onExit)
    const subnet = opts.subnet ?? '10.77.0'
    try {
      await ip('link', 'add', lab.bridge, 'type', 'bridge')
      // Snooping could hold back multicast until a querier shows up; a plain switch floods it.
      await ip('link', 'set', lab.bridge, 'type', 'bridge', 'mcast_snooping', '0')
      await ip('link', 'set', lab.bridge, 'up')
      for (let i = 0; i < n; i++) {
        const host: LabHost = {
          index: i,
          ns: `wft-${pid36}-${rand}-${i + 1}`,
          hostVeth: `wfl${id}h${i + 1}`,
          ip: `${subnet}.${11 + i}`,
          hostname: `${opts.hostnamePrefix ?? 'node'}-${i + 1}`
        }
        const peer = `wfl${id}p${i + 1}`
        await ip('netns', 'add', host.ns)
        lab.hosts.push(host)
        await ip('link', 'add', host.hostVeth, 'type', 'veth', 'peer', 'name', peer)
        await ip('link', 'set', peer, 'netns', host.ns)
        await ip('link', 'set', host.hostVeth, 'master', lab.bridge, 'up')
        await ip('-n', host.ns, 'link', 'set', peer, 'name', 'eth0')
        await ip('-n', host.ns, 'addr', 'add', `${host.ip}/24`, 'dev', 'eth0')
        await ip('-n', host.ns, 'link', 'set', 'eth0', 'up')
        await ip('-n', host.ns, 'link', 'set', 'lo', 'up')
        // No default route (the lab is a LAN with no way out), so multicast needs its own.
        await ip('-n', host.ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0')
      }
    } catch (err) {
      await lab.destroy()
      throw err
    }
    return lab
  }

  /**
   * One more namespace, NOT plugged into the bridge (no `eth0`, `ip` is empty): a machine behind
   * another host, to be wired up by the caller (e.g. a veth pair created straight into two
   * namespaces, which disappears with them). It is named like the others, so `destroy()` and the
   * sweep of killed runs delete it too. `setLink` does not apply to it.
   */
  async addStandaloneHost (hostname?: string): Promise<LabHost> {
    if (this.destroyed) throw new Error('the lab is destroyed')
    const i = this.hosts.length
    const [pid36, rand] = [this.id.slice(0, -2), this.id.slice(-2)]
    const host: LabHost = { index: i, ns: `wft-${pid36}-${rand}-${i + 1}`, hostVeth: '', ip: '', hostname: hostname ?? `node-${i + 1}` }
    await ip('netns', 'add', host.ns)
    this.hosts.push(host)
    await ip('-n', host.ns, 'link', 'set', 'lo', 'up')
    return host
  }

  /** Run a command in a host's namespace to completion. */
  async exec (host: LabHost, argv: readonly string[], timeoutMs = 20_000): Promise<ExecResult> {
    return await sh('ip', ['netns', 'exec', host.ns, ...argv], timeoutMs)
  }

  /**
   * Start a long-running process in a host's namespace, in its own UTS namespace with the host's
   * hostname and its own process group. stdout and stderr go to `logFile` when given.
   */
  spawn (host: LabHost, argv: readonly string[], opts: { logFile?: string, env?: NodeJS.ProcessEnv, cwd?: string } = {}): LabProc {
    if (this.destroyed) throw new Error('the lab is destroyed')
    const fd = opts.logFile !== undefined ? openSync(opts.logFile, 'a') : undefined
    const out = fd ?? 'ignore'
    const child = spawn('ip', ['netns', 'exec', host.ns, 'unshare', '--uts', 'sh', '-c', 'hostname "$0" && exec "$@"', host.hostname, ...argv], {
      detached: true,
      stdio: ['ignore', out, out],
      env: opts.env ?? process.env,
      cwd: opts.cwd
    })
    if (fd !== undefined) closeSync(fd)
    const proc: LabProc = {
      host,
      pid: child.pid ?? -1,
      child,
      exitCode: undefined,
      exited: new Promise((resolve) => {
        child.once('exit', (code, signal) => { proc.exitCode = code ?? signal; resolve(code ?? signal) })
        child.once('error', () => { proc.exitCode = null; resolve(null) })
      }),
      ...(opts.logFile !== undefined ? { logFile: opts.logFile } : {})
    }
    this.procs.add(proc)
    void proc.exited.then(() => { this.procs.delete(proc) })
    return proc
  }

  /** SIGTERM the process group, SIGKILL it after `graceMs`; resolves once it has exited. */
  async stop (proc: LabProc, graceMs = 5_000): Promise<void> {
    if (proc.exitCode !== undefined) return
    signalGroup(proc.pid, 'SIGTERM')
    const killer = setTimeout(() => { signalGroup(proc.pid, 'SIGKILL') }, graceMs)
    await proc.exited
    clearTimeout(killer)
  }

  /** Plug or unplug a host's cable (the host side of its veth pair). */
  async setLink (host: LabHost, up: boolean): Promise<void> {
    await ip('link', 'set', host.hostVeth, up ? 'up' : 'down')
  }

  /** A unix socket in the lab dir that reaches 127.0.0.1:<port> inside the host's namespace. */
  async forward (host: LabHost, port: number): Promise<string> {
    const key = `${host.index}:${port}`
    let p = this.forwarders.get(key)
    if (p === undefined) {
      p = this.startForwarder(host, port)
      this.forwarders.set(key, p)
      p.catch(() => { this.forwarders.delete(key) })
    }
    return await p
  }

  private async startForwarder (host: LabHost, port: number): Promise<string> {
    const path = join(this.dir, `fwd-${host.index + 1}-${port}.sock`)
    const child = spawn('ip', ['netns', 'exec', host.ns, process.execPath, '-e', FORWARDER, path, String(port)], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe']
    })
    const proc: LabProc = {
      host,
      pid: child.pid ?? -1,
      child,
      exitCode: undefined,
      exited: new Promise((resolve) => {
        child.once('exit', (code, signal) => { proc.exitCode = code ?? signal; resolve(code ?? signal) })
        child.once('error', () => { proc.exitCode = null; resolve(null) })
      })
    }
    this.procs.add(proc)
    void proc.exited.then(() => { this.procs.delete(proc) })
    await new Promise<void>((resolve, reject) => {
      let err = ''
      child.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d })
      child.stdout?.setEncoding('utf8').on('data', (d: string) => { if (d.includes('ready')) resolve() })
      void proc.exited.then((code) => { reject(new Error(`forwarder in ${host.ns} exited (${String(code)}): ${err.trim()}`)) })
    })
    child.stdout?.resume()
    child.stderr?.resume()
    return path
  }

  /** One HTTP request to 127.0.0.1:<port> inside the host's namespace. */
  async http (host: LabHost, port: number, method: string, path: string, opts: { headers?: Record<string, string>, body?: unknown, timeoutMs?: number } = {}): Promise<HttpResult> {
    const socketPath = await this.forward(host, port)
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body)
    return await new Promise((resolve, reject) => {
      const req = request({
        socketPath,
        path,
        method,
        agent: false,
        headers: { ...(body !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) } : {}), ...opts.headers },
        timeout: opts.timeoutMs ?? 5_000
      }, (res) => {
        let text = ''
        res.setEncoding('utf8').on('data', (d: string) => { text += d })
        res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: text }) })
        res.on('error', reject)
      })
      req.on('timeout', () => { req.destroy(new Error(`${method} ${path} in ${host.ns} timed out`)) })
      req.on('error', reject)
      req.end(body)
    })
  }

  /** Stop every process, delete the namespaces and the bridge, remove the lab dir. */
  async destroy (): Promise<void> {
    if (this.destroyed) return
    this.destroyed = true
    process.removeListener('exit', this.onExit)
    await Promise.all([...this.procs].map(async (p) => { await this.stop(p) }))
    for (const h of this.hosts) await sh('ip', ['netns', 'del', h.ns])
    // Deleting a namespace deletes its veth ends, and so their host peers; the bridge stays.
    await sh('ip', ['link', 'del', this.bridge])
    for (const h of this.hosts) if (h.hostVeth !== '') await sh('ip', ['link', 'del', h.hostVeth])
    // WEFT_KEEP_LAB_LOGS=<dir>: keep a copy of the lab dir (node logs, data dirs) for debugging.
    if (process.env.WEFT_KEEP_LAB_LOGS !== undefined) await cp(this.dir, join(process.env.WEFT_KEEP_LAB_LOGS, basename(this.dir)), { recursive: true }).catch(() => undefined)
    await rm(this.dir, { recursive: true, force: true })
  }

  /** The same, synchronously: for the process `exit` hook only. */
  private destroySync (): void {
    if (this.destroyed) return
    this.destroyed = true
    for (const p of this.procs) signalGroup(p.pid, 'SIGKILL')
    const quiet = (args: string[]): void => { try { execFileSync('ip', args, { stdio: 'ignore', timeout: 5_000 }) } catch {} }
    for (const h of this.hosts) quiet(['netns', 'del', h.ns])
    quiet(['link', 'del', this.bridge])
    try { rmSync(this.dir, { recursive: true, force: true }) } catch {}
  }
}

function signalGroup (pid: number, signal: NodeJS.Signals): void {
  if (pid <= 0) return
  try { process.kill(-pid, signal) } catch {}
}

/** Poll `cond` every `everyMs` until it holds; throw naming `what` at the deadline. */
export async function waitFor<T> (cond: () => Promise<T | undefined | false> | T | undefined | false, what: string | (() => string), timeoutMs: number, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastErr: unknown
  while (true) {
    try {
      const v = await cond()
      if (v !== undefined && v !== false) return v
    } catch (err) {
      lastErr = err
    }
    if (Date.now() > deadline) {
      const text = typeof what === 'function' ? what() : what
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${text}${lastErr !== undefined ? ` (last error: ${(lastErr as Error).message})` : ''}`)
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

export async function tail (file: string | undefined, lines = 20): Promise<string> {
  if (file === undefined) return ''
  const text = await readFile(file, 'utf8').catch(() => '')
  return text.split('\n').filter((l) => l !== '').slice(-lines).join('\n')
}

// ---- weft nodes in a lab --------------------------------------------------------------------

/** Runs `fn`; when it throws, the error carries the end of every node's log. */
export async function withNodeLogs<T> (nodes: readonly WeftNode[], fn: () => Promise<T>, lines = 20): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    const logs = await Promise.all(nodes.map(async (n) => `--- ${n.host.hostname} (${n.host.ns}) ---\n${await tail(n.proc.logFile, lines)}`))
    ;(err as Error).message += `\n${logs.join('\n')}`
    throw err
  }
}

/** The default `weft up` API address, inside each namespace. */
export const WEFT_API_PORT = 8080

export interface WeftNode {
  host: LabHost
  dataDir: string
  proc: LabProc
  /** When `weft up` was spawned (performance.now()). */
  spawnedAt: number
  apiToken?: string
}

export interface MemberSummary {
  author: string
  hostname: string
  cluster: string
  role: string
  roleStable: boolean
  address?: string
  dnsName?: string
}

export interface StateSummary {
  events: number
  lamport: number
  members: MemberSummary[]
  settings: Record<string, unknown>
}

/** `weft up --token T --data-dir D [extra]` in the host's namespace; logs go to D.log. */
/**
 * `asWeft` starts main.js through its `#!/bin/sh` line, as the `weft` executable starts, so the
 * daemon's V8 flags apply (the benches measure memory that way); tests run Node.js directly.
 */
export function startWeft (lab: NetnsLab, host: LabHost, cli: string, token: string, extra: readonly string[] = [], opts: { asWeft?: boolean } = {}): WeftNode {
  const dataDir = join(lab.dir, `data-${host.index + 1}`)
  const launcher = opts.asWeft === true ? ['/bin/sh'] : [process.execPath]
  const proc = lab.spawn(host, [...launcher, cli, 'up', '--token', token, '--data-dir', dataDir, ...extra], {
    logFile: `${dataDir}.log`,
    env: { ...process.env, WEFT_TOKEN: '', WEFT_DATA_DIR: '' }
  })
  return { host, dataDir, proc, spawnedAt: performance.now() }
}

/** Waits until the node wrote api.json and api.token (its API listens), and reads the token. */
export async function waitApi (node: WeftNode, timeoutMs: number): Promise<void> {
  node.apiToken = await waitFor(async () => {
    if (node.proc.exitCode !== undefined) throw new Error(`weft up in ${node.host.ns} exited (${String(node.proc.exitCode)}):\n${await tail(node.proc.logFile)}`)
    const endpoint = await readFile(join(node.dataDir, 'api.json'), 'utf8').catch(() => undefined)
    if (endpoint === undefined) return undefined
    return (await readFile(join(node.dataDir, 'api.token'), 'utf8')).trim()
  }, `the API of ${node.host.hostname}`, timeoutMs, 50)
}

export async function weftApi<T> (lab: NetnsLab, node: WeftNode, method: string, path: string, body?: unknown): Promise<T> {
  if (node.apiToken === undefined) throw new Error(`no API token for ${node.host.hostname} yet (call waitApi)`)
  const res = await lab.http(node.host, WEFT_API_PORT, method, `/api/v1${path}`, { headers: { Authorization: `Bearer ${node.apiToken}` }, body })
  if (res.status !== 200) throw new Error(`${method} ${path} on ${node.host.hostname}: HTTP ${res.status} ${res.body.slice(0, 300)}`)
  return JSON.parse(res.body) as T
}

interface StateResponseLike {
  at: { events: number, lamport: number }
  view: { members: Array<MemberSummary & Record<string, unknown>>, settings: { values: Record<string, unknown> } }
}

export async function stateOf (lab: NetnsLab, node: WeftNode): Promise<StateSummary> {
  const s = await weftApi<StateResponseLike>(lab, node, 'GET', '/state')
  return {
    events: s.at.events,
    lamport: s.at.lamport,
    members: s.view.members.map((m) => ({
      author: m.author,
      hostname: m.hostname,
      cluster: m.cluster,
      role: m.role,
      roleStable: m.roleStable,
      ...(m.address !== undefined ? { address: m.address } : {}),
      ...(m.dnsName !== undefined ? { dnsName: m.dnsName } : {})
    })),
    settings: s.view.settings.values
  }
}

/** Every id in the node's log, sorted (GET /events, page by page). */
export async function eventIdsOf (lab: NetnsLab, node: WeftNode): Promise<string[]> {
  const ids: string[] = []
  let from: number | null = 0
  while (from !== null) {
    const page: { events: Array<{ id: string }>, next: number | null } = await weftApi(lab, node, 'GET', `/events?from=${from}&limit=1000`)
    for (const e of page.events) ids.push(e.id)
    from = page.next
  }
  return ids.sort()
}

/**
 * Why the nodes do not agree yet (undefined when they do): every node must see the same `n`
 * members with the same roles, overlay addresses and DNS names, each with a role, an address
 * and a name, and no address or name twice.
 */
export function disagreement (states: readonly StateSummary[], n: number): string | undefined {
  const key = (s: StateSummary): string => JSON.stringify(s.members.map((m) => [m.author, m.hostname, m.cluster, m.role, m.address, m.dnsName]))
  const first = states[0]
  if (first === undefined) return 'no states'
  for (const [i, s] of states.entries()) {
    if (s.members.length !== n) return `node ${i + 1} sees ${s.members.length} members, not ${n}`
    const bad = s.members.find((m) => m.role === 'none' || m.address === undefined || m.dnsName === undefined)
    if (bad !== undefined) return `node ${i + 1}: ${bad.hostname} has role ${bad.role}, address ${String(bad.address)}, name ${String(bad.dnsName)}`
    if (key(s) !== key(first)) return `node ${i + 1} and node 1 disagree`
  }
  if (new Set(first.members.map((m) => m.address)).size !== n) return 'an overlay address is held twice'
  if (new Set(first.members.map((m) => m.dnsName)).size !== n) return 'a DNS name is held twice'
  return undefined
}

// ---- TCP transfers between hosts ------------------------------------------------------------

/**
 * A one-connection TCP sender/receiver (CommonJS, for `node -e`), so tests and benches need no
 * nc/iperf. `server <port>`: accepts one connection, counts (and with `hash`, sha256s) what
 * arrives, prints `{"bytes","ms","sha256"}` at its end (ms from the first byte to the end) and
 * exits. `client <addr> <port> <bytes> <seconds> <hash|nohash>`: connects (retrying while the
 * server is not listening yet, for up to 10 s), sends `bytes` bytes or, when `bytes` is 0, for
 * `seconds` s, in 64 KiB writes that wait for 'drain', ends the connection, waits for the
 * server to close, and prints the same JSON. With `hash` every chunk is fresh random data and
 * both sides print the sha256 of the whole stream; without it one random chunk is repeated
 * (no CPU spent on hashing: for throughput).
 */
export const TCP_TRANSFER = `
const net = require('node:net'); const crypto = require('node:crypto')
const [mode, ...args] = process.argv.slice(1)
const out = (o) => { process.stdout.write(JSON.stringify(o) + '\\n') }
if (mode === 'server') {
  const hash = args[1] === 'hash' ? crypto.createHash('sha256') : undefined
  const srv = net.createServer((c) => {
    srv.close()
    let bytes = 0; let t0
    c.on('data', (d) => { if (t0 === undefined) t0 = performance.now(); bytes += d.length; hash?.update(d) })
    c.on('end', () => { out({ bytes, ms: t0 === undefined ? 0 : performance.now() - t0, sha256: hash?.digest('hex') }); c.end() })
    c.on('error', (e) => { console.error(e.message); process.exit(1) })
  })
  srv.listen(Number(args[0]), '::', () => { process.stderr.write('listening\\n') })
} else {
  const [addr, port, total, seconds, h] = args
  const hashing = h === 'hash'
  const limit = Number(total); const deadline = performance.now() + Number(seconds) * 1000
  const hash = hashing ? crypto.createHash('sha256') : undefined
  const fixed = crypto.randomBytes(65536)
  const until = Date.now() + 10000
  const connect = () => {
    const c = net.connect(Number(port), addr)
    c.once('error', (e) => {
      if ((e.code === 'ECONNREFUSED' || e.code === 'EHOSTUNREACH') && Date.now() < until) { setTimeout(connect, 50); return }
      console.error(e.message); process.exit(1)
    })
    c.once('connect', () => {
      c.removeAllListeners('error'); c.on('error', (e) => { console.error(e.message); process.exit(1) })
      let bytes = 0; const t0 = performance.now()
      const more = () => (limit > 0 ? bytes < limit : performance.now() < deadline)
      const pump = () => {
        while (more()) {
          const n = limit > 0 ? Math.min(65536, limit - bytes) : 65536
          const chunk = hashing ? crypto.randomBytes(n) : fixed.subarray(0, n)
          hash?.update(chunk); bytes += n
          if (!c.write(chunk)) { c.once('drain', pump); return }
        }
        c.end()
        c.resume(); c.once('close', () => { out({ bytes, ms: performance.now() - t0, sha256: hash?.digest('hex') }) })
      }
      pump()
    })
  }
  connect()
}
`

export interface TcpSide { bytes: number, ms: number, sha256?: string }

/**
 * One TCP connection from `from` to `addr`:`port` (a server started in `to`'s namespace): sends
 * `bytes` bytes, or for `seconds` s when `bytes` is 0. Resolves with what each side counted;
 * throws with both sides' stderr when either fails. `mbps` is the receiver's MB/s (10^6 B).
 */
export async function tcpTransfer (lab: NetnsLab, from: LabHost, to: LabHost, addr: string, opts: { bytes?: number, seconds?: number, port?: number, hash?: boolean, timeoutMs?: number } = {}): Promise<{ sent: TcpSide, received: TcpSide, mbps: number }> {
  const port = String(opts.port ?? 5201)
  const hash = opts.hash === true ? 'hash' : 'nohash'
  const timeoutMs = opts.timeoutMs ?? 60_000
  const server = lab.exec(to, [process.execPath, '-e', TCP_TRANSFER, 'server', port, hash], timeoutMs)
  const client = lab.exec(from, [process.execPath, '-e', TCP_TRANSFER, 'client', addr, port, String(opts.bytes ?? 0), String(opts.seconds ?? 5), hash], timeoutMs)
  const [s, c] = await Promise.all([server, client])
  if (s.code !== 0 || c.code !== 0) {
    throw new Error(`TCP transfer ${from.hostname} -> ${addr}:${port} failed: client exit ${String(c.code)} (${c.stderr.trim()}), server exit ${String(s.code)} (${s.stderr.trim()})`)
  }
  const received = JSON.parse(s.stdout.trim()) as TcpSide
  const sent = JSON.parse(c.stdout.trim()) as TcpSide
  return { sent, received, mbps: received.ms > 0 ? received.bytes / received.ms / 1000 : 0 }
}

/** What a test with TUN devices in namespaces needs: ip netns, root, and /dev/net/tun. */
export function tunNetnsSupport (): { ok: boolean, reason: string } {
  const s = netnsSupport()
  if (!s.ok) return s
  if (!existsSync('/dev/net/tun')) return { ok: false, reason: '/dev/net/tun does not exist (modprobe tun)' }
  return { ok: true, reason: '' }
}
