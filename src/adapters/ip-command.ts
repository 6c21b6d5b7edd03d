/**
 * Typed wrappers over iproute2's `ip` command, run with `execFile` (no shell). Every argument is
 * validated first, so nothing a caller passes can be read as an option or a second command.
 * A failing command becomes a WeftError ERR_TUN (an `IpCommandError`) that carries the command
 * line, its exit code and its stderr; a missing `ip` says to install iproute2.
 */
import { execFile } from 'node:child_process'
import { WeftError } from '../log/errors.js'
import { parseCidr, parseIp } from '../projections/ip.js'

export interface IpOptions {
  /** Run in this network namespace (`ip -n <ns> …`). */
  netns?: string
  /** The `ip` binary (default `ip`, found on PATH). */
  bin?: string
  /** Kill the command after this long (default 10 s). */
  timeoutMs?: number
  signal?: AbortSignal
}

export class IpCommandError extends WeftError {
  readonly argv: readonly string[]
  readonly exitCode: number | undefined
  readonly stderr: string
  constructor (message: string, argv: readonly string[], exitCode: number | undefined, stderr: string, cause?: unknown) {
    super('ERR_TUN', message, { cause })
    this.name = 'IpCommandError'
    this.argv = argv
    this.exitCode = exitCode
    this.stderr = stderr
  }
}

export interface IpLink {
  name: string
  index: number
  mtu: number
  /** Link flags as `ip` prints them, e.g. ['POINTOPOINT', 'NOARP', 'UP', 'LOWER_UP']. */
  flags: string[]
  /** Operational state: 'UP', 'DOWN', 'UNKNOWN' (a TUN device that is up says UNKNOWN). */
  operstate: string
}

export interface IpRoute {
  dst: string
  dev?: string
  gateway?: string
  metric?: number
}

const IFNAME = /^[A-Za-z0-9_.:@%+=-]{1,15}$/
const NETNS = /^[A-Za-z0-9_.-]{1,64}$/

/** Run `ip <args>` (with `-n <ns>` first when `netns` is given) and return its stdout. */
export async function runIp (args: readonly string[], opts: IpOptions = {}): Promise<string> {
  const argv = opts.netns !== undefined ? ['-n', checkNetns(opts.netns), ...args] : [...args]
  const bin = opts.bin ?? 'ip'
  const line = `${bin} ${argv.join(' ')}`
  return await new Promise((resolve, reject) => {
    execFile(bin, argv, { timeout: opts.timeoutMs ?? 10_000, signal: opts.signal, maxBuffer: 16 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err === null) { resolve(stdout); return }
      const e = err as NodeJS.ErrnoException & { code?: string | number, killed?: boolean, signal?: string | null }
      if (e.code === 'ENOENT') {
        reject(new IpCommandError(`"${bin}" was not found: install iproute2 (e.g. apt-get install iproute2)`, argv, undefined, '', err))
      } else if (e.name === 'AbortError') {
        reject(new IpCommandError(`"${line}" was aborted`, argv, undefined, stderr, err))
      } else if (e.killed === true && typeof e.signal === 'string') {
        reject(new IpCommandError(`"${line}" did not finish in ${opts.timeoutMs ?? 10_000} ms (killed with ${e.signal})`, argv, undefined, stderr, err))
      } else {
        const exitCode = typeof e.code === 'number' ? e.code : undefined
        const why = stderr.trim() || e.message
        reject(new IpCommandError(`"${line}" failed${exitCode !== undefined ? ` (exit ${exitCode})` : ''}: ${why}`, argv, exitCode, stderr, err))
      }
    })
  })
}

/** `ip addr replace <address>/<prefix> dev <dev>`: e.g. addressReplace('weft0', '10.1.2.3/16'). */
export async function addressReplace (dev: string, addressWithPrefix: string, opts?: IpOptions): Promise<void> {
  await runIp(['addr', 'replace', checkInterfaceAddress(addressWithPrefix), 'dev', checkIfname(dev)], opts)
}

