import { lstat } from 'node:fs/promises'
import { connect, createServer } from 'node:net'

/**
 * Probe-binds the addresses a node is about to listen on, before it opens its store or joins
 * anything (issue 17: `--api` in use used to fail only after the node had synced a log into a
 * new data dir). A tiny race remains (something may bind between the probe and the real
 * listen); the real listen's error still stops the daemon then.
 */

/** Why `host:port` (TCP) cannot be bound, as a Node error code (EADDRINUSE, EADDRNOTAVAIL, EACCES), or undefined when it can. */
export async function probeTcp (host: string, port: number): Promise<string | undefined> {
  return await new Promise((resolve) => {
    const server = createServer()
    server.once('error', (err: NodeJS.ErrnoException) => { resolve(err.code ?? err.message) })
    server.listen({ host, port, exclusive: true }, () => { server.close(() => { resolve(undefined) }) })
  })
}

/** Whether a live process answers on the unix socket `path` (a stale socket file does not). */
export async function unixSocketInUse (path: string): Promise<boolean> {
  try {
    if (!(await lstat(path)).isSocket()) return false
  } catch {
    return false
  }
  return await new Promise<boolean>((resolve) => {
    const s = connect(path)
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => { resolve(false) })
  })
}

/** `/ip4/<host>/tcp/<port>` or `/ip6/<host>/tcp/<port>` (nothing after), or undefined for other multiaddrs. */
export function tcpOfMultiaddr (ma: string): { host: string, port: number } | undefined {
  const m = /^\/ip([46])\/([^/]+)\/tcp\/(\d{1,5})\/?$/.exec(ma)
  if (m === null) return undefined
  return { host: m[2] as string, port: Number(m[3]) }
}

const WHY: Record<string, string> = {
  EADDRINUSE: 'is in use by another process',
  EADDRNOTAVAIL: 'is not an address of this machine',
  EACCES: 'needs root (a port below 1024)'
}

/**
 * One clean line per address that cannot be bound: `--listen`'s TCP addresses (port 0 always
 * binds) and the API's. Empty when all of them can.
 */
export async function bindConflicts (listen: readonly string[], api: { kind: 'tcp', host: string, port: number } | { kind: 'unix', path: string } | { kind: 'off' }): Promise<string[]> {
  const out: string[] = []
  for (const ma of listen) {
    const t = tcpOfMultiaddr(ma)
    if (t === undefined || t.port === 0) continue
    const err = await probeTcp(t.host, t.port)
    if (err !== undefined) out.push(`--listen ${ma}: the address ${WHY[err] ?? `cannot be bound (${err})`}${err === 'EADDRINUSE' ? ` (another weft daemon? see \`ss -ltnp 'sport = :${t.port}'\`)` : ''}; give another --listen, e.g. /ip4/0.0.0.0/tcp/${t.port + 1}`)
  }
  if (api.kind === 'tcp' && api.port !== 0) {
    const err = await probeTcp(api.host, api.port)
    if (err !== undefined) out.push(`--api ${api.host.includes(':') ? `[${api.host}]` : api.host}:${api.port}: the address ${WHY[err] ?? `cannot be bound (${err})`}${err === 'EADDRINUSE' ? ` (see \`ss -ltnp 'sport = :${api.port}'\`)` : ''}; give another --api (host:port, a unix socket path, or off)`)
  }
  if (api.kind === 'unix' && await unixSocketInUse(api.path)) {
    out.push(`--api ${api.path}: the socket is in use by another process (is another "weft up" running on this data dir?); give another --api`)
  }
  return out
}
