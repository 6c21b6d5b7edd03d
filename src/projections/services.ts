import type { SignedEvent } from '../log/event.js'
import type { BodyOf } from '../log/bodies.js'
import { comparePositions, positionOf, type Position } from './position.js'
import {
  claimServiceAddress, cloneServiceAddresses, initialServiceAddresses, releaseServiceAddress, serviceAddressOf,
  type ServiceAddressState
} from './service-addresses.js'

/**
 * Multi-cluster services, following the Kubernetes MCS API (KEP-1645, `multicluster.x-k8s.io`
 * v1beta1). See docs/projections-services-dns.md for the rules and the KEP sections they
 * come from.
 *
 * The reducer only records exports; `deriveServices` computes imports and export statuses
 * from them and from the set of clusters that currently have an active member. Records are
 * replaced, never mutated, so a snapshot is a shallow copy of the map.
 */

export type ExportBody = BodyOf<'service.export'>
export type ExportPort = ExportBody['ports'][number]

/** One cluster's export of one Service, as the log last stated it. */
export interface ExportRecord {
  readonly namespace: string
  readonly name: string
  readonly cluster: string
  /** The latest `service.export` body for this key. */
  readonly spec: ExportBody
  /** Position of the export that started this record: the KEP's `creationTimestamp`. */
  readonly created: Position
  /** Position of the latest export that updated it. */
  readonly updated: Position
  /** Author (hex) of the latest export. */
  readonly author: string
}

export type IgnoredReason = 'NotMember' | 'WrongCluster' | 'NotExported'

/** A service event that changed nothing, and why. */
export interface IgnoredServiceEvent {
  readonly id: string
  readonly author: string
  readonly type: 'service.export' | 'service.unexport'
  readonly namespace: string
  readonly name: string
  readonly cluster: string
  readonly reason: IgnoredReason
  readonly message: string
  readonly position: Position
}

export interface ServicesState {
  /** `namespace/name/cluster` → export. */
  exports: Map<string, ExportRecord>
  /** The most recent ignored events (at most MAX_IGNORED), oldest first. Replaced, never mutated. */
  ignored: readonly IgnoredServiceEvent[]
  /** How many events were ignored in all. */
  ignoredTotal: number
  /** Service addresses, claimed by the first export of a name (see service-addresses.ts). */
  addresses: ServiceAddressState
}

/** Ignored events kept in the state; older ones are dropped (the count stays exact). */
export const MAX_IGNORED = 100

// ---- KEP / mcs-api names (sigs.k8s.io/mcs-api pkg/apis/v1beta1/serviceexport.go) ----

export const CONDITION_VALID = 'Valid'
export const CONDITION_READY = 'Ready'
export const CONDITION_CONFLICT = 'Conflict'

export type ConditionType = typeof CONDITION_VALID | typeof CONDITION_READY | typeof CONDITION_CONFLICT
export type ConditionStatus = 'True' | 'False' | 'Unknown'

/** Reasons of the Conflict condition, in the order mcs-api declares them. */
export const CONFLICT_REASONS = [
  'PortConflict',
  'TypeConflict',
  'SessionAffinityConflict',
  'SessionAffinityConfigConflict',
  'LabelsConflict',
  'AnnotationsConflict',
  'InternalTrafficPolicyConflict',
  'TrafficDistributionConflict'
] as const
export type ConflictReason = typeof CONFLICT_REASONS[number]

export type ValidReason = 'Valid' | 'InvalidServiceType'
export type ReadyReason = 'Exported' | 'Pending' | 'Failed'

export interface Condition {
  readonly type: ConditionType
  readonly status: ConditionStatus
  /** One reason, or several Conflict reasons joined by commas (as mcs-api allows). */
  readonly reason: string
  readonly message: string
}

export interface ImportPort {
  readonly name?: string
  readonly protocol: ExportPort['protocol']
  readonly port: number
  readonly appProtocol?: string
  /** Exporting clusters that expose exactly this definition (sorted): where its traffic may go. */
  readonly clusters: readonly string[]
}

