/**
 * A simulated internet in network namespaces (root), for netns-reach.test.ts and bench/reach.ts:
 *
 *   public segment 198.18.0.0/24 (a bridge): stand-in public libp2p nodes (public-node.ts),
 *     optionally Weft members with a public address, and each NAT router's WAN side (eth0)
 *   LAN i 192.168.<i>.0/24: one machine behind router i (veth lan0 ↔ lan0), default route via .1
 *
 * NAT kinds (nftables, as iptables MASQUERADE would):
 * - port-preserving: `masquerade` (Linux keeps the source port when it is free);
 * - port-restricted: the same mapping, and the router drops every new connection from the WAN,
 *   forwarded or to itself (only replies to what the LAN opened pass: endpoint-dependent
 *   filtering; an unsolicited SYN gets no reset);
 * - symmetric: `masquerade fully-random` (a random public port per connection).
 * Loss: each router drops `wanLossPerMille`/1000 of the packets crossing its WAN side, each way
 * (nftables `numgen random`, with counters), so a packet between two NATted machines, which
 * crosses two routers, is lost with about twice that. Delay: this kernel has no netem qdisc and
 * nftables cannot hold a packet back, so each LAN's link to its router goes through a wire
 * namespace where a userspace Ethernet bridge holds every frame (delay-wire.ts, LAN_DELAY_MS).
 */
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { NetnsLab, startWeft, waitFor, weftApi, tail, type LabHost, type LabProc, type WeftNode } from './netns.js'
import type { NodeStatus, PeerStatus } from '../../src/adapters/api-types.js'
import { publicSeed } from './public-node.js'

export type NatKind = 'port-preserving' | 'port-restricted' | 'symmetric'
export const NAT_KINDS: readonly NatKind[] = ['port-preserving', 'port-restricted', 'symmetric']
export const PUBLIC_RANGE = '198.18.0.0/15'
const REPO = fileURLToPath(new URL('../..', import.meta.url))
const PUBLIC_NODE = join(REPO, 'test/system/public-node.ts')

export interface Internet {
  lab: NetnsLab
  /** Stand-in public libp2p nodes, running. */
  publicNodes: Array<{ host: LabHost, proc: LabProc, addr: string }>
  /** Hosts on the public segment for Weft members with a public address. */
  publicMembers: LabHost[]
  /** One machine behind each NAT, in the order of `nats`. */
  natted: Array<{ host: LabHost, router: LabHost, nat: NatKind }>
  /** The stand-ins' addresses, as --bootstrap takes them. */
  bootstrap: string
}

async function run (lab: NetnsLab, host: LabHost, argv: string[]): Promise<void> {
  const r = await lab.exec(host, argv)
  if (r.code !== 0) throw new Error(`${argv.join(' ')} in ${host.ns} failed: ${r.stderr.trim()}`)
}

async function nft (lab: NetnsLab, host: LabHost, rule: string): Promise<void> {
  await run(lab, host, ['nft', rule])
}

export async function publicPeerId (n: number): Promise<string> {
  return peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', publicSeed(n))).toString()
}

/**
 * One-way delay between each NATted machine and its router, LAN by LAN (`delayMs`; [] for none):
 * a userspace wire (delay-wire.ts), since this kernel has no netem. Between two NATted machines
 * a packet crosses two of them: 30–50 ms one way, 60–100 ms round trip; to a public node 10–30 ms.
 */
export const LAN_DELAY_MS: readonly number[] = [10, 20, 30]
const DELAY_WIRE = join(REPO, 'test/system/delay-wire.ts')

async function startWire (lab: NetnsLab, wire: LabHost, a: string, b: string, ms: number): Promise<void> {
  const logFile = join(lab.dir, `${wire.hostname}.log`)
  // Without WEFT_REUSEPORT: the wire uses the same socket calls, which that switch turns off for nodes.
  const { WEFT_REUSEPORT: _off, ...env } = process.env
  const proc = lab.spawn(wire, [process.execPath, '--import', 'tsx', DELAY_WIRE, a, b, String(ms)], { logFile, cwd: REPO, env })
  await waitFor(async () => {
    if (proc.exitCode !== undefined) throw new Error(`the delay wire in ${wire.ns} exited: ${await tail(logFile)}`)
    return (await tail(logFile)).includes('ready ')
  }, `the delay wire of ${wire.hostname}`, 30_000, 100)
}

/** Default WAN loss per router and direction: ~1% between two NATted machines (two routers). */
export const WAN_LOSS_PER_MILLE = 5

