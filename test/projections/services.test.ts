import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { compareEvents, signEvent, type EventFields, type SignedEvent } from '../../src/log/event.js'
import { identityFromSeed, type NodeIdentity } from '../../src/log/identity.js'
import { networkIdBytes } from '../../src/log/token.js'
import type { BodyOf, EventType } from '../../src/log/bodies.js'
import { FoldEngine, type Reducer } from '../../src/crdt/fold.js'
import { comparePositions, positionOf, type Position } from '../../src/projections/position.js'
import { claimServiceAddress, initialServiceAddresses, serviceAddressOf, slotAddress } from '../../src/projections/service-addresses.js'
import {
  applyServices, cloneServices, CONFLICT_REASONS, deriveServices, initialServices, MAX_IGNORED,
  type ConflictReason, type ExportStatus, type ServiceImport, type ServicesState, type ServicesView
} from '../../src/projections/services.js'

// ---- helpers ----

const NET = networkIdBytes({ secret: new Uint8Array(32).fill(7) })
const ids: NodeIdentity[] = Array.from({ length: 8 }, (_, i) => identityFromSeed(new Uint8Array(32).fill(i + 1)))

/** A signed event with the given lamport (seq = lamport, so the chain rules hold). */
function ev<T extends EventType> (who: NodeIdentity, lamport: number, type: T, body: BodyOf<T>): SignedEvent {
  return signEvent({
    v: 1, net: NET, author: who.publicKey, seq: lamport, prev: lamport > 1 ? new Uint8Array(32) : null, deps: [], lamport, time: 0, type, body
  } as unknown as EventFields, who)
}

type Spec = Partial<Omit<BodyOf<'service.export'>, 'cluster'>>
const http = { name: 'http', protocol: 'TCP', port: 80 } as const

function exportBody (cluster: string, spec: Spec = {}): BodyOf<'service.export'> {
  return {
    cluster,
    namespace: 'shop',
    name: 'web',
    type: 'ClusterSetIP',
    ports: [http],
    sessionAffinity: 'None',
    labels: {},
    annotations: {},
    ...spec
  }
}

function unexportBody (cluster: string, namespace = 'shop', name = 'web'): BodyOf<'service.unexport'> {
  return { cluster, namespace, name }
}

/** A tiny world: membership is set by the test, events are applied in the order given. */
class World {
  readonly state: ServicesState = initialServices()
  readonly membership = new Map<string, string>()
  private lamport = 0
  join (who: NodeIdentity, cluster: string): this { this.membership.set(who.authorHex, cluster); return this }
  leave (who: NodeIdentity): this { this.membership.delete(who.authorHex); return this }
  apply (e: SignedEvent): SignedEvent {
    applyServices(this.state, e, (a) => this.membership.get(a))
    return e
  }
  export (who: NodeIdentity, cluster: string, spec: Spec = {}): SignedEvent {
    return this.apply(ev(who, ++this.lamport, 'service.export', exportBody(cluster, spec)))
  }
  unexport (who: NodeIdentity, cluster: string, namespace = 'shop', name = 'web'): SignedEvent {
    return this.apply(ev(who, ++this.lamport, 'service.unexport', unexportBody(cluster, namespace, name)))
  }
  activeClusters (): Set<string> { return new Set(this.membership.values()) }
  view (): ServicesView { return deriveServices(this.state, this.activeClusters()) }
}

const A = ids[0] as NodeIdentity
const A2 = ids[1] as NodeIdentity
const B = ids[2] as NodeIdentity
const C = ids[3] as NodeIdentity
const OUTSIDER = ids[4] as NodeIdentity

function statusOf (v: ServicesView, cluster: string, ns = 'shop', name = 'web'): ExportStatus {
  const s = v.exports.find((x) => x.cluster === cluster && x.namespace === ns && x.name === name)
  if (s === undefined) throw new Error(`no export status for ${ns}/${name}/${cluster}`)
  return s
}

function cond (s: ExportStatus, type: 'Valid' | 'Ready' | 'Conflict'): { status: string, reason: string } {
  const c = s.conditions.find((x) => x.type === type)
  if (c === undefined) throw new Error(`no ${type} condition`)
  return { status: c.status, reason: c.reason }
}

function onlyImport (v: ServicesView): ServiceImport {
  expect(v.imports).toHaveLength(1)
  return v.imports[0] as ServiceImport
}

function world (): World {
  return new World().join(A, 'a').join(A2, 'a').join(B, 'b').join(C, 'c')
}

// ---- unit tests ----

