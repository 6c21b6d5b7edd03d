import { spawn as nodeSpawn } from 'node:child_process'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createRequire } from 'node:module'
import { z } from 'zod'
import { isK3sWait, type K3sPlan, type K3sRunRole, type K3sWait } from '../projections/k3s-plan.js'
import { replacePrivateFile } from './private-file.js'

/** Where k3s writes the admin kubeconfig unless told otherwise. */
export const DEFAULT_KUBECONFIG_PATH = '/etc/rancher/k3s/k3s.yaml'

export interface K3sPaths {
  /** `<data dir>/k3s`, mode 0700. */
  dir: string
  /** The k3s config file (`--config`): the cluster token and where to write the kubeconfig; mode 0600. */
  config: string
  /** `bootstrapped.json`: the role this node first started k3s under. */
  sentinel: string
}

export function k3sPaths (dataDir: string): K3sPaths {
  const dir = join(dataDir, 'k3s')
  return { dir, config: join(dir, 'config.yaml'), sentinel: join(dir, 'bootstrapped.json') }
}

/** The part of a pino logger the adapter uses. */
export interface K3sLogger {
  debug?: (obj: object, msg: string) => void
  info: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
  error: (obj: object, msg: string) => void
}

/** The part of a ChildProcess the supervisor uses (tests may hand in a stand-in). */
export interface K3sChild {
  readonly pid?: number | undefined
  readonly stdout?: NodeJS.ReadableStream | null
  readonly stderr?: NodeJS.ReadableStream | null
  kill: (signal?: NodeJS.Signals) => boolean
  on: ((event: 'spawn', fn: () => void) => unknown) &
  ((event: 'error', fn: (err: Error) => void) => unknown) &
  ((event: 'exit', fn: (code: number | null, signal: NodeJS.Signals | null) => void) => unknown)
}

export type K3sSpawn = (bin: string, args: readonly string[], opts: { env: NodeJS.ProcessEnv }) => K3sChild

export interface K3sTimers {
  setTimeout: (fn: () => void, ms: number) => unknown
  clearTimeout: (handle: unknown) => void
}

export interface K3sBackoff {
  /** First restart delay (default 1 s); doubled after every exit in a row. */
  initialMs?: number
  /** Upper bound (default 60 s). */
  maxMs?: number
  /** A run at least this long resets the delay to `initialMs` (default 2 × maxMs). */
  resetAfterMs?: number
}

export interface K3sProcessOptions {
  /** The weft data dir; the adapter's files live in `<dataDir>/k3s/`. */
  dataDir: string
  /** The k3s binary (`--k3s-bin`), a path or a name on PATH (default `k3s`). */
  k3sBin?: string
  /** The k3s token of a cluster: `(c) => k3sClusterToken(networkToken, c)`. Written to the config file only. */
  clusterToken: (cluster: string) => string
  log: K3sLogger
  /** Where k3s servers write the admin kubeconfig (default /etc/rancher/k3s/k3s.yaml). */
  kubeconfigPath?: string
  /** Added to the environment of k3s (tests point the stand-in at its record file). */
  env?: Record<string, string>
  backoff?: K3sBackoff
  /** SIGTERM, then SIGKILL after this long (default 30 s). */
  stopGraceMs?: number
  /**
   * Before the very first start (no sentinel yet) a plan must stay the same this long (default
   * 10 s): a node that just booted may see itself alone until its first sync, and a bootstrap
   * cannot be taken back. Restarts under the recorded role start at once.
   */
  settleMs?: number
  spawn?: K3sSpawn
  now?: () => number
  timers?: K3sTimers
}

const SentinelSchema = z.strictObject({
  role: z.enum(['init', 'server', 'agent']),
  cluster: z.string().min(1),
  /** Written by earlier versions; informational only, never compared. */
  serverUrl: z.string().optional(),
  nodeIp: z.string().optional(),
  bootstrappedAt: z.string()
})

/** What `<data dir>/k3s/bootstrapped.json` records: the role k3s first ran under. */
export type K3sSentinel = z.infer<typeof SentinelSchema>

export type K3sState = 'waiting' | 'settling' | 'starting' | 'running' | 'backoff' | 'refused' | 'stopped'

export interface K3sStatus {
  state: K3sState
  /** Why nothing runs (waiting, refused), or what the log says while k3s keeps running. */
  reason?: string
  role?: K3sRunRole
  cluster?: string
  serverUrl?: string
  args?: readonly string[]
  pid?: number
  /** Starts after the first one (restarts after an exit, or for new arguments). */
  restarts: number
  lastExit?: { code: number | null, signal: string | null, at: number }
  /** When the next restart is due (state backoff). */
  restartAt?: number
  sentinel?: K3sSentinel
}