export async function buildInternet (opts: { nats: readonly NatKind[], publicNodes: number, publicMembers: number, wanLossPerMille?: number, delayMs?: readonly number[] }): Promise<Internet> {
  const loss = opts.wanLossPerMille ?? WAN_LOSS_PER_MILLE
  const delays = (opts.delayMs ?? LAN_DELAY_MS).filter((d) => d > 0)
  const nPublic = opts.publicNodes + opts.nats.length + opts.publicMembers
  const lab = await NetnsLab.create(nPublic, { subnet: '198.18.0', hostnamePrefix: 'wan' })
  try {
    const pubHosts = lab.hosts.slice(0, opts.publicNodes)
    const routers = lab.hosts.slice(opts.publicNodes, opts.publicNodes + opts.nats.length)
    const publicMembers = lab.hosts.slice(opts.publicNodes + opts.nats.length)
    const natted: Internet['natted'] = []
    for (const [i, nat] of opts.nats.entries()) {
      const router = routers[i] as LabHost
      const host = await lab.addStandaloneHost(`lan${i + 1}-node`)
      const [a, b] = [`wr${lab.id}${i}`, `wm${lab.id}${i}`]
      const delay = delays.length === 0 ? 0 : delays[i % delays.length] as number
      if (delay > 0) {
        // router lan0 ↔ wire (a userspace bridge holding each frame `delay` ms) ↔ machine lan0.
        const wire = await lab.addStandaloneHost(`lan${i + 1}-wire`)
        const [wa, wb] = [`wx${lab.id}${i}`, `wy${lab.id}${i}`]
        await runIp(['link', 'add', a, 'netns', router.ns, 'type', 'veth', 'peer', 'name', wa, 'netns', wire.ns])
        await runIp(['link', 'add', b, 'netns', host.ns, 'type', 'veth', 'peer', 'name', wb, 'netns', wire.ns])
        for (const w of [wa, wb]) await run(lab, wire, ['ip', 'link', 'set', w, 'up', 'promisc', 'on'])
        await run(lab, router, ['ip', 'link', 'set', a, 'name', 'lan0'])
        await run(lab, host, ['ip', 'link', 'set', b, 'name', 'lan0'])
        // One segment per frame: the wire copies frames, it cannot cut a 64 KiB TSO frame.
        await run(lab, router, ['ip', 'link', 'set', 'lan0', 'gso_max_segs', '1'])
        await run(lab, host, ['ip', 'link', 'set', 'lan0', 'gso_max_segs', '1'])
        await startWire(lab, wire, wa, wb, delay)
      } else {
        await runIp(['link', 'add', a, 'netns', router.ns, 'type', 'veth', 'peer', 'name', b, 'netns', host.ns])
        await run(lab, router, ['ip', 'link', 'set', a, 'name', 'lan0'])
        await run(lab, host, ['ip', 'link', 'set', b, 'name', 'lan0'])
      }
      await run(lab, router, ['ip', 'addr', 'add', `192.168.${i + 1}.1/24`, 'dev', 'lan0'])
      await run(lab, router, ['ip', 'link', 'set', 'lan0', 'up'])
      await run(lab, host, ['ip', 'addr', 'add', `192.168.${i + 1}.2/24`, 'dev', 'lan0'])
      await run(lab, host, ['ip', 'link', 'set', 'lan0', 'up'])
      await run(lab, host, ['ip', 'route', 'add', 'default', 'via', `192.168.${i + 1}.1`])
      host.ip = `192.168.${i + 1}.2`
      await run(lab, router, ['sysctl', '-qw', 'net.ipv4.ip_forward=1'])
      await nft(lab, router, 'add table ip nat')
      await nft(lab, router, 'add chain ip nat post { type nat hook postrouting priority 100 ; }')
      await nft(lab, router, `add rule ip nat post oifname eth0 masquerade${nat === 'symmetric' ? ' fully-random' : ''}`)
      if (nat === 'port-restricted') {
        await nft(lab, router, 'add table ip filter')
        await nft(lab, router, 'add chain ip filter forwarding { type filter hook forward priority 0 ; policy drop ; }')
        await nft(lab, router, 'add rule ip filter forwarding ct state established,related accept')
        await nft(lab, router, 'add rule ip filter forwarding iifname lan0 accept')
        // And to the router itself: a SYN to a public port it maps nothing to is dropped, not
        // answered with a reset by its own stack (as a firewalled home router does; the
        // port-preserving router, which only masquerades, answers with a reset).
        await nft(lab, router, 'add chain ip filter input { type filter hook input priority 0 ; policy accept ; }')
        await nft(lab, router, 'add rule ip filter input iifname eth0 ct state established,related accept')
        await nft(lab, router, 'add rule ip filter input iifname eth0 drop')
      }
      if (loss > 0) {
        // Before the NAT's own filter (priority -10 < 0); `counter` before the drop counts what crossed.
        await nft(lab, router, 'add table ip loss')
        await nft(lab, router, 'add chain ip loss wan { type filter hook forward priority -10 ; }')
        await nft(lab, router, 'add rule ip loss wan iifname eth0 counter')
        await nft(lab, router, 'add rule ip loss wan oifname eth0 counter')
        await nft(lab, router, `add rule ip loss wan iifname eth0 numgen random mod 1000 < ${loss} counter drop`)
        await nft(lab, router, `add rule ip loss wan oifname eth0 numgen random mod 1000 < ${loss} counter drop`)
      }
      natted.push({ host, router, nat })
    }
    const addrs = await Promise.all(pubHosts.map(async (h, i) => `/ip4/${h.ip}/tcp/4001/p2p/${await publicPeerId(i)}`))
    const publicNodes: Internet['publicNodes'] = []
    for (const [i, h] of pubHosts.entries()) {
      const logFile = join(lab.dir, `public-${i + 1}.log`)
      const proc = lab.spawn(h, [process.execPath, '--import', 'tsx', PUBLIC_NODE, String(i), '/ip4/0.0.0.0/tcp/4001', `/ip4/${h.ip}/tcp/4001`, ...addrs.filter((_, j) => j !== i)], { logFile, cwd: REPO })
      publicNodes.push({ host: h, proc, addr: addrs[i] as string })
    }
    for (const p of publicNodes) {
      await waitFor(async () => {
        if (p.proc.exitCode !== undefined) throw new Error(`public node ${p.host.ns} exited: ${await tail(p.proc.logFile)}`)
        return (await tail(p.proc.logFile)).includes('ready ')
      }, `public node ${p.host.hostname}`, 30_000, 100)
    }
    return { lab, publicNodes, publicMembers, natted, bootstrap: addrs.join(',') }
  } catch (err) {
    await lab.destroy()
    throw err
  }
}