/** The derived `ServiceImport` for one `(namespace, name)`. */
export interface ServiceImport {
  readonly namespace: string
  readonly name: string
  readonly type: 'ClusterSetIP' | 'Headless'
  readonly ports: readonly ImportPort[]
  readonly sessionAffinity: ExportBody['sessionAffinity']
  readonly sessionAffinityTimeoutSeconds?: number
  readonly internalTrafficPolicy?: ExportBody['internalTrafficPolicy']
  readonly trafficDistribution?: string
  readonly labels: Readonly<Record<string, string>>
  readonly annotations: Readonly<Record<string, string>>
  /** Clusters whose export is part of this import (sorted): `status.clusters`. */
  readonly clusters: readonly string[]
  /** The export whose global properties won (the oldest contributing one). */
  readonly oldest: { readonly cluster: string, readonly created: Position }
  /** Conflict reasons raised on this service's exports (empty when none). */
  readonly conflicts: readonly ConflictReason[]
  /** The network-wide service address of the name (docs/services.md, "Service addresses"). */
  readonly address?: string
  /** The contributing exports: the only exporters DNS and the data path use (sorted by cluster). */
  readonly exporters: ReadonlyArray<{ readonly cluster: string, readonly author: string, readonly address?: string }>
}

export interface ExportStatus {
  readonly namespace: string
  readonly name: string
  readonly cluster: string
  readonly type: ExportBody['type']
  readonly created: Position
  readonly updated: Position
  readonly author: string
  /** True when this export is part of its ServiceImport. */
  readonly contributing: boolean
  readonly conflicts: readonly ConflictReason[]
  /** Valid, Ready, Conflict — in that order. */
  readonly conditions: readonly [Condition, Condition, Condition]
}

export interface ServicesView {
  /** Sorted by namespace, then name. */
  imports: ServiceImport[]
  /** Sorted by namespace, name, cluster. */
  exports: ExportStatus[]
  ignored: readonly IgnoredServiceEvent[]
  ignoredTotal: number
}

export function exportKey (namespace: string, name: string, cluster: string): string {
  return `${namespace}/${name}/${cluster}`
}

export function initialServices (): ServicesState {
  return { exports: new Map(), ignored: [], ignoredTotal: 0, addresses: initialServiceAddresses() }
}

export function cloneServices (s: ServicesState): ServicesState {
  // Records and the ignored list are replaced, never mutated: sharing them is safe.
  return { exports: new Map(s.exports), ignored: s.ignored, ignoredTotal: s.ignoredTotal, addresses: cloneServiceAddresses(s.addresses) }
}

/**
 * Called for every event in total order. `memberOf(authorHex)` returns the author's current
 * cluster if it is an active member, else undefined.
 */
export function applyServices (s: ServicesState, e: SignedEvent, memberOf: (author: string) => string | undefined): void {
  const f = e.fields
  if (f.type !== 'service.export' && f.type !== 'service.unexport') return
  const { namespace, name, cluster } = f.body
  const ignore = (reason: IgnoredReason, message: string): void => {
    const entry: IgnoredServiceEvent = { id: e.idHex, author: e.authorHex, type: f.type, namespace, name, cluster, reason, message, position: positionOf(e) }
    const kept = s.ignored.length >= MAX_IGNORED ? s.ignored.slice(s.ignored.length - MAX_IGNORED + 1) : s.ignored.slice()
    kept.push(entry)
    s.ignored = kept
    s.ignoredTotal++
  }
  const home = memberOf(e.authorHex)
  if (home === undefined) {
    ignore('NotMember', `${f.type} of ${namespace}/${name} for cluster "${cluster}" by an author that is not an active member`)
    return
  }
  if (home !== cluster) {
    ignore('WrongCluster', `${f.type} of ${namespace}/${name} for cluster "${cluster}" by a member of cluster "${home}"`)
    return
  }
  const key = exportKey(namespace, name, cluster)
  const prior = s.exports.get(key)
  if (f.type === 'service.unexport') {
    if (prior === undefined) {
      ignore('NotExported', `service.unexport of ${namespace}/${name} for cluster "${cluster}", which does not export it`)
      return
    }
    dropExport(s, key, namespace, name)
    return
  }
  const at = positionOf(e)
  s.exports.set(key, { namespace, name, cluster, spec: f.body, created: prior?.created ?? at, updated: at, author: e.authorHex })
  // The first export of a name claims its addresses (ExternalName too: it may change type later).
  claimServiceAddress(s.addresses, `${namespace}/${name}`)
  claimServiceAddress(s.addresses, key)
}