describe('services: service addresses', () => {
  it('the first export of a name claims a stable address in 127.77.0.0/16, one per name and one per exporting cluster', () => {
    const w = world()
    w.export(A, 'a')
    const first = onlyImport(w.view())
    expect(first.address).toMatch(/^127\.77\.\d+\.\d+$/)
    w.export(B, 'b')
    const both = onlyImport(w.view())
    expect(both.address).toBe(first.address)
    expect(both.exporters.map((e) => e.cluster)).toEqual(['a', 'b'])
    expect(both.exporters.map((e) => e.author)).toEqual([A.authorHex, B.authorHex])
    const addrs = [both.address, ...both.exporters.map((e) => e.address)]
    expect(new Set(addrs).size).toBe(3)
    // The first exporter withdraws: the name keeps its address; b keeps its own.
    w.unexport(A, 'a')
    const after = onlyImport(w.view())
    expect(after.address).toBe(first.address)
    expect(after.exporters).toEqual([both.exporters[1]])
    w.unexport(B, 'b')
    expect(w.state.addresses.byKey.size).toBe(0)
  })

  it('a collision on the hashed slot goes to the next free address; every replica folds the same', () => {
    const s = initialServiceAddresses()
    for (let i = 0; i < 2000; i++) claimServiceAddress(s, `ns/svc-${i}`)
    expect(s.bySlot.size).toBe(2000)
    expect(new Set([...s.byKey.values()]).size).toBe(2000)
    const again = initialServiceAddresses()
    for (let i = 0; i < 2000; i++) claimServiceAddress(again, `ns/svc-${i}`)
    expect([...again.byKey]).toEqual([...s.byKey])
    expect(serviceAddressOf(s, 'ns', 'svc-7')).toBe(slotAddress(s.byKey.get('ns/svc-7') as number))
  })

  it('property: an address is held exactly while its key is exported, is unique, and never changes while held', () => {
    const ops = fc.array(fc.record({
      who: fc.constantFrom(0, 2, 3),
      unexport: fc.boolean(),
      name: fc.constantFrom('web', 'api', 'db')
    }), { maxLength: 40 })
    fc.assert(fc.property(ops, (list) => {
      const w = world()
      const seen = new Map<string, number>()
      const who = [A, A2, B, C]
      const clusterOf = ['a', 'a', 'b', 'c']
      for (const op of list) {
        const id = who[op.who] as NodeIdentity
        const cluster = clusterOf[op.who] as string
        if (op.unexport) w.unexport(id, cluster, 'shop', op.name)
        else w.export(id, cluster, { name: op.name })
        const held = w.state.addresses
        const wanted = new Set<string>()
        for (const r of w.state.exports.values()) { wanted.add(`${r.namespace}/${r.name}`); wanted.add(`${r.namespace}/${r.name}/${r.cluster}`) }
        expect(new Set(held.byKey.keys())).toEqual(wanted)
        expect(new Set(held.byKey.values()).size).toBe(held.byKey.size)
        for (const [k, slot] of seen) if (held.byKey.has(k)) expect(held.byKey.get(k)).toBe(slot)
        for (const k of [...seen.keys()]) if (!held.byKey.has(k)) seen.delete(k)
        for (const [k, slot] of held.byKey) seen.set(k, slot)
      }
    }), { numRuns: 200 })
  })

  it('an export the projection ignores (author of another cluster) claims nothing', () => {
    const w = world()
    w.export(A, 'b') // A is a member of cluster a
    expect(w.state.addresses.byKey.size).toBe(0)
    expect(w.view().imports).toEqual([])
  })
})