async function runIp (args: string[]): Promise<void> {
  const { execFile } = await import('node:child_process')
  await new Promise<void>((resolve, reject) => {
    execFile('ip', args, (err, _o, stderr) => { err === null ? resolve() : reject(new Error(`ip ${args.join(' ')}: ${stderr}`)) })
  })
}

/** `weft up` flags of a token-only node of the simulated internet (with a VPN device when `tun`). */
export function reachFlags (net: Internet, tun = false): string[] {
  return [...(tun ? [] : ['--no-tun']), '--no-mdns', '--bootstrap', net.bootstrap, '--public-ranges', PUBLIC_RANGE, '--sync-interval', '2s', '--join-wait', '0']
}

/**
 * Starts Weft on every public-member host, then behind every NAT (in that order in the result);
 * with `tun`, every member runs the VPN.
 */
export function startReachNodes (net: Internet, cli: string, token: string, opts: { tun?: boolean, extra?: readonly string[] } = {}): WeftNode[] {
  const flags = [...reachFlags(net, opts.tun === true), ...(opts.extra ?? [])]
  return [...net.publicMembers, ...net.natted.map((x) => x.host)].map((h) => startWeft(net.lab, h, cli, token, flags))
}

/**
 * Waits until the NATted members `i` and `j` see each other over a connection that is not
 * limited (a member relay's, or direct) and each completed an anti-entropy session with the
 * other; returns the path `i` reports and when that happened (performance.now()).
 */
export async function unlimitedLink (net: Internet, a: WeftNode, b: WeftNode, timeoutMs: number): Promise<{ addr: string, direct: boolean, at: number }> {
  const [ida, idb] = await Promise.all([a, b].map(async (x) => (await weftApi<NodeStatus>(net.lab, x, 'GET', '/status')).peerId))
  let seen = ''
  return await waitFor(async () => {
    const [pa, pb] = await Promise.all([a, b].map(async (x) => (await weftApi<{ peers: PeerStatus[] }>(net.lab, x, 'GET', '/peers')).peers))
    const ab = pa?.find((q) => q.peerId === idb)
    const ba = pb?.find((q) => q.peerId === ida)
    seen = JSON.stringify({ ab: ab?.path, abSync: ab?.lastSyncMs, ba: ba?.path, baSync: ba?.lastSyncMs })
    const ok = (p: PeerStatus | undefined): boolean => p?.connected === true && p.path?.limited === false && p.lastSyncMs !== undefined
    if (!ok(ab) || !ok(ba)) return undefined
    return { addr: ab?.path?.addr ?? '', direct: ab?.path?.direct === true, at: performance.now() }
  }, () => `${a.host.hostname} and ${b.host.hostname} to be linked without limits and to have synced with each other (last seen: ${seen})`, timeoutMs, 250)
}

export interface PairResult { pair: string, ms: number, path: 'direct' | 'relayed' }

/**
 * Polls the NATted nodes' APIs until every pair of them is connected (either side may report it);
 * the time of each pair is from `started` (performance.now()). Throws after `timeoutMs` naming the
 * pairs still missing.
 */