/** `ip addr del <address>/<prefix> dev <dev>`. */
export async function addressDelete (dev: string, addressWithPrefix: string, opts?: IpOptions): Promise<void> {
  await runIp(['addr', 'del', checkInterfaceAddress(addressWithPrefix), 'dev', checkIfname(dev)], opts)
}

/** `ip addr flush dev <dev>`: remove every address of the device. */
export async function addressFlush (dev: string, opts?: IpOptions): Promise<void> {
  await runIp(['addr', 'flush', 'dev', checkIfname(dev)], opts)
}

/** The addresses of `dev` as `address/prefix` strings (`ip -j addr show dev <dev>`). */
export async function addressList (dev: string, opts?: IpOptions): Promise<string[]> {
  const out = await runIp(['-j', 'addr', 'show', 'dev', checkIfname(dev)], opts)
  const links = parseJson<Array<{ addr_info?: Array<{ local?: string, prefixlen?: number }> }>>(out, 'ip -j addr show')
  return links.flatMap((l) => (l.addr_info ?? []).filter((a) => a.local !== undefined).map((a) => `${a.local!}/${a.prefixlen ?? ''}`))
}

/** `ip link set dev <dev> mtu <mtu>`. */
export async function setMtu (dev: string, mtu: number, opts?: IpOptions): Promise<void> {
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new WeftError('ERR_BAD_INPUT', `MTU ${mtu} is not an integer in 68..65535`)
  await runIp(['link', 'set', 'dev', checkIfname(dev), 'mtu', String(mtu)], opts)
}

/** `ip link set dev <dev> up`. */
export async function linkUp (dev: string, opts?: IpOptions): Promise<void> {
  await runIp(['link', 'set', 'dev', checkIfname(dev), 'up'], opts)
}

/** `ip link set dev <dev> down`. */
export async function linkDown (dev: string, opts?: IpOptions): Promise<void> {
  await runIp(['link', 'set', 'dev', checkIfname(dev), 'down'], opts)
}

/** `ip link delete dev <dev>`. */
export async function linkDelete (dev: string, opts?: IpOptions): Promise<void> {
  await runIp(['link', 'delete', 'dev', checkIfname(dev)], opts)
}

/** The link named `dev`, or undefined when there is none (`ip -j link show dev <dev>`). */
export async function linkShow (dev: string, opts?: IpOptions): Promise<IpLink | undefined> {
  let out: string
  try {
    out = await runIp(['-j', 'link', 'show', 'dev', checkIfname(dev)], opts)
  } catch (err) {
    if (err instanceof IpCommandError && /does not exist|Cannot find device/i.test(err.stderr)) return undefined
    throw err
  }
  const l = parseJson<Array<{ ifname: string, ifindex: number, mtu: number, flags?: string[], operstate?: string }>>(out, 'ip -j link show')[0]
  if (l === undefined) return undefined
  return { name: l.ifname, index: l.ifindex, mtu: l.mtu, flags: l.flags ?? [], operstate: l.operstate ?? 'UNKNOWN' }
}

/** The names of every link (`ip -j link show`). */
export async function linkNames (opts?: IpOptions): Promise<string[]> {
  const out = await runIp(['-j', 'link', 'show'], opts)
  return parseJson<Array<{ ifname: string }>>(out, 'ip -j link show').map((l) => l.ifname)
}

export interface RouteOptions extends IpOptions {
  /** Route via this gateway (`via <ip>`). */
  via?: string
  /** `metric <n>`. */
  metric?: number
  /** Preferred source address (`src <ip>`). */
  src?: string
}

/** `ip route add <cidr> dev <dev>`: fails if the route exists. */
export async function routeAdd (cidr: string, dev: string, opts?: RouteOptions): Promise<void> {
  await runIp(['route', 'add', ...routeArgs(cidr, dev, opts)], opts)
}

/** `ip route replace <cidr> dev <dev>`: adds or replaces. */
export async function routeReplace (cidr: string, dev: string, opts?: RouteOptions): Promise<void> {
  await runIp(['route', 'replace', ...routeArgs(cidr, dev, opts)], opts)
}