describe('services: exports and imports', () => {
  it('one export makes one import with Valid, Ready=Exported and no conflicts', () => {
    const w = world()
    const e = w.export(A, 'a', { ports: [http, { name: 'grpc', protocol: 'TCP', port: 9000, appProtocol: 'kubernetes.io/h2c' }] })
    const v = w.view()
    const imp = onlyImport(v)
    expect(imp).toMatchObject({ namespace: 'shop', name: 'web', type: 'ClusterSetIP', clusters: ['a'], sessionAffinity: 'None', conflicts: [] })
    expect(imp.ports).toEqual([
      { name: 'http', protocol: 'TCP', port: 80, clusters: ['a'] },
      { name: 'grpc', protocol: 'TCP', port: 9000, appProtocol: 'kubernetes.io/h2c', clusters: ['a'] }
    ])
    expect(imp.oldest).toEqual({ cluster: 'a', created: positionOf(e) })
    const s = statusOf(v, 'a')
    expect(s.contributing).toBe(true)
    expect(cond(s, 'Valid')).toEqual({ status: 'True', reason: 'Valid' })
    expect(cond(s, 'Ready')).toEqual({ status: 'True', reason: 'Exported' })
    expect(cond(s, 'Conflict')).toEqual({ status: 'False', reason: 'NoConflicts' })
    expect(s.conditions.map((c) => c.type)).toEqual(['Valid', 'Ready', 'Conflict'])
  })

  it('identical exports from two clusters merge without conflict; clusters are sorted', () => {
    const w = world()
    w.export(B, 'b')
    w.export(A, 'a')
    const imp = onlyImport(w.view())
    expect(imp.clusters).toEqual(['a', 'b'])
    expect(imp.ports).toEqual([{ ...http, clusters: ['a', 'b'] }])
    expect(imp.conflicts).toEqual([])
    expect(imp.oldest.cluster).toBe('b')
  })

  it('golden: two clusters with different ports → union, PortConflict on every export, per-port clusters', () => {
    const w = world()
    w.export(A, 'a', { ports: [http] })
    w.export(B, 'b', { ports: [http, { name: 'metrics', protocol: 'TCP', port: 9090 }] })
    const v = w.view()
    const imp = onlyImport(v)
    expect(imp.ports).toEqual([
      { name: 'http', protocol: 'TCP', port: 80, clusters: ['a', 'b'] },
      { name: 'metrics', protocol: 'TCP', port: 9090, clusters: ['b'] }
    ])
    expect(imp.conflicts).toEqual(['PortConflict'])
    for (const c of ['a', 'b']) {
      const s = statusOf(v, c)
      expect(s.contributing).toBe(true)
      expect(s.conflicts).toEqual(['PortConflict'])
      expect(cond(s, 'Conflict')).toEqual({ status: 'True', reason: 'PortConflict' })
      expect(cond(s, 'Ready')).toEqual({ status: 'True', reason: 'Exported' })
    }
  })

  it('a port name reused with another definition: the oldest definition wins and goes only to its clusters', () => {
    const w = world()
    w.export(A, 'a', { ports: [http] })
    w.export(B, 'b', { ports: [{ name: 'http', protocol: 'TCP', port: 8080 }] })
    w.export(C, 'c', { ports: [http] })
    const v = w.view()
    const imp = onlyImport(v)
    expect(imp.ports).toEqual([{ ...http, clusters: ['a', 'c'] }])
    expect(imp.clusters).toEqual(['a', 'b', 'c'])
    for (const c of ['a', 'b', 'c']) expect(cond(statusOf(v, c), 'Conflict')).toEqual({ status: 'True', reason: 'PortConflict' })
    const msg = statusOf(v, 'b').conditions[2].message
    expect(msg).toContain('http 8080/TCP from "b" clashes with http 80/TCP')
  })

  it('an appProtocol difference is a different definition', () => {
    const w = world()
    w.export(A, 'a', { ports: [{ ...http, appProtocol: 'http' }] })
    w.export(B, 'b', { ports: [http] })
    const imp = onlyImport(w.view())
    expect(imp.ports).toEqual([{ ...http, appProtocol: 'http', clusters: ['a'] }])
    expect(imp.conflicts).toEqual(['PortConflict'])
  })

  it('unnamed ports count as the empty name; the same port/protocol under two names is kept once', () => {
    const w = world()
    w.export(A, 'a', { ports: [{ protocol: 'TCP', port: 80 }] })
    w.export(B, 'b', { ports: [{ protocol: 'TCP', port: 81 }] })
    w.export(C, 'c', { ports: [{ name: 'web', protocol: 'TCP', port: 80 }, { name: 'dns', protocol: 'UDP', port: 80 }] })
    const imp = onlyImport(w.view())
    expect(imp.ports).toEqual([
      { protocol: 'TCP', port: 80, clusters: ['a'] },
      { name: 'dns', protocol: 'UDP', port: 80, clusters: ['c'] }
    ])
    expect(imp.conflicts).toEqual(['PortConflict'])
  })

  it('golden: type conflict → the oldest type wins, the other export is left out of the import', () => {
    const w = world()
    w.export(A, 'a', { type: 'Headless', ports: [http] })
    w.export(B, 'b', { type: 'ClusterSetIP', ports: [{ name: 'admin', protocol: 'TCP', port: 8443 }] })
    const v = w.view()
    const imp = onlyImport(v)
    expect(imp.type).toBe('Headless')
    expect(imp.clusters).toEqual(['a'])
    expect(imp.ports).toEqual([{ ...http, clusters: ['a'] }])
    expect(imp.conflicts).toEqual(['TypeConflict'])
    const a = statusOf(v, 'a')
    const b = statusOf(v, 'b')
    expect(a.contributing).toBe(true)
    expect(b.contributing).toBe(false)
    expect(cond(a, 'Conflict')).toEqual({ status: 'True', reason: 'TypeConflict' })
    expect(cond(b, 'Conflict')).toEqual({ status: 'True', reason: 'TypeConflict' })
    expect(cond(b, 'Ready')).toEqual({ status: 'False', reason: 'Failed' })
    expect(cond(b, 'Valid')).toEqual({ status: 'True', reason: 'Valid' })
  })

  it('session affinity conflict: the oldest wins, both exports get SessionAffinityConflict', () => {
    const w = world()
    w.export(A, 'a', { sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 60 })
    w.export(B, 'b', { sessionAffinity: 'None' })
    const v = w.view()
    const imp = onlyImport(v)
    expect(imp.sessionAffinity).toBe('ClientIP')
    expect(imp.sessionAffinityTimeoutSeconds).toBe(60)
    expect(imp.conflicts).toEqual(['SessionAffinityConflict'])
    expect(imp.clusters).toEqual(['a', 'b'])
    expect(cond(statusOf(v, 'a'), 'Conflict').reason).toBe('SessionAffinityConflict')
    expect(cond(statusOf(v, 'b'), 'Conflict').reason).toBe('SessionAffinityConflict')
  })

  it('session affinity config conflict only between ClientIP exports; an absent timeout is the default 10800', () => {
    const w = world()
    w.export(A, 'a', { sessionAffinity: 'ClientIP' })
    w.export(B, 'b', { sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 10800 })
    expect(onlyImport(w.view()).conflicts).toEqual([])
    w.export(C, 'c', { sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 30 })
    const imp = onlyImport(w.view())
    expect(imp.conflicts).toEqual(['SessionAffinityConfigConflict'])
    expect(imp.sessionAffinityTimeoutSeconds).toBeUndefined()
    // A None export with a timeout set does not raise a config conflict with a None oldest.
    const w2 = world()
    w2.export(A, 'a')
    w2.export(B, 'b', { sessionAffinityTimeoutSeconds: 99 })
    expect(onlyImport(w2.view()).conflicts).toEqual([])
  })

  it('internalTrafficPolicy, trafficDistribution, labels and annotations: defaults compare equal, differences conflict', () => {
    const w = world()
    w.export(A, 'a', { trafficDistribution: 'PreferClose' })
    w.export(B, 'b', { internalTrafficPolicy: 'Cluster', trafficDistribution: 'PreferSameZone' })
    expect(onlyImport(w.view()).conflicts).toEqual([])
    w.export(C, 'c', { internalTrafficPolicy: 'Local', trafficDistribution: 'PreferSameNode', labels: { tier: 'x' }, annotations: { note: 'y' } })
    const v = w.view()
    const imp = onlyImport(v)
    expect(imp.conflicts).toEqual(['LabelsConflict', 'AnnotationsConflict', 'InternalTrafficPolicyConflict', 'TrafficDistributionConflict'])
    expect(imp.internalTrafficPolicy).toBeUndefined()
    expect(imp.trafficDistribution).toBe('PreferClose')
    expect(imp.labels).toEqual({})
    expect(cond(statusOf(v, 'a'), 'Conflict')).toEqual({ status: 'True', reason: 'LabelsConflict,AnnotationsConflict,InternalTrafficPolicyConflict,TrafficDistributionConflict' })
  })

  it('global properties come from the oldest export by log position, not by cluster name', () => {
    const w = world()
    w.export(C, 'c', { labels: { owner: 'c' } })
    w.export(A, 'a', { labels: { owner: 'a' } })
    const imp = onlyImport(w.view())
    expect(imp.labels).toEqual({ owner: 'c' })
    expect(imp.oldest.cluster).toBe('c')
  })

  it('ExternalName is Valid=False InvalidServiceType and never part of an import', () => {
    const w = world()
    w.export(A, 'a', { type: 'ExternalName', ports: [] })
    let v = w.view()
    expect(v.imports).toEqual([])
    const s = statusOf(v, 'a')
    expect(cond(s, 'Valid')).toEqual({ status: 'False', reason: 'InvalidServiceType' })
    expect(cond(s, 'Ready')).toEqual({ status: 'False', reason: 'Failed' })
    expect(cond(s, 'Conflict')).toEqual({ status: 'False', reason: 'NoConflicts' })
    // An older ExternalName export does not make a later valid one lose anything.
    w.export(B, 'b', { type: 'Headless' })
    v = w.view()
    expect(onlyImport(v)).toMatchObject({ type: 'Headless', clusters: ['b'], conflicts: [] })
  })

  it('unexport removes the cluster contribution; the last unexport removes the import', () => {
    const w = world()
    w.export(A, 'a', { ports: [http] })
    w.export(B, 'b', { ports: [{ name: 'metrics', protocol: 'TCP', port: 9090 }] })
    w.unexport(A, 'a')
    let v = w.view()
    const imp = onlyImport(v)
    expect(imp.clusters).toEqual(['b'])
    expect(imp.ports).toEqual([{ name: 'metrics', protocol: 'TCP', port: 9090, clusters: ['b'] }])
    expect(imp.conflicts).toEqual([])
    expect(v.exports.map((x) => x.cluster)).toEqual(['b'])
    w.unexport(B, 'b')
    v = w.view()
    expect(v.imports).toEqual([])
    expect(v.exports).toEqual([])
  })

  it('any active member of the cluster may update or unexport the cluster export', () => {
    const w = world()
    const first = w.export(A, 'a')
    w.export(A2, 'a', { labels: { v: '2' } })
    let v = w.view()
    expect(statusOf(v, 'a')).toMatchObject({ author: A2.authorHex, created: positionOf(first) })
    w.unexport(A2, 'a')
    v = w.view()
    expect(v.imports).toEqual([])
  })

  it('exports and unexports by non-members or for another cluster are ignored with a reason', () => {
    const w = world()
    w.export(OUTSIDER, 'a')
    w.export(B, 'a')
    w.unexport(C, 'c')
    const v = w.view()
    expect(v.imports).toEqual([])
    expect(v.exports).toEqual([])
    expect(v.ignored.map((i) => i.reason)).toEqual(['NotMember', 'WrongCluster', 'NotExported'])
    expect(v.ignored[0]).toMatchObject({ author: OUTSIDER.authorHex, type: 'service.export', namespace: 'shop', name: 'web', cluster: 'a' })
    expect(v.ignoredTotal).toBe(3)
    // A wrong-cluster unexport does not remove the real export.
    w.export(A, 'a')
    w.unexport(B, 'a')
    expect(onlyImport(w.view()).clusters).toEqual(['a'])
  })

  it('a departed member can no longer export, but its cluster export stays while the cluster has members', () => {
    const w = world()
    w.export(A, 'a')
    w.leave(A)
    expect(onlyImport(w.view()).clusters).toEqual(['a'])
    w.export(A, 'a', { labels: { x: 'y' } })
    expect(w.view().ignored.at(-1)?.reason).toBe('NotMember')
  })

  it('golden: the last exporting cluster leaving removes the import; a rejoin restores it with its creation position', () => {
    const w = world()
    const ea = w.export(A, 'a', { labels: { from: 'a' } })
    w.export(B, 'b', { labels: { from: 'b' } })
    w.leave(A).leave(A2)
    let v = w.view()
    let imp = onlyImport(v)
    expect(imp.clusters).toEqual(['b'])
    expect(imp.labels).toEqual({ from: 'b' })
    expect(imp.conflicts).toEqual([])
    expect(cond(statusOf(v, 'a'), 'Ready')).toEqual({ status: 'False', reason: 'Pending' })
    expect(statusOf(v, 'a').contributing).toBe(false)
    w.leave(B)
    v = w.view()
    expect(v.imports).toEqual([])
    expect(v.exports.map((x) => cond(x, 'Ready').reason)).toEqual(['Pending', 'Pending'])
    w.join(A2, 'a').join(B, 'b')
    imp = onlyImport(w.view())
    expect(imp.oldest).toEqual({ cluster: 'a', created: positionOf(ea) })
    expect(imp.labels).toEqual({ from: 'a' })
    expect(imp.conflicts).toEqual(['LabelsConflict'])
  })

  it('re-exporting keeps the creation position; unexport then export starts a new one', () => {
    const w = world()
    const ea = w.export(A, 'a', { ports: [http] })
    w.export(B, 'b', { ports: [{ name: 'http', protocol: 'TCP', port: 8080 }] })
    const ea2 = w.export(A, 'a', { ports: [http, { name: 'admin', protocol: 'TCP', port: 81 }] })
    let v = w.view()
    expect(statusOf(v, 'a')).toMatchObject({ created: positionOf(ea), updated: positionOf(ea2) })
    expect(onlyImport(v).oldest.cluster).toBe('a')
    expect(onlyImport(v).ports.map((p) => `${p.name ?? ''}:${p.port}:${p.clusters.join('+')}`)).toEqual(['http:80:a', 'admin:81:a'])
    w.unexport(A, 'a')
    const ea3 = w.export(A, 'a', { ports: [http] })
    v = w.view()
    expect(statusOf(v, 'a').created).toEqual(positionOf(ea3))
    expect(onlyImport(v).oldest.cluster).toBe('b')
    expect(onlyImport(v).ports).toEqual([{ name: 'http', protocol: 'TCP', port: 8080, clusters: ['b'] }])
  })

  it('different services and namespaces are independent and sorted', () => {
    const w = world()
    w.export(A, 'a', { namespace: 'zeta', name: 'api' })
    w.export(B, 'b', { namespace: 'alpha', name: 'db', ports: [{ name: 'pg', protocol: 'TCP', port: 5432 }] })
    w.export(B, 'b', { namespace: 'alpha', name: 'cache', ports: [{ name: 'redis', protocol: 'TCP', port: 6379 }] })
    const v = w.view()
    expect(v.imports.map((i) => `${i.namespace}/${i.name}`)).toEqual(['alpha/cache', 'alpha/db', 'zeta/api'])
    expect(v.imports.every((i) => i.conflicts.length === 0)).toBe(true)
  })

  it('cloneServices gives an independent snapshot', () => {
    const w = world()
    w.export(A, 'a')
    const snap = cloneServices(w.state)
    const before = deriveServices(snap, w.activeClusters())
    w.export(B, 'b', { ports: [{ name: 'x', protocol: 'UDP', port: 53 }] })
    w.unexport(A, 'a')
    w.export(OUTSIDER, 'a')
    expect(deriveServices(snap, w.activeClusters())).toEqual(before)
    expect(snap.ignoredTotal).toBe(0)
  })

  it('keeps the most recent MAX_IGNORED ignored events and an exact count', () => {
    const w = world()
    for (let i = 0; i < MAX_IGNORED + 5; i++) w.export(OUTSIDER, 'a')
    const v = w.view()
    expect(v.ignored).toHaveLength(MAX_IGNORED)
    expect(v.ignoredTotal).toBe(MAX_IGNORED + 5)
    expect(v.ignored[0]?.position.lamport).toBe(6)
  })

  it('other event types are ignored silently', () => {
    const w = world()
    w.apply(ev(A, 1, 'node.join', { hostname: 'h', cluster: 'a', os: 'linux', arch: 'amd64', version: '0', addrs: [], caps: [], role: 'auto' }))
    expect(w.view()).toEqual({ imports: [], exports: [], ignored: [], ignoredTotal: 0 })
  })
})