export async function connectTimes (net: Internet, natted: readonly WeftNode[], started: number, timeoutMs: number): Promise<PairResult[]> {
  const pairs: Array<[number, number]> = []
  for (let i = 0; i < natted.length; i++) for (let j = i + 1; j < natted.length; j++) pairs.push([i, j])
  const done = new Map<string, PairResult>()
  const ids = await Promise.all(natted.map(async (x) => (await weftApi<NodeStatus>(net.lab, x, 'GET', '/status')).peerId))
  await waitFor(async () => {
    const peers = await Promise.all(natted.map(async (x) => (await weftApi<{ peers: PeerStatus[] }>(net.lab, x, 'GET', '/peers')).peers))
    for (const [i, j] of pairs) {
      const pair = `${net.natted[i]?.nat ?? i} ↔ ${net.natted[j]?.nat ?? j}`
      if (done.has(pair)) continue
      const p = peers[i]?.find((q) => q.peerId === ids[j] && q.connected) ?? peers[j]?.find((q) => q.peerId === ids[i] && q.connected)
      if (p !== undefined) done.set(pair, { pair, ms: performance.now() - started, path: p.path?.direct === true ? 'direct' : 'relayed' })
    }
    return done.size === pairs.length
  }, () => `every NATted pair connected (so far: ${JSON.stringify([...done.keys()])})`, timeoutMs, 250)
  return [...done.values()]
}

export interface DirectResult { pair: string, ms: number | null, path: 'direct' | 'relayed' }

/**
 * Polls the NATted nodes' APIs until `windowMs` after `started` (or until every pair is direct)
 * and says, per pair, when its traffic first took a direct (hole-punched) connection, from
 * `started`; null: not in that window (still relayed). A pair already direct when this starts
 * counts from the first poll (call it right after connectTimes for exact figures).
 */
export async function directTimes (net: Internet, natted: readonly WeftNode[], started: number, windowMs: number): Promise<DirectResult[]> {
  const ids = await Promise.all(natted.map(async (x) => (await weftApi<NodeStatus>(net.lab, x, 'GET', '/status')).peerId))
  const pairs: Array<[number, number]> = []
  for (let i = 0; i < natted.length; i++) for (let j = i + 1; j < natted.length; j++) pairs.push([i, j])
  const name = ([i, j]: [number, number]): string => `${net.natted[i]?.nat ?? i} ↔ ${net.natted[j]?.nat ?? j}`
  const at = new Map<string, number>()
  const end = started + windowMs
  while (performance.now() < end && at.size < pairs.length) {
    const peers = await Promise.all(natted.map(async (x) => (await weftApi<{ peers: PeerStatus[] }>(net.lab, x, 'GET', '/peers')).peers))
    for (const [i, j] of pairs) {
      const p = peers[i]?.find((q) => q.peerId === ids[j] && q.connected)
      if (p?.path?.direct === true && !at.has(name([i, j]))) at.set(name([i, j]), performance.now() - started)
    }
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  return pairs.map((ij) => {
    const ms = at.get(name(ij))
    return { pair: name(ij), ms: ms ?? null, path: ms !== undefined ? 'direct' : 'relayed' }
  })
}

/** A node's IPv4 overlay (VPN) address, once it holds one and its device carries it. */
export async function overlayAddr (net: Internet, x: WeftNode, timeoutMs = 30_000): Promise<string> {
  return await waitFor(async () => {
    const v = (await weftApi<NodeStatus>(net.lab, x, 'GET', '/status')).vpn
    return v?.addresses.find((a) => !a.includes(':'))?.split('/')[0]
  }, `${x.host.hostname}'s overlay address`, timeoutMs, 250)
}

/** Pings `to` from `from` until one answer comes back (the first packets of a path may open its stream). */
export async function untilPingAnswered (net: Internet, from: WeftNode, to: string, timeoutMs: number): Promise<void> {
  let last = ''
  await waitFor(async () => {
    const r = await net.lab.exec(from.host, ['ping', '-n', '-c', '1', '-W', '2', to], 10_000)
    last = `${r.stdout}${r.stderr}`.trim()
    return r.code === 0
  }, () => `a ping over the VPN ${from.host.hostname} → ${to} (last: ${last})`, timeoutMs, 250)
}

/** Packets the routers forwarded across their WAN side and dropped on purpose (the loss rules' counters). */
export async function wanLoss (net: Internet): Promise<{ forwarded: number, dropped: number }> {
  let forwarded = 0
  let dropped = 0
  for (const r of net.natted) {
    const out = await net.lab.exec(r.router, ['nft', 'list', 'chain', 'ip', 'loss', 'wan'])
    for (const m of out.stdout.matchAll(/counter packets (\d+) bytes \d+( drop)?/g)) {
      if (m[2] === undefined) forwarded += Number(m[1])
      else dropped += Number(m[1])
    }
  }
  return { forwarded, dropped }
}