/** A revoked or forked member's exports go, and with them the addresses no export holds any more. */
export function dropExportsOf (s: ServicesState, author: string): void {
  for (const [k, x] of s.exports) {
    if (x.author === author) dropExport(s, k, x.namespace, x.name)
  }
}

function dropExport (s: ServicesState, key: string, namespace: string, name: string): void {
  s.exports.delete(key)
  releaseServiceAddress(s.addresses, key)
  if (![...s.exports.values()].some((r) => r.namespace === namespace && r.name === name)) releaseServiceAddress(s.addresses, `${namespace}/${name}`)
}

// ---- derivation ----

const DEFAULT_SESSION_AFFINITY_TIMEOUT = 10800

/** Kubernetes defaults `internalTrafficPolicy` to Cluster: an absent value equals Cluster. */
function effectiveInternalTrafficPolicy (b: ExportBody): string {
  return b.internalTrafficPolicy ?? 'Cluster'
}

/** `PreferClose` is the older spelling of `PreferSameZone` (Kubernetes 1.33). */
function effectiveTrafficDistribution (b: ExportBody): string {
  const td = b.trafficDistribution ?? ''
  return td === 'PreferClose' ? 'PreferSameZone' : td
}

/** The ClientIP timeout in effect (Kubernetes default 10800 s). */
function effectiveAffinityTimeout (b: ExportBody): number {
  return b.sessionAffinityTimeoutSeconds ?? DEFAULT_SESSION_AFFINITY_TIMEOUT
}

function sameMap (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a)
  if (ka.length !== Object.keys(b).length) return false
  for (const k of ka) if (!Object.hasOwn(b, k) || a[k] !== b[k]) return false
  return true
}

/** The external properties of a port: two ports are the same port when these are equal. */
export function portIdentity (p: ExportPort): string {
  return `${p.name ?? ''}/${p.protocol}/${p.port}/${p.appProtocol ?? ''}`
}

function portSet (b: ExportBody): Set<string> {
  return new Set(b.ports.map(portIdentity))
}

function sameSet (a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false
  for (const x of a) if (!b.has(x)) return false
  return true
}

function describePort (p: ExportPort): string {
  return `${p.name !== undefined ? `${p.name} ` : ''}${p.port}/${p.protocol}${p.appProtocol !== undefined ? ` (${p.appProtocol})` : ''}`
}

interface MergedPort { def: ExportPort, clusters: Set<string> }

/**
 * Union of ports, oldest export first. Like a Service's own ports, the result has no two
 * ports with the same name (the empty name counts as a name) and no two with the same
 * port and protocol; a later definition that clashes with an accepted one is dropped and
 * goes only to the clusters that expose the accepted definition.
 */
function mergePorts (contributing: readonly ExportRecord[]): { ports: MergedPort[], dropped: Array<{ cluster: string, port: ExportPort, clash: ExportPort }> } {
  const ports: MergedPort[] = []
  const dropped: Array<{ cluster: string, port: ExportPort, clash: ExportPort }> = []
  for (const r of contributing) {
    for (const p of r.spec.ports) {
      const byName = ports.find((q) => (q.def.name ?? '') === (p.name ?? ''))
      if (byName !== undefined) {
        if (portIdentity(byName.def) === portIdentity(p)) byName.clusters.add(r.cluster)
        else dropped.push({ cluster: r.cluster, port: p, clash: byName.def })
        continue
      }
      const byNumber = ports.find((q) => q.def.port === p.port && q.def.protocol === p.protocol)
      if (byNumber !== undefined) {
        dropped.push({ cluster: r.cluster, port: p, clash: byNumber.def })
        continue
      }
      ports.push({ def: p, clusters: new Set([r.cluster]) })
    }
  }
  return { ports, dropped }
}

function condition (type: ConditionType, status: ConditionStatus, reason: string, message: string): Condition {
  return { type, status, reason, message }
}