// ---- property tests: a plain reference implementation of the KEP rules ----

interface RefExport { ns: string, name: string, cluster: string, body: BodyOf<'service.export'>, created: Position }

interface RefResult {
  imports: Array<Omit<ServiceImport, 'oldest' | 'address' | 'exporters'> & { oldestCluster: string }>
  exports: Array<{ key: string, contributing: boolean, conflicts: string[], conditions: string[] }>
}

function referenceServices (events: readonly SignedEvent[], memberOf: (a: string) => string | undefined, active: ReadonlySet<string>): RefResult {
  // 1. Which exports exist: the latest export per (ns, name, cluster) by an active member of that
  //    cluster, created at the first export after the last unexport.
  const live: RefExport[] = []
  for (const e of events) {
    const f = e.fields
    if (f.type !== 'service.export' && f.type !== 'service.unexport') continue
    if (memberOf(e.authorHex) !== f.body.cluster) continue
    const i = live.findIndex((x) => x.ns === f.body.namespace && x.name === f.body.name && x.cluster === f.body.cluster)
    if (f.type === 'service.unexport') {
      if (i >= 0) live.splice(i, 1)
    } else if (i >= 0) {
      live[i] = { ...(live[i] as RefExport), body: f.body }
    } else {
      live.push({ ns: f.body.namespace, name: f.body.name, cluster: f.body.cluster, body: f.body, created: positionOf(e) })
    }
  }
  const result: RefResult = { imports: [], exports: [] }
  const services = [...new Set(live.map((x) => `${x.ns}/${x.name}`))].sort()
  for (const svc of services) {
    const all = live.filter((x) => `${x.ns}/${x.name}` === svc)
    // 2. Candidates: valid (not ExternalName) exports of clusters with an active member, oldest first.
    const candidates = all.filter((x) => x.body.type !== 'ExternalName' && active.has(x.cluster))
      .sort((x, y) => comparePositions(x.created, y.created))
    const winner = candidates[0]
    let reasons: string[] = []
    let contributing: RefExport[] = []
    if (winner !== undefined) {
      const w = winner.body
      contributing = candidates.filter((x) => x.body.type === w.type)
      const rest = contributing.filter((x) => x !== winner)
      const found: string[] = []
      // Ports: walk every (export, port) oldest first; keep a port unless its name or its
      // (port, protocol) is taken by a different kept port.
      const kept: Array<{ name: string, protocol: string, port: number, app: string, clusters: string[] }> = []
      let dropped = false
      for (const x of contributing) {
        for (const p of x.body.ports) {
          const same = kept.find((k) => k.name === (p.name ?? '') && k.protocol === p.protocol && k.port === p.port && k.app === (p.appProtocol ?? ''))
          if (same !== undefined) {
            if (!same.clusters.includes(x.cluster)) same.clusters.push(x.cluster)
          } else if (kept.some((k) => k.name === (p.name ?? '') || (k.port === p.port && k.protocol === p.protocol))) {
            dropped = true
          } else {
            kept.push({ name: p.name ?? '', protocol: p.protocol, port: p.port, app: p.appProtocol ?? '', clusters: [x.cluster] })
          }
        }
      }
      const portKeys = (b: BodyOf<'service.export'>): string => [...new Set(b.ports.map((p) => JSON.stringify([p.name ?? '', p.protocol, p.port, p.appProtocol ?? ''])))].sort().join('|')
      if (dropped || rest.some((x) => portKeys(x.body) !== portKeys(w))) found.push('PortConflict')
      if (candidates.some((x) => x.body.type !== w.type)) found.push('TypeConflict')
      if (rest.some((x) => x.body.sessionAffinity !== w.sessionAffinity)) found.push('SessionAffinityConflict')
      if (w.sessionAffinity === 'ClientIP' && rest.some((x) => x.body.sessionAffinity === 'ClientIP' &&
        (x.body.sessionAffinityTimeoutSeconds ?? 10800) !== (w.sessionAffinityTimeoutSeconds ?? 10800))) found.push('SessionAffinityConfigConflict')
      const mapKey = (m: Record<string, string>): string => JSON.stringify(Object.entries(m).sort())
      if (rest.some((x) => mapKey(x.body.labels) !== mapKey(w.labels))) found.push('LabelsConflict')
      if (rest.some((x) => mapKey(x.body.annotations) !== mapKey(w.annotations))) found.push('AnnotationsConflict')
      if (rest.some((x) => (x.body.internalTrafficPolicy ?? 'Cluster') !== (w.internalTrafficPolicy ?? 'Cluster'))) found.push('InternalTrafficPolicyConflict')
      const td = (b: BodyOf<'service.export'>): string => (b.trafficDistribution === 'PreferClose' ? 'PreferSameZone' : b.trafficDistribution ?? '')
      if (rest.some((x) => td(x.body) !== td(w))) found.push('TrafficDistributionConflict')
      reasons = found
      result.imports.push({
        namespace: winner.ns,
        name: winner.name,
        type: w.type as 'ClusterSetIP' | 'Headless',
        ports: kept.map((k) => ({
          ...(k.name !== '' ? { name: k.name } : {}),
          protocol: k.protocol as 'TCP',
          port: k.port,
          ...(k.app !== '' ? { appProtocol: k.app } : {}),
          clusters: [...k.clusters].sort()
        })),
        sessionAffinity: w.sessionAffinity,
        ...(w.sessionAffinityTimeoutSeconds !== undefined ? { sessionAffinityTimeoutSeconds: w.sessionAffinityTimeoutSeconds } : {}),
        ...(w.internalTrafficPolicy !== undefined ? { internalTrafficPolicy: w.internalTrafficPolicy } : {}),
        ...(w.trafficDistribution !== undefined ? { trafficDistribution: w.trafficDistribution } : {}),
        labels: w.labels,
        annotations: w.annotations,
        clusters: [...new Set(contributing.map((x) => x.cluster))].sort(),
        oldestCluster: winner.cluster,
        conflicts: reasons as ConflictReason[]
      })
    }
    for (const x of [...all].sort((p, q) => (p.cluster < q.cluster ? -1 : 1))) {
      const isContributing = contributing.includes(x)
      const participates = x.body.type !== 'ExternalName' && active.has(x.cluster)
      const valid = x.body.type === 'ExternalName' ? 'False/InvalidServiceType' : 'True/Valid'
      const ready = isContributing ? 'True/Exported' : x.body.type === 'ExternalName' ? 'False/Failed' : !active.has(x.cluster) ? 'False/Pending' : 'False/Failed'
      const conflict = participates && reasons.length > 0 ? `True/${reasons.join(',')}` : 'False/NoConflicts'
      result.exports.push({ key: `${svc}/${x.cluster}`, contributing: isContributing, conflicts: participates ? reasons : [], conditions: [valid, ready, conflict] })
    }
  }
  return result
}

