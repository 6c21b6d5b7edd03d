import { performance } from 'node:perf_hooks'
import { FoldEngine } from '../src/crdt/fold.js'
import { compareEvents, signEvent, type EventFields, type SignedEvent } from '../src/log/event.js'
import { identityFromSeed, type NodeIdentity } from '../src/log/identity.js'
import { networkIdBytes } from '../src/log/token.js'
import { networkReducer } from '../src/projections/network.js'
import { networkView } from '../src/projections/view.js'
import { makeSettingsChange, initialSettings } from '../src/projections/settings.js'
import type { BodyOf, EventType } from '../src/log/bodies.js'

const NET = networkIdBytes({ secret: new Uint8Array(32).fill(9) })

function line (metric: string, value: number, unit: string, target?: string): void {
  process.stdout.write(JSON.stringify({ bench: 'projections', metric, value: Math.round(value * 1000) / 1000, unit, ...(target === undefined ? {} : { target }) }) + '\n')
}

/**
 * A realistic mix over 100 authors in 3 clusters: joins, address claims (with collisions),
 * route advertisements and withdrawals, service exports, role claims and settings edits; each
 * event depends on the heads of two other authors, so lamport orders interleave.
 */
export function generate (count: number, authors = 100): SignedEvent[] {
  const ids: NodeIdentity[] = []
  for (let i = 0; i < authors; i++) ids.push(identityFromSeed(new Uint8Array(32).fill(0).map((_, j) => (j === 0 ? i + 1 : j === 1 ? 77 : 0))))
  const heads: Array<SignedEvent | undefined> = new Array(authors).fill(undefined)
  const out: SignedEvent[] = []
  let rnd = 12345
  const rand = (n: number): number => { rnd = (rnd * 1103515245 + 12345) % 2147483648; return rnd % n }
  const emit = <T extends EventType>(a: number, type: T, body: BodyOf<T>): void => {
    const prev = heads[a]
    const deps = [rand(authors), rand(authors)].filter((d) => d !== a).map((d) => heads[d]).filter((d): d is SignedEvent => d !== undefined)
    const uniq = [...new Map(deps.map((d) => [d.idHex, d])).values()]
    const lamport = Math.max(prev?.fields.lamport ?? 0, ...uniq.map((d) => d.fields.lamport)) + 1
    const id = ids[a] as NodeIdentity
    const e = signEvent({ v: 1, net: NET, author: id.publicKey, seq: (prev?.fields.seq ?? 0) + 1, prev: prev?.id ?? null, deps: uniq.map((d) => d.id), lamport, time: 1_700_000_000_000 + out.length, type, body } as EventFields, id)
    heads[a] = e
    out.push(e)
  }
  for (let a = 0; a < authors; a++) {
    emit(a, 'node.join', { hostname: `host-${a}`, cluster: `c${a % 3}`, os: 'linux', arch: 'amd64', version: '0.1.0', addrs: [], caps: [], role: a === 0 ? 'master' : 'auto' })
  }
  const settingsChange = makeSettingsChange(initialSettings(), (ids[0] as NodeIdentity).authorHex, 'serverCount', 3)
  emit(0, 'settings.change', { change: settingsChange })
  while (out.length < count) {
    const a = rand(authors)
    const k = rand(10)
    if (k < 4) emit(a, 'ip.claim', { addr: `10.1.${rand(4)}.${1 + rand(250)}` })
    else if (k < 6) emit(a, 'route.advertise', { cidr: `172.${16 + rand(8)}.${rand(256)}.0/24` })
    else if (k < 7) emit(a, 'route.withdraw', { cidr: `172.${16 + rand(8)}.${rand(256)}.0/24` })
    else if (k < 9) {
      emit(a, 'service.export', {
        cluster: `c${a % 3}`, namespace: 'default', name: `svc-${rand(50)}`, type: 'ClusterSetIP',
        ports: [{ name: 'http', protocol: 'TCP', port: 80 + rand(3) }], sessionAffinity: 'None', labels: {}, annotations: {}
      })
    } else emit(a, 'role.claim', { cluster: `c${a % 3}`, role: 'auto' })
  }
  return out
}

export async function run (): Promise<void> {
  const N = 100_000
  const t0 = performance.now()
  const events = generate(N)
  line('generate_signed_events', performance.now() - t0, 'ms')

  // Full refold: one engine, every event inserted at once (fold from scratch).
  let best = Number.POSITIVE_INFINITY
  let engine = new FoldEngine({ network: networkReducer() })
  for (let i = 0; i < 3; i++) {
    engine = new FoldEngine({ network: networkReducer() })
    const t = performance.now()
    engine.insert(events)
    best = Math.min(best, performance.now() - t)
  }
  line('full_refold_100k_all_projections', best, 'ms', '< 1000')
  const tv = performance.now()
  const view = networkView(engine.states().network)
  line('derive_view_at_100k', performance.now() - tv, 'ms')
  line('members_at_100k', view.members.length, 'members')

  // Incremental: fold the first N - K events of the total order, then append the last K one at
  // a time (each sorts after everything folded: the append path). Separately, K events in
  // generation order, most of which sort before already-folded ones (late arrivals: refolds).
  const K = 1000
  const ordered = [...events].sort(compareEvents)
  const inc = new FoldEngine({ network: networkReducer() })
  inc.insert(ordered.slice(0, N - K))
  const ti = performance.now()
  for (const e of ordered.slice(N - K)) inc.insert([e])
  line('incremental_append_one_event', (performance.now() - ti) / K, 'ms', '< 1')
  const late = new FoldEngine({ network: networkReducer() })
  late.insert(events.slice(0, N - K))
  const tl = performance.now()
  for (const e of events.slice(N - K)) late.insert([e])
  line('late_arrival_one_event', (performance.now() - tl) / K, 'ms')
  const same = JSON.stringify(networkView(inc.states().network)) === JSON.stringify(view) &&
    JSON.stringify(networkView(late.states().network)) === JSON.stringify(view)
  line('incremental_equals_full', same ? 1 : 0, 'bool', '1')
}