function clusterList (rs: readonly ExportRecord[]): string {
  return [...new Set(rs.map((r) => r.cluster))].sort().map((c) => `"${c}"`).join(', ')
}

/**
 * Derive imports and export statuses. `activeClusters` = clusters that currently have at
 * least one active member.
 */
export function deriveServices (s: ServicesState, activeClusters: ReadonlySet<string>): ServicesView {
  const groups = new Map<string, ExportRecord[]>()
  for (const r of s.exports.values()) {
    const k = `${r.namespace}/${r.name}`
    const g = groups.get(k)
    if (g === undefined) groups.set(k, [r])
    else g.push(r)
  }
  const imports: ServiceImport[] = []
  const exports: ExportStatus[] = []
  for (const k of [...groups.keys()].sort()) {
    const recs = (groups.get(k) as ExportRecord[]).sort((a, b) => comparePositions(a.created, b.created) || (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : 0))
    const participating = recs.filter((r) => r.spec.type !== 'ExternalName' && activeClusters.has(r.cluster))
    const oldest = participating[0]
    let conflicts: ConflictReason[] = []
    let conflictMessage = ''
    let contributing: ExportRecord[] = []
    if (oldest !== undefined) {
      const o = oldest.spec
      contributing = participating.filter((r) => r.spec.type === o.type)
      const typeExcluded = participating.filter((r) => r.spec.type !== o.type)
      const others = contributing.slice(1)
      const { ports, dropped } = mergePorts(contributing)
      const oldestPorts = portSet(o)
      const found = new Set<ConflictReason>()
      const messages: string[] = []
      const from = `from the oldest export (cluster "${oldest.cluster}")`
      const disagree = (reason: ConflictReason, field: string, value: string, rs: readonly ExportRecord[]): void => {
        if (rs.length === 0) return
        found.add(reason)
        messages.push(`${reason}: using ${field} ${value} ${from}; clusters ${clusterList(rs)} disagree.`)
      }
      const portDiff = others.filter((r) => !sameSet(portSet(r.spec), oldestPorts))
      if (portDiff.length > 0 || dropped.length > 0) {
        found.add('PortConflict')
        const drops = dropped.map((d) => `${describePort(d.port)} from "${d.cluster}" clashes with ${describePort(d.clash)}`)
        messages.push(`PortConflict: the import exposes the union of the exports' ports; each port goes only to the clusters that expose it${drops.length > 0 ? `; dropped: ${drops.join(', ')}` : ''}.`)
      }
      if (typeExcluded.length > 0) {
        found.add('TypeConflict')
        messages.push(`TypeConflict: using type ${o.type} ${from}; clusters ${clusterList(typeExcluded)} disagree and are not part of the import.`)
      }
      disagree('SessionAffinityConflict', 'sessionAffinity', o.sessionAffinity, others.filter((r) => r.spec.sessionAffinity !== o.sessionAffinity))
      if (o.sessionAffinity === 'ClientIP') {
        disagree('SessionAffinityConfigConflict', 'sessionAffinityConfig timeoutSeconds', String(effectiveAffinityTimeout(o)),
          others.filter((r) => r.spec.sessionAffinity === 'ClientIP' && effectiveAffinityTimeout(r.spec) !== effectiveAffinityTimeout(o)))
      }
      disagree('LabelsConflict', 'labels', JSON.stringify(o.labels), others.filter((r) => !sameMap(r.spec.labels, o.labels)))
      disagree('AnnotationsConflict', 'annotations', JSON.stringify(o.annotations), others.filter((r) => !sameMap(r.spec.annotations, o.annotations)))
      disagree('InternalTrafficPolicyConflict', 'internalTrafficPolicy', effectiveInternalTrafficPolicy(o), others.filter((r) => effectiveInternalTrafficPolicy(r.spec) !== effectiveInternalTrafficPolicy(o)))
      disagree('TrafficDistributionConflict', 'trafficDistribution', JSON.stringify(o.trafficDistribution ?? ''), others.filter((r) => effectiveTrafficDistribution(r.spec) !== effectiveTrafficDistribution(o)))
      conflicts = CONFLICT_REASONS.filter((c) => found.has(c))
      conflictMessage = messages.join(' ')
      imports.push({
        namespace: oldest.namespace,
        name: oldest.name,
        type: o.type as 'ClusterSetIP' | 'Headless',
        ports: ports.map((p) => ({
          ...(p.def.name !== undefined ? { name: p.def.name } : {}),
          protocol: p.def.protocol,
          port: p.def.port,
          ...(p.def.appProtocol !== undefined ? { appProtocol: p.def.appProtocol } : {}),
          clusters: [...p.clusters].sort()
        })),
        sessionAffinity: o.sessionAffinity,
        ...(o.sessionAffinityTimeoutSeconds !== undefined ? { sessionAffinityTimeoutSeconds: o.sessionAffinityTimeoutSeconds } : {}),
        ...(o.internalTrafficPolicy !== undefined ? { internalTrafficPolicy: o.internalTrafficPolicy } : {}),
        ...(o.trafficDistribution !== undefined ? { trafficDistribution: o.trafficDistribution } : {}),
        labels: o.labels,
        annotations: o.annotations,
        clusters: [...new Set(contributing.map((r) => r.cluster))].sort(),
        oldest: { cluster: oldest.cluster, created: oldest.created },
        conflicts,
        ...optional('address', serviceAddressOf(s.addresses, oldest.namespace, oldest.name)),
        exporters: [...contributing].sort((a, b) => (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : 0))
          .map((r) => ({ cluster: r.cluster, author: r.author, ...optional('address', serviceAddressOf(s.addresses, r.namespace, r.name, r.cluster)) }))
      })
    }
    const contributingSet = new Set(contributing)
    for (const r of [...recs].sort((a, b) => a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : 0)) {
      exports.push(exportStatus(r, { oldest, contributing: contributingSet.has(r), active: activeClusters.has(r.cluster), conflicts, conflictMessage }))
    }
  }
  return { imports, exports, ignored: s.ignored, ignoredTotal: s.ignoredTotal }
}