function summarize (v: ServicesView): RefResult {
  return {
    imports: v.imports.map(({ oldest, address: _address, exporters: _exporters, ...rest }) => ({ ...rest, oldestCluster: oldest.cluster })),
    exports: v.exports.map((x) => ({
      key: `${x.namespace}/${x.name}/${x.cluster}`,
      contributing: x.contributing,
      conflicts: [...x.conflicts],
      conditions: x.conditions.map((c) => `${c.status}/${c.reason}`)
    }))
  }
}

const CLUSTERS = ['a', 'b', 'c'] as const
/** Author index → cluster; index 5 is never a member. */
const HOME: Record<number, string | undefined> = { 0: 'a', 1: 'a', 2: 'b', 3: 'c', 4: 'c', 5: undefined }
const memberOfHome = (a: string): string | undefined => {
  const i = ids.findIndex((x) => x.authorHex === a)
  return HOME[i]
}

const arbPort = fc.record({
  name: fc.option(fc.constantFrom('http', 'grpc', 'metrics'), { nil: undefined }),
  protocol: fc.constantFrom('TCP' as const, 'UDP' as const),
  port: fc.constantFrom(80, 443, 9090),
  appProtocol: fc.option(fc.constantFrom('http', 'kubernetes.io/h2c'), { nil: undefined, freq: 4 })
}).map((p) => {
  const out: BodyOf<'service.export'>['ports'][number] = { protocol: p.protocol, port: p.port }
  if (p.name !== undefined) out.name = p.name
  if (p.appProtocol !== undefined) out.appProtocol = p.appProtocol
  return out
})