const TAIL_LINES = 20

/**
 * The same k3s run: same cluster, role and arguments, except which server `--server` names. That
 * URL is only how a node first reaches the cluster; once joined, k3s keeps its own list of the
 * servers, so a running k3s is not restarted because another server is now the one to join.
 */
function sameRun (a: K3sPlan, b: K3sPlan): boolean {
  const at = (args: readonly string[], i: number): string | undefined => (args[i - 1] === '--server' ? '<server>' : args[i])
  return a.cluster === b.cluster && a.role === b.role && a.args.length === b.args.length && a.args.every((_, i) => at(a.args, i) === at(b.args, i))
}

/**
 * Whether a node that bootstrapped as `recorded` may run as `planned`. The same role, or init and
 * server either way: both are k3s servers holding an etcd member, and a server restarted with
 * `--cluster-init` (the first server taking over with dynamicRoles) or an init master restarted
 * with `--server` keeps its existing datastore. An agent never becomes a server, nor the reverse.
 */
export function compatibleRoles (recorded: K3sRunRole, planned: K3sRunRole): boolean {
  return recorded === planned || (recorded !== 'agent' && planned !== 'agent')
}

const defaultSpawn: K3sSpawn = (bin, args, opts) => nodeSpawn(bin, [...args], { env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] })

const realTimers: K3sTimers = {
  setTimeout: (fn, ms) => { const t = setTimeout(fn, ms); t.unref(); return t },
  clearTimeout: (h) => { clearTimeout(h as NodeJS.Timeout) }
}

/**
 * Runs this node's k3s as the log decides, and keeps it running.
 *
 * - `apply(planK3s(...))` after every change of the log. A wait starts nothing; once k3s runs,
 *   a wait (the decision went tentative again, the master left) leaves it running: the node
 *   bootstrapped under a stable decision, and stopping k3s would only take its workloads down.
 * - New arguments under the same role (a new node address, new `--k3s-arg`s) restart it; another
 *   server to join (`--server`) does not, once k3s runs (see `sameRun`).
 * - `<data dir>/k3s/bootstrapped.json` records the role and cluster k3s first started under
 *   (written once the process has started). A later plan with another role (agent against
 *   init or server) or cluster is refused, logged as an error, and nothing is started for it: a
 *   node never bootstraps a second time under a different role (a running k3s keeps its role
 *   until the node is stopped). Init and server are both k3s servers: see `compatibleRoles`.
 * - The cluster token goes into `<data dir>/k3s/config.yaml` (mode 0600), never onto the command
 *   line or into the log.
 * - When k3s exits it is started again after 1 s, 2 s, 4 s … up to 60 s; a run of two minutes
 *   resets the delay. `stop()` sends SIGTERM, then SIGKILL after a grace period.
 */
export class K3sProcess {
  private readonly bin: string
  private readonly paths: K3sPaths
  private readonly now: () => number
  private readonly timers: K3sTimers
  private readonly spawnFn: K3sSpawn
  private readonly initialMs: number
  private readonly maxMs: number
  private readonly resetAfterMs: number

  private state: K3sState = 'waiting'
  private reason: string | undefined = 'no plan yet'
  /** The plan being supervised (the one k3s was last started with). */
  private current: K3sPlan | undefined
  private child: K3sChild | undefined
  private childExited: Promise<void> | undefined
  private pid: number | undefined
  private startedAt = 0
  private failures = 0
  private starts = 0
  private lastExit: K3sStatus['lastExit']
  private restartTimer: unknown
  private restartAt: number | undefined
  private settleTimer: unknown
  private settling: { plan: K3sPlan, since: number } | undefined
  private sentinel: K3sSentinel | null | undefined
  private sentinelError: string | undefined
  private sentinelWrite: Promise<void> | undefined
  private readonly tail: string[] = []
  private latest: K3sPlan | K3sWait | undefined
  private queue: Promise<void> = Promise.resolve()
  private queued = false
  private lastLogged: string | undefined
  private stopped = false

  constructor (private readonly opts: K3sProcessOptions) {
    this.bin = opts.k3sBin ?? 'k3s'
    this.paths = k3sPaths(opts.dataDir)
    this.now = opts.now ?? Date.now
    this.timers = opts.timers ?? realTimers
    this.spawnFn = opts.spawn ?? defaultSpawn
    this.initialMs = opts.backoff?.initialMs ?? 1_000
    this.maxMs = opts.backoff?.maxMs ?? 60_000
    this.resetAfterMs = opts.backoff?.resetAfterMs ?? 2 * this.maxMs
  }

