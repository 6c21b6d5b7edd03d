import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { formatToken, identifiers, newToken } from '../log/token.js'
import { generateIdentity } from '../log/identity.js'
import { createKeyFile } from '../adapters/identity-file.js'
import type { NetworkView } from '../projections/view.js'
import { ApiClient } from './api-client.js'
import { CliError } from './errors.js'
import { flush, out, printJson, table } from './output.js'
import { overlayAddress } from './status.js'

export interface DemoOptions { nodes: number, json: boolean, exitWhenConverged: boolean, timeout: number }

interface DemoNode { name: string, dataDir: string, proc: ChildProcess, stderr: string[], client?: ApiClient }

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url))

/**
 * `weft demo` (what `npm start` runs): real `weft up` processes on loopback with a fresh token
 * and temporary data dirs. The first node listens on a random port; the others get its address
 * as --peer (mDNS on loopback is not reliable everywhere). No root is needed: no TUN device.
 * The table appears once every node reports the same members, roles, addresses and DNS names.
 */
export async function runDemo (opts: DemoOptions): Promise<number> {
  const n = Math.max(2, Math.min(opts.nodes, 9))
  const root = await mkdtemp(join(tmpdir(), 'weft-demo-'))
  // The demo network's owner key lives beside the nodes' data dirs (a real one stays off them).
  const owner = generateIdentity()
  const ownerKey = join(root, 'owner.key')
  await createKeyFile(ownerKey, owner)
  const secret = newToken(owner.publicKey)
  const token = formatToken(secret)
  const nodes: DemoNode[] = []
  const say = (line: string): void => { if (!opts.json) process.stderr.write(`${line}\n`) }
  const stopAll = async (): Promise<void> => {
    await Promise.all(nodes.map(async (d) => await stopNode(d)))
    await rm(root, { recursive: true, force: true })
  }
  let interrupted = false
  const onSignal = (): void => { interrupted = true }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    say(`network ${identifiers(secret).networkId}: starting ${n} weft up processes in ${root}`)
    for (let i = 0; i < n; i++) {
      const name = `node-${i + 1}`
      const peers = i === 0 ? [] : [(await endpointOf(nodes[0] as DemoNode, opts.timeout)).listen[0] as string]
      const d = startNode(name, join(root, name), token, peers)
      nodes.push(d)
      const ep = await endpointOf(d, opts.timeout)
      say(`  ${name}  pid ${d.proc.pid ?? '?'}  ${ep.listen[0] ?? ''}  api ${ep.url}`)
    }
    const started = Date.now()
    let view: NetworkView | undefined
    let lastLine = ''
    while (view === undefined) {
      if (interrupted) return 130
      if (Date.now() - started > opts.timeout) throw new CliError(`the nodes did not agree within ${opts.timeout} ms; their logs are in ${root}`)
      const dead = nodes.find((d) => d.proc.exitCode !== null)
      if (dead !== undefined) throw new CliError(`${dead.name} exited (code ${String(dead.proc.exitCode)}): ${dead.stderr.slice(-3).join(' ')}`)
      const views = await Promise.all(nodes.map(async (d) => await (d.client as ApiClient).state().then((s) => s.view as unknown as NetworkView, () => undefined)))
      const progress = `waiting for agreement: ${views.map((v, i) => `${nodes[i]?.name ?? ''} sees ${v?.members.length ?? 0}`).join(', ')}`
      if (progress !== lastLine) { say(progress); lastLine = progress }
      if (agree(views, n)) view = views[0]
      else await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const ms = Date.now() - started
    if (opts.json) {
      printJson({ token, convergedMs: ms, view })
    } else {
      out(`\n${n} nodes agree on members, roles, addresses and DNS names (${ms} ms after the last one started)\n`)
      out(table(['HOST', 'K3S ROLE', 'ADDRESS', 'DNS NAME', 'PEER ID'], view.members.map((m) =>
        [m.hostname, `${m.role}${m.roleStable ? '' : ' (tentative)'}`, overlayAddress(m), m.dnsName === undefined ? '-' : `${m.dnsName}${m.vpn ? '' : ' (reserved)'}`, m.peerId])))
      out('\n(the demo runs without TUN devices: each address is held but reaches nothing, and each name is reserved\n but answers no A record; `sudo weft up` runs a node with its VPN)')
      out(`\ntry, in another terminal:\n  node ${MAIN} status --data-dir ${join(root, 'node-1')}\n  node ${MAIN} settings set mtu 1380 --data-dir ${join(root, 'node-2')} --owner-key ${ownerKey}\n  node ${MAIN} log state --data-dir ${join(root, 'node-3')}`)
    }
    flush()
    if (opts.exitWhenConverged) return 0
    say('\nrunning; press Ctrl-C to stop the nodes and delete their data')
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (interrupted || nodes.some((d) => d.proc.exitCode !== null)) { clearInterval(t); resolve() }
      }, 200)
    })
    return interrupted ? 0 : 1
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await stopAll()
  }
}

function startNode (name: string, dataDir: string, token: string, peers: string[]): DemoNode {
  const args = [MAIN, 'up', '--data-dir', dataDir, '--hostname', name, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0',
    '--no-mdns', '--no-tun', '--sync-interval', '2s', ...peers.flatMap((p) => ['--peer', p])]
  // The token goes through the environment, not argv, so `ps` does not show it.
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, WEFT_TOKEN: token }, detached: false })
  const d: DemoNode = { name, dataDir, proc, stderr: [] }
  proc.stderr?.setEncoding('utf8').on('data', (s: string) => {
    d.stderr.push(...s.split('\n').filter((l) => l.length > 0))
    if (d.stderr.length > 200) d.stderr.splice(0, d.stderr.length - 200)
  })
  return d
}

async function endpointOf (d: DemoNode, timeoutMs: number): Promise<{ url: string, listen: string[] }> {
  const deadline = Date.now() + timeoutMs
  while (true) {
    if (d.proc.exitCode !== null) throw new CliError(`${d.name} exited (code ${String(d.proc.exitCode)}): ${d.stderr.slice(-3).join(' ')}`)
    try {
      d.client ??= await ApiClient.fromDataDir(d.dataDir)
      // A fresh data dir: its api.json can only be this process's.
      const s = await d.client.status()
      return { url: s.api, listen: s.listen }
    } catch {
      d.client = undefined
    }
    if (Date.now() > deadline) throw new CliError(`${d.name} did not start within ${timeoutMs} ms: ${d.stderr.slice(-3).join(' ')}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

async function stopNode (d: DemoNode): Promise<void> {
  if (d.proc.exitCode !== null || d.proc.signalCode !== null) return
  const exited = new Promise((resolve) => d.proc.once('exit', resolve))
  d.proc.kill('SIGTERM')
  const t = setTimeout(() => d.proc.kill('SIGKILL'), 5_000)
  await exited
  clearTimeout(t)
}

/** Every node sees `n` members, each with an address and a DNS name, and the same table. */
function agree (views: Array<NetworkView | undefined>, n: number): boolean {
  const keys = views.map((v) => {
    if (v === undefined || v.members.length !== n || v.members.some((m) => m.address === undefined || m.dnsName === undefined)) return undefined
    return JSON.stringify(v.members.map((m) => [m.author, m.role, m.address, m.dnsName]))
  })
  return keys[0] !== undefined && keys.every((k) => k === keys[0])
}
