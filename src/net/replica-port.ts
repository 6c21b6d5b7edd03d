import type { IngestResult } from '../crdt/merged-log.js'
import type { Frontier } from '../crdt/frontier.js'
import type { SignedEvent } from '../log/event.js'
import type { ForkProof } from '../crdt/fork-proof.js'

/**
 * What the mesh needs of a replica. The network code sees this and nothing else, so it can be
 * driven by an in-memory replica in tests and never reaches into the fold.
 */
export interface ReplicaPort {
  readonly net: Uint8Array
  has (id: string): boolean
  /** Validate, persist and fold; resolves once accepted events are durable. */
  ingest (inputs: ReadonlyArray<Uint8Array | SignedEvent>): Promise<IngestResult>
  frontier (): Frontier
  missingFor (remote: Frontier, limit: number): SignedEvent[]
  wantedParents (max: number): string[]
  getWithAncestors (ids: string[], ancestors: number, limit: number): SignedEvent[]
  onChange (fn: (added: readonly SignedEvent[], forks: readonly ForkProof[]) => void): () => void
}

interface ReplicaLike {
  readonly net: Uint8Array
  readonly log: {
    has: (id: string) => boolean
    wantedParents: (max?: number) => string[]
    getWithAncestors: (ids: string[], ancestors?: number, limit?: number) => SignedEvent[]
  }
  ingest: ReplicaPort['ingest']
  frontier: () => Frontier
  missingFor: (remote: Frontier, limit?: number) => SignedEvent[]
  onChange: ReplicaPort['onChange']
}

export function replicaPort (r: ReplicaLike): ReplicaPort {
  return {
    net: r.net,
    has: (id) => r.log.has(id),
    ingest: async (inputs) => await r.ingest(inputs),
    frontier: () => r.frontier(),
    missingFor: (remote, limit) => r.missingFor(remote, limit),
    wantedParents: (max) => r.log.wantedParents(max),
    getWithAncestors: (ids, ancestors, limit) => r.log.getWithAncestors(ids, ancestors, limit),
    onChange: (fn) => r.onChange(fn)
  }
}