  get kubeconfigPath (): string {
    return this.opts.kubeconfigPath ?? DEFAULT_KUBECONFIG_PATH
  }

  /**
   * Act on the latest plan. Calls made while one is being applied collapse into one more run
   * with the newest plan; the promise resolves once that run is done.
   */
  apply (plan: K3sPlan | K3sWait): Promise<void> {
    this.latest = plan
    if (this.queued) return this.queue
    this.queued = true
    this.queue = this.queue.then(async () => {
      this.queued = false
      try {
        await this.reconcile(this.latest as K3sPlan | K3sWait)
      } catch (err) {
        this.opts.log.error({ err: (err as Error).message }, 'k3s: could not apply the plan')
      }
    })
    return this.queue
  }

  status (): K3sStatus {
    const c = this.current
    return {
      state: this.state,
      ...(this.reason !== undefined ? { reason: this.reason } : {}),
      ...(c !== undefined ? { role: c.role, cluster: c.cluster, args: c.args, ...(c.serverUrl !== undefined ? { serverUrl: c.serverUrl } : {}) } : {}),
      ...(this.pid !== undefined ? { pid: this.pid } : {}),
      restarts: Math.max(0, this.starts - 1),
      ...(this.lastExit !== undefined ? { lastExit: this.lastExit } : {}),
      ...(this.restartAt !== undefined ? { restartAt: this.restartAt } : {}),
      ...(this.sentinel != null ? { sentinel: this.sentinel } : {})
    }
  }

  /**
   * The admin kubeconfig k3s wrote, while this node runs a k3s server (init or server);
   * undefined otherwise or before k3s has written it. For `serveKubeconfig`'s `read`.
   */
  async readKubeconfig (): Promise<string | undefined> {
    const role = this.current?.role
    if (role !== 'init' && role !== 'server') return undefined
    try {
      return await readFile(this.kubeconfigPath, 'utf8')
    } catch {
      return undefined
    }
  }