const arbSpec = fc.record({
  type: fc.constantFrom('ClusterSetIP' as const, 'ClusterSetIP' as const, 'ClusterSetIP' as const, 'Headless' as const, 'ExternalName' as const),
  ports: fc.array(arbPort, { maxLength: 3 }),
  sessionAffinity: fc.constantFrom('None' as const, 'ClientIP' as const),
  sessionAffinityTimeoutSeconds: fc.option(fc.constantFrom(60, 10800), { nil: undefined }),
  internalTrafficPolicy: fc.option(fc.constantFrom('Cluster' as const, 'Local' as const), { nil: undefined }),
  trafficDistribution: fc.option(fc.constantFrom('PreferClose', 'PreferSameZone', 'PreferSameNode'), { nil: undefined }),
  labels: fc.constantFrom({}, { tier: 'web' }, { tier: 'db' }),
  annotations: fc.constantFrom({}, { note: 'x' })
})

const arbOp = fc.record({
  author: fc.integer({ min: 0, max: 5 }),
  cluster: fc.constantFrom(...CLUSTERS),
  service: fc.oneof(
    { arbitrary: fc.constant({ namespace: 'shop', name: 'web' }), weight: 6 },
    { arbitrary: fc.constant({ namespace: 'shop', name: 'api' }), weight: 1 },
    { arbitrary: fc.constant({ namespace: 'ops', name: 'web' }), weight: 1 }
  ),
  unexport: fc.integer({ min: 0, max: 5 }).map((n) => n === 0),
  lamport: fc.integer({ min: 1, max: 40 }),
  spec: arbSpec
})

