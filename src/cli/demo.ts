import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Replica } from '../adapters/replica.js'
import { openLevel } from '../adapters/level-db.js'
import { generateIdentity, type NodeIdentity } from '../log/identity.js'
import { formatToken, identifiers, networkIdBytes, newToken } from '../log/token.js'
import { networkReducer } from '../projections/network.js'
import { chooseAddress } from '../projections/ipam.js'
import { makeSettingsChange } from '../projections/settings.js'
import { networkView, type NetworkView } from '../projections/view.js'
import { encodeFrontier } from '../crdt/frontier.js'

export interface DemoOptions { nodes: number, seed?: number, json: boolean }

type DemoReplica = Replica<{ network: ReturnType<typeof networkReducer> }>

/**
 * The in-process demo: several identities, each with a real LevelDB replica in a temporary
 * directory, write events and exchange them only through frontiers (`missingFor`), in a
 * shuffled order with duplicates and drops, until every replica holds the same log. Then it
 * prints the converged state. (The mesh issue replaces this with real `weft up` processes.)
 */
export async function runDemo (opts: DemoOptions): Promise<number> {
  const n = Math.max(2, Math.min(opts.nodes, 16))
  let seed = opts.seed ?? Date.now() % 1_000_000
  const rand = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
  const token = newToken()
  const net = networkIdBytes(token)
  const dir = await mkdtemp(join(tmpdir(), 'weft-demo-'))
  const say = (line: string): void => { if (!opts.json) process.stderr.write(line + '\n') }
  say(`network ${identifiers(token).networkId} (token ${formatToken(token).slice(0, 9)}…, not shown in full)`)
  const nodes: Array<{ id: NodeIdentity, r: DemoReplica, host: string }> = []
  try {
    for (let i = 0; i < n; i++) {
      const id = generateIdentity()
      const db = await openLevel(join(dir, `node${i}`))
      const r = await Replica.open({ db, net, reducers: { network: networkReducer() }, signer: id })
      nodes.push({ id, r, host: `node${i}` })
    }
    const now = Date.now()
    // Each node joins and later claims an address from its own partial view: collisions are
    // possible and are settled by the log's order, which is the point of the demo.
    for (const [i, node] of nodes.entries()) {
      await node.r.append('node.join', {
        hostname: node.host, cluster: i < Math.ceil(n / 2) ? 'edge' : 'core', os: process.platform, arch: process.arch,
        version: '0.1.0', addrs: [], caps: [], role: i === 0 ? 'master' : 'auto'
      }, now)
    }
    const first = nodes[0] as typeof nodes[number]
    const last = nodes[n - 1] as typeof nodes[number]
    await first.r.append('settings.change', {
      change: makeSettingsChange(first.r.states().network.settings, first.id.authorHex, 'serverCount', 2)
    }, now)
    await last.r.append('route.advertise', { cidr: '192.168.50.0/24' }, now)
    let rounds = 0
    let messages = 0
    for (;;) {
      rounds++
      let moved = 0
      const pairs: Array<[number, number]> = []
      for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) if (a !== b) pairs.push([a, b])
      pairs.sort(() => rand() - 0.5)
      for (const [a, b] of pairs) {
        const from = nodes[a] as typeof nodes[number]
        const to = nodes[b] as typeof nodes[number]
        if (rand() < 0.3) continue // a dropped message: a later round heals it
        const batch = from.r.missingFor(to.r.frontier(), 8).map((e) => e.envelope)
        if (batch.length === 0) continue
        if (rand() < 0.3) batch.push(...batch.slice(0, 2)) // duplicates
        batch.sort(() => rand() - 0.5) // out of order: children wait for parents in the pending buffer
        const res = await to.r.ingest(batch)
        moved += res.added.length
        messages++
      }
      // Agents act on what they see: claim an address (again, if they lost one).
      for (const node of nodes) {
        const s = node.r.states().network
        const mine = s.ipam.claims.get(`${node.id.authorHex}/4`)
        if (mine === undefined || mine.status === 'lost') {
          const addr = chooseAddress(s.ipam, s.settings.values, node.id.authorHex)
          if (addr !== undefined) { await node.r.append('ip.claim', { addr }, Date.now()); moved++ }
        }
      }
      const frontiers = nodes.map((x) => Buffer.from(encodeFrontier(x.r.frontier())).toString('hex'))
      const allHeld = nodes.every((x) => x.r.states().network.ipam.claims.get(`${x.id.authorHex}/4`)?.status === 'held')
      if (moved === 0 && frontiers.every((f) => f === frontiers[0]) && allHeld) break
      if (rounds > 200) throw new Error('the demo did not converge in 200 rounds')
    }
    const views = nodes.map((x) => networkView(x.r.states().network))
    const same = views.every((v) => JSON.stringify(v) === JSON.stringify(views[0]))
    const view = views[0] as NetworkView
    if (opts.json) {
      process.stdout.write(JSON.stringify({ converged: same, rounds, messages, events: first.r.log.size, view }, null, 2) + '\n')
    } else {
      say(`${n} replicas converged after ${rounds} rounds, ${messages} batches, ${first.r.log.size} events; identical state on all: ${same ? 'yes' : 'NO'}`)
      process.stdout.write(renderDemo(view) + '\n')
    }
    return same ? 0 : 1
  } finally {
    for (const x of nodes) await x.r.close().catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
  }
}

function renderDemo (v: NetworkView): string {
  const rows: string[][] = [['HOST', 'CLUSTER', 'ROLE', 'ADDRESS', 'DNS NAME']]
  for (const m of v.members) {
    rows.push([m.hostname, m.cluster, `${m.role}${m.roleStable ? '' : ' (tentative)'}`, m.address ?? '-', m.dnsName ?? '-'])
  }
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  const lines = rows.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd())
  const routes = v.routes.routes.filter((r) => r.kind === 'advertised').map((r) => `  ${r.cidr} via ${r.peerHost}`)
  const s = v.settings.values
  return [...lines, '', `settings: serverCount=${s.serverCount} minNodes=${s.minNodes} overlay=${s.overlayCidr} zone=${s.zone}`,
    routes.length > 0 ? 'advertised routes:\n' + routes.join('\n') : 'advertised routes: none'].join('\n')
}