function optional<K extends string> (key: K, v: string | undefined): Partial<Record<K, string>> {
  return v === undefined ? {} : { [key]: v } as Record<K, string>
}

function exportStatus (r: ExportRecord, ctx: { oldest: ExportRecord | undefined, contributing: boolean, active: boolean, conflicts: readonly ConflictReason[], conflictMessage: string }): ExportStatus {
  const base = { namespace: r.namespace, name: r.name, cluster: r.cluster, type: r.spec.type, created: r.created, updated: r.updated, author: r.author }
  const noConflict = condition(CONDITION_CONFLICT, 'False', 'NoConflicts', '')
  if (r.spec.type === 'ExternalName') {
    return {
      ...base,
      contributing: false,
      conflicts: [],
      conditions: [
        condition(CONDITION_VALID, 'False', 'InvalidServiceType', 'ExternalName services cannot be exported; create an ExternalName Service in each cluster instead.'),
        condition(CONDITION_READY, 'False', 'Failed', 'The export is not valid.'),
        noConflict
      ]
    }
  }
  const valid = condition(CONDITION_VALID, 'True', 'Valid', '')
  if (!ctx.active) {
    return {
      ...base,
      contributing: false,
      conflicts: [],
      conditions: [
        valid,
        condition(CONDITION_READY, 'False', 'Pending', `Cluster "${r.cluster}" has no active member; the export counts again when one rejoins.`),
        noConflict
      ]
    }
  }
  const conflict = ctx.conflicts.length > 0
    ? condition(CONDITION_CONFLICT, 'True', ctx.conflicts.join(','), ctx.conflictMessage)
    : noConflict
  const ready = ctx.contributing
    ? condition(CONDITION_READY, 'True', 'Exported', '')
    : condition(CONDITION_READY, 'False', 'Failed',
      `Type ${r.spec.type} conflicts with type ${ctx.oldest?.spec.type ?? '?'} of the oldest export (cluster "${ctx.oldest?.cluster ?? '?'}"); this export is not part of the import.`)
  return { ...base, contributing: ctx.contributing, conflicts: ctx.conflicts, conditions: [valid, ready, conflict] }
}