type Op = typeof arbOp extends fc.Arbitrary<infer T> ? T : never

function buildEvents (ops: readonly Op[]): SignedEvent[] {
  const events = ops.map((op) => {
    const who = ids[op.author] as NodeIdentity
    const { namespace, name } = op.service
    if (op.unexport) return ev(who, op.lamport, 'service.unexport', { cluster: op.cluster, namespace, name })
    const spec = Object.fromEntries(Object.entries(op.spec).filter(([, v]) => v !== undefined)) as Spec
    return ev(who, op.lamport, 'service.export', { ...exportBody(op.cluster, spec), namespace, name })
  })
  return events.sort(compareEvents)
}

const HOME_AUTHORS: Record<string, number[]> = { a: [0, 1], b: [2], c: [3, 4] }

/**
 * Most events are by a member of the cluster they name; every fourth keeps its random author
 * (often a non-member or a member of another cluster: those must be ignored).
 */
const arbOps = fc.array(arbOp, { maxLength: 24 }).map((ops) => ops.map((op, i) => {
  if (i % 4 === 3) return op
  const homes = HOME_AUTHORS[op.cluster] as number[]
  return { ...op, author: homes[op.author % homes.length] as number }
}))

const arbActive = fc.oneof(
  { arbitrary: fc.constant([...CLUSTERS]), weight: 3 },
  { arbitrary: fc.subarray([...CLUSTERS]), weight: 1 }
).map((xs) => new Set<string>(xs))