/** `ip route del <cidr> dev <dev>`. */
export async function routeDelete (cidr: string, dev: string, opts?: RouteOptions): Promise<void> {
  await runIp(['route', 'del', ...routeArgs(cidr, dev, opts)], opts)
}

/** The routes through `dev` in the main table, IPv4 then IPv6 (`ip -j route show dev <dev>`). */
export async function routeList (dev: string, opts?: IpOptions): Promise<IpRoute[]> {
  const routes: IpRoute[] = []
  for (const family of ['-4', '-6']) {
    const out = await runIp(['-j', family, 'route', 'show', 'dev', checkIfname(dev)], opts)
    for (const r of parseJson<Array<{ dst: string, gateway?: string, metric?: number }>>(out, 'ip -j route show')) {
      routes.push({ dst: r.dst, dev, ...(r.gateway !== undefined ? { gateway: r.gateway } : {}), ...(r.metric !== undefined ? { metric: r.metric } : {}) })
    }
  }
  return routes
}

/** `ip netns add <name>` (for tests). */
export async function netnsAdd (name: string, opts?: Omit<IpOptions, 'netns'>): Promise<void> {
  await runIp(['netns', 'add', checkNetns(name)], opts)
}

/** `ip netns delete <name>` (for tests); a namespace that does not exist is not an error. */
export async function netnsDelete (name: string, opts?: Omit<IpOptions, 'netns'>): Promise<void> {
  try {
    await runIp(['netns', 'delete', checkNetns(name)], opts)
  } catch (err) {
    if (err instanceof IpCommandError && /No such file|does not exist/i.test(err.stderr)) return
    throw err
  }
}

function routeArgs (cidr: string, dev: string, opts?: RouteOptions): string[] {
  const args = [parseCidr(cidr).text, 'dev', checkIfname(dev)]
  if (opts?.via !== undefined) args.push('via', checkIp(opts.via))
  if (opts?.src !== undefined) args.push('src', checkIp(opts.src))
  if (opts?.metric !== undefined) {
    if (!Number.isInteger(opts.metric) || opts.metric < 0 || opts.metric > 0xffffffff) throw new WeftError('ERR_BAD_INPUT', `route metric ${opts.metric} is not a 32-bit unsigned integer`)
    args.push('metric', String(opts.metric))
  }
  return args
}

function checkIfname (name: string): string {
  if (!IFNAME.test(name) || name === '.' || name === '..' || name.startsWith('-')) {
    throw new WeftError('ERR_BAD_INPUT', `"${name}" is not an interface name (1-15 characters, no spaces or slashes)`)
  }
  return name
}

function checkNetns (name: string): string {
  if (!NETNS.test(name) || name === '.' || name === '..' || name.startsWith('-')) {
    throw new WeftError('ERR_BAD_INPUT', `"${name}" is not a network namespace name`)
  }
  return name
}

function checkIp (text: string): string {
  parseIp(text)
  return text
}

/** `10.1.2.3/16` (host bits allowed, unlike a route's CIDR); a bare address gets /32 or /128. */
function checkInterfaceAddress (text: string): string {
  const [addr, len, extra] = text.split('/')
  if (addr === undefined || extra !== undefined || (len !== undefined && !/^\d{1,3}$/.test(len))) {
    throw new WeftError('ERR_BAD_INPUT', `"${text}" is not an interface address (expected address/prefix, e.g. 10.1.2.3/16)`)
  }
  const ip = parseIp(addr)
  const max = ip.family === 4 ? 32 : 128
  const prefix = len === undefined ? max : Number(len)
  if (prefix > max) throw new WeftError('ERR_BAD_INPUT', `"${text}": prefix /${prefix} is too long for IPv${ip.family}`)
  return `${addr}/${prefix}`
}

function parseJson<T> (out: string, what: string): T {
  try {
    return JSON.parse(out.trim() === '' ? '[]' : out) as T
  } catch (err) {
    throw new WeftError('ERR_TUN', `could not read the output of "${what}" (is iproute2 too old for -j?): ${(err as Error).message}`, { cause: err })
  }
}