  /** SIGTERM, then SIGKILL after the grace period; no restart after this. */
  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.cancelTimers()
    await this.stopChild('stopping')
    await this.sentinelWrite
    this.state = 'stopped'
    this.reason = undefined
  }

  private note (level: 'info' | 'warn' | 'error', obj: object, msg: string): void {
    // The daemon applies a plan after every change of the log: say each thing once.
    const key = `${level}:${msg}:${JSON.stringify(obj)}`
    if (key === this.lastLogged) return
    this.lastLogged = key
    this.opts.log[level](obj, msg)
  }

  private async reconcile (plan: K3sPlan | K3sWait): Promise<void> {
    if (this.stopped) return
    await this.loadSentinel()
    if (isK3sWait(plan)) {
      this.settling = undefined
      this.cancelSettle()
      if (this.current !== undefined && this.state !== 'refused') {
        // Bootstrapped under a stable decision: keep running (and restarting) as it is.
        this.reason = `the log says: ${plan.wait}; k3s keeps running as ${this.current.role}`
        this.note('info', { reason: plan.wait, role: this.current.role }, 'k3s: the roles are not stable right now; k3s keeps running as it is')
        return
      }
      if (this.state !== 'refused' || this.current === undefined) {
        this.state = 'waiting'
        this.reason = plan.wait
      }
      this.note('info', { reason: plan.wait }, 'k3s: waiting')
      return
    }
    if (this.sentinelError !== undefined) {
      this.refuse(this.sentinelError, plan)
      return
    }
    const s = this.sentinel
    if (s != null && (!compatibleRoles(s.role, plan.role) || s.cluster !== plan.cluster)) {
      const what = s.cluster !== plan.cluster ? `cluster ${plan.cluster} (it bootstrapped in cluster ${s.cluster})` : `${plan.role} (it bootstrapped as ${s.role})`
      this.refuse(`the log now makes this node ${what}; a node never bootstraps twice under different roles, so k3s is not started for it. ` +
        `To really change it, uninstall k3s on this node (k3s-uninstall.sh or k3s-agent-uninstall.sh), delete ${this.paths.sentinel}, and restart weft`, plan)
      return
    }
    if (this.current !== undefined && sameRun(this.current, plan)) {
      if (this.state === 'refused') { this.state = this.child !== undefined ? 'running' : 'backoff'; this.reason = undefined }
      if (this.reason !== undefined && this.state !== 'waiting') this.reason = undefined
      return
    }
    if (s == null && this.opts.settleMs !== 0) {
      const settleMs = this.opts.settleMs ?? 10_000
      if (this.settling === undefined || !sameRun(this.settling.plan, plan)) {
        this.settling = { plan, since: this.now() }
        this.cancelSettle()
        this.settleTimer = this.timers.setTimeout(() => { this.settleTimer = undefined; void this.apply(this.latest as K3sPlan | K3sWait) }, settleMs)
        this.state = 'settling'
        this.reason = `first bootstrap as ${plan.role}: waiting ${settleMs} ms for the decision to settle`
        this.note('info', { role: plan.role, cluster: plan.cluster, settleMs }, 'k3s: stable role; starting k3s once it has held for the settle time')
        return
      }
      const elapsed = this.now() - this.settling.since
      if (elapsed < settleMs) {
        // Timers may fire a millisecond before the clock agrees: wait for the rest.
        if (this.settleTimer === undefined) this.settleTimer = this.timers.setTimeout(() => { this.settleTimer = undefined; void this.apply(this.latest as K3sPlan | K3sWait) }, Math.max(1, settleMs - elapsed))
        return
      }
    }
    this.settling = undefined
    this.cancelSettle()
    if (this.current !== undefined) {
      this.opts.log.info({ role: plan.role, from: this.current.args, to: plan.args }, 'k3s: new arguments; restarting k3s')
      this.cancelRestart()
      await this.stopChild('new arguments')
      this.failures = 0
    }
    this.current = plan
    this.reason = undefined
    await this.startChild()
  }

  private refuse (reason: string, plan: K3sPlan): void {
    this.settling = undefined
    this.cancelSettle()
    this.state = 'refused'
    this.reason = reason
    this.note('error', { role: plan.role, cluster: plan.cluster, sentinel: this.paths.sentinel, running: this.current?.role ?? 'nothing' }, `k3s: refused: ${reason}`)
  }

  private async loadSentinel (): Promise<void> {
    if (this.sentinel !== undefined) return
    let text: string
    try {
      text = await readFile(this.paths.sentinel, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') { this.sentinel = null; return }
      throw err
    }
    try {
      this.sentinel = SentinelSchema.parse(JSON.parse(text))
    } catch (err) {
      this.sentinel = null
      this.sentinelError = `${this.paths.sentinel} is damaged (${(err as Error).message.split('\n')[0] ?? ''}); it records the role this node bootstrapped k3s under, so nothing is started until it is fixed or deleted`
    }
  }

  private async writeConfig (plan: K3sPlan): Promise<void> {
    await mkdir(this.paths.dir, { recursive: true, mode: 0o700 })
    const doc: Record<string, string> = { token: this.opts.clusterToken(plan.cluster) }
    if (plan.role !== 'agent') doc['write-kubeconfig'] = this.kubeconfigPath
    // yaml is loaded here, with k3s, not by every CLI command that imports this file's constants.
    const { stringify } = createRequire(import.meta.url)('yaml') as typeof import('yaml')
    const text = `# Written by weft for cluster ${plan.cluster} on every start of k3s. Secret: the k3s token.\n${stringify(doc)}`
    await replacePrivateFile(this.paths.config, text)
  }

  private async writeSentinel (plan: K3sPlan): Promise<void> {
    const s: K3sSentinel = {
      role: plan.role,
      cluster: plan.cluster,
      // The role, not the server it first joined: that server may stop or move, and a plan that
      // names another one is the same bootstrap (see sameRun).
      nodeIp: plan.nodeIp,
      bootstrappedAt: new Date(this.now()).toISOString()
    }
    await replacePrivateFile(this.paths.sentinel, `${JSON.stringify(s, null, 2)}\n`)
    this.sentinel = s
    this.opts.log.info({ role: s.role, cluster: s.cluster, sentinel: this.paths.sentinel }, 'k3s: bootstrapped; the role is recorded and will not change')
  }

  private async startChild (): Promise<void> {
    const plan = this.current
    if (plan === undefined || this.stopped) return
    this.state = 'starting'
    this.restartAt = undefined
    try {
      await this.writeConfig(plan)
    } catch (err) {
      this.opts.log.error({ err: (err as Error).message, path: this.paths.config }, 'k3s: cannot write the config file')
      this.scheduleRestart()
      return
    }
    let child: K3sChild
    try {
      child = this.spawnFn(this.bin, plan.args, { env: { ...childEnv(process.env), ...this.opts.env } })
    } catch (err) {
      this.opts.log.error({ bin: this.bin, err: (err as Error).message }, 'k3s: cannot start')
      this.scheduleRestart()
      return
    }
    this.child = child
    this.starts++
    this.tail.length = 0
    for (const stream of [child.stdout, child.stderr]) {
      if (stream == null) continue
      let rest = ''
      stream.on('data', (chunk: Buffer | string) => {
        const lines = (rest + chunk.toString()).split('\n')
        rest = lines.pop() ?? ''
        for (const line of lines) this.line(line)
      })
    }
    let done = false
    this.childExited = new Promise<void>((resolve) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null, err?: Error): void => {
        if (done) return
        done = true
        resolve()
        this.exited(child, code, signal, err)
      }
      child.on('exit', (code, signal) => { finish(code, signal) })
      // A listener that stays: a second 'error' with none would crash the daemon.
      child.on('error', (err) => { finish(null, null, err) })
    })
    child.on('spawn', () => {
      if (this.child !== child) return
      this.pid = child.pid
      this.startedAt = this.now()
      this.state = 'running'
      this.opts.log.info({ pid: child.pid, role: plan.role, cluster: plan.cluster, bin: this.bin, args: plan.args }, 'k3s: started')
      if (this.sentinel == null && this.sentinelError === undefined && this.sentinelWrite === undefined) {
        this.sentinelWrite = this.writeSentinel(plan).catch((err: unknown) => {
          this.opts.log.error({ err: (err as Error).message, path: this.paths.sentinel }, 'k3s: cannot write the bootstrap sentinel')
        }).finally(() => { this.sentinelWrite = undefined })
      }
    })
  }

  private line (line: string): void {
    if (line.trim() === '') return
    this.tail.push(line)
    if (this.tail.length > TAIL_LINES) this.tail.shift()
    this.opts.log.debug?.({ k3s: line }, 'k3s output')
  }

  private exited (child: K3sChild, code: number | null, signal: NodeJS.Signals | null, err?: Error): void {
    if (this.child !== child) return
    this.child = undefined
    this.pid = undefined
    this.lastExit = { code, signal, at: this.now() }
    if (this.stopped || this.state === 'stopped') return
    const ranMs = this.state === 'running' ? this.now() - this.startedAt : 0
    if (ranMs >= this.resetAfterMs) this.failures = 0
    const notFound = (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT'
    const delay = this.scheduleRestart()
    this.opts.log[notFound ? 'error' : 'warn']({
      code,
      signal,
      ranMs,
      restartInMs: delay,
      ...(err !== undefined ? { err: notFound ? `${this.bin} not found: install k3s, or give its path with --k3s-bin` : err.message } : {}),
      ...(this.tail.length > 0 ? { tail: [...this.tail] } : {})
    }, 'k3s exited; restarting it after a delay')
  }

  /** Schedule the next start after the current backoff delay; returns the delay. */
  private scheduleRestart (): number {
    const delay = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.failures, 30))
    this.failures++
    this.state = 'backoff'
    this.restartAt = this.now() + delay
    this.cancelRestart()
    this.restartTimer = this.timers.setTimeout(() => {
      this.restartTimer = undefined
      this.queue = this.queue.then(async () => { if (!this.stopped && this.child === undefined) await this.startChild() })
    }, delay)
    return delay
  }

  private async stopChild (why: string): Promise<void> {
    const child = this.child
    const exited = this.childExited
    if (child === undefined || exited === undefined) return
    this.state = 'stopped'
    const graceMs = this.opts.stopGraceMs ?? 30_000
    this.opts.log.info({ pid: child.pid, why }, 'k3s: stopping (SIGTERM)')
    child.kill('SIGTERM')
    let timer: unknown
    const killed = await Promise.race([
      exited.then(() => false),
      new Promise<boolean>((resolve) => { timer = this.timers.setTimeout(() => { resolve(true) }, graceMs) })
    ])
    this.timers.clearTimeout(timer)
    if (killed) {
      this.opts.log.warn({ pid: child.pid, graceMs }, 'k3s did not stop in time; SIGKILL')
      child.kill('SIGKILL')
      await exited
    }
  }

  private cancelRestart (): void {
    if (this.restartTimer !== undefined) this.timers.clearTimeout(this.restartTimer)
    this.restartTimer = undefined
    this.restartAt = undefined
  }

  private cancelSettle (): void {
    if (this.settleTimer !== undefined) this.timers.clearTimeout(this.settleTimer)
    this.settleTimer = undefined
  }

  private cancelTimers (): void {
    this.cancelRestart()
    this.cancelSettle()
  }
}

/**
 * The daemon's environment without WEFT_* (WEFT_TOKEN is the network secret) and K3S_* (a stray
 * K3S_URL or K3S_TOKEN would override what the log decided: k3s reads them like its flags).
 */
export function childEnv (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('WEFT_') && !k.startsWith('K3S_')))
}