describe('services: properties', () => {
  it('deriveServices equals the reference implementation of the KEP rules', () => {
    fc.assert(fc.property(arbOps, arbActive, (ops, active) => {
      const events = buildEvents(ops)
      const s = initialServices()
      for (const e of events) applyServices(s, e, memberOfHome)
      const view = deriveServices(s, active)
      expect(summarize(view)).toEqual(referenceServices(events, memberOfHome, active))
    }), { numRuns: 300 })
  })

  it('invariants: imports list only contributing clusters; Ready=True exactly for contributing exports', () => {
    fc.assert(fc.property(arbOps, arbActive, (ops, active) => {
      const s = initialServices()
      for (const e of buildEvents(ops)) applyServices(s, e, memberOfHome)
      const v = deriveServices(s, active)
      for (const imp of v.imports) {
        const mine = v.exports.filter((x) => x.namespace === imp.namespace && x.name === imp.name)
        expect(imp.clusters).toEqual(mine.filter((x) => x.contributing).map((x) => x.cluster))
        for (const p of imp.ports) for (const c of p.clusters) expect(imp.clusters).toContain(c)
        const names = imp.ports.map((p) => p.name ?? '')
        expect(new Set(names).size).toBe(names.length)
        const numbers = imp.ports.map((p) => `${p.protocol}/${p.port}`)
        expect(new Set(numbers).size).toBe(numbers.length)
        for (const x of mine) if (x.contributing) expect(x.conflicts).toEqual(imp.conflicts)
        expect(imp.conflicts.every((c) => (CONFLICT_REASONS as readonly string[]).includes(c))).toBe(true)
      }
      for (const x of v.exports) {
        expect(x.conditions[1].status === 'True').toBe(x.contributing)
        expect(x.contributing ? active.has(x.cluster) && x.type !== 'ExternalName' : true).toBe(true)
      }
    }), { numRuns: 200 })
  })

  it('a fold with random insertion order and checkpoints gives the same view as a sequential fold', () => {
    const reducer: Reducer<ServicesState> = {
      initial: initialServices,
      clone: cloneServices,
      apply: (s, e) => { applyServices(s, e, memberOfHome) }
    }
    fc.assert(fc.property(arbOps, arbActive, fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 8 }), (ops, active, cuts) => {
      const events = buildEvents(ops)
      const shuffled = [...events].sort((x, y) => (x.idHex < y.idHex ? -1 : 1))
      const engine = new FoldEngine({ services: reducer }, { checkpointEvery: 3 })
      let i = 0
      let k = 0
      while (i < shuffled.length) {
        const n = cuts[k++ % cuts.length] as number
        engine.insert(shuffled.slice(i, i + n))
        i += n
      }
      const sequential = initialServices()
      for (const e of events) applyServices(sequential, e, memberOfHome)
      expect(deriveServices(engine.states().services, active)).toEqual(deriveServices(sequential, active))
    }), { numRuns: 100 })
  })
})
