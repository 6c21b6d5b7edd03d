import type { Logger } from 'pino'
import type { Replica } from '../adapters/replica.js'
import type { NodeLiveStatus, Problem } from '../adapters/api-types.js'
import type { NodeIdentity } from '../log/identity.js'
import type { SignedEvent } from '../log/event.js'
import type { Mesh } from '../net/mesh.js'
import type { NetworkState } from '../projections/network.js'
import type { ReplicaReducers } from '../projections/reducers.js'
import type { UpConfig } from './config.js'

/** An API route a feature mounts: path → method → handler taking the JSON body (see http-api.ts ApiNode.routes). */
export type ApiRoute = readonly [string, Partial<Record<string, (body: unknown) => Promise<unknown>>>]

/** A problem a feature sees, before the daemon stamps when it first appeared (see ./problems.ts). */
export type ProblemReport = Omit<Problem, 'since'>

/** What every feature gets from the daemon: the node's identity, log, mesh and configuration. */
export interface FeatureContext {
  readonly config: UpConfig
  readonly identity: NodeIdentity
  readonly replica: Replica<ReplicaReducers>
  readonly mesh: Mesh
  readonly log: Logger
  readonly now: () => number
  /** The folded network state now. */
  state: () => NetworkState
  /** Append an event of this node's own (the daemon publishes it to the mesh). */
  append: (type: string, body: unknown) => Promise<SignedEvent>
  /** Settles once the VPN device matches the latest state (at once without a VPN). */
  deviceReady: () => Promise<void>
}

/**
 * One thing a node runs (VPN, DNS, local services, the shared Kubernetes API, MCS, k3s, …), seen
 * by the daemon through this one lifecycle: the daemon constructs the configured ones, hands them
 * every new state in order, mounts their routes, gathers their status and problems, and stops
 * them in reverse order. A feature is created already started (its module's `start…` function),
 * so a feature that failed to start never needs stopping.
 */
export interface Feature {
  readonly name: string
  /** After the daemon listens for changes: work that appends events (they are then published). */
  started?: () => Promise<void>
  /** A new state (after every change to the log); the order of the daemon's list is kept. */
  onState?: (state: NetworkState) => void
  routes?: () => ApiRoute[]
  /** What this feature adds to GET /status (e.g. `{ vpn: … }`). */
  status?: () => Partial<NodeLiveStatus>
  /** Capabilities announced in this node's join (e.g. `vpn`). */
  caps?: () => string[]
  problems?: () => ProblemReport[]
  stop: () => Promise<void>
}
