import type { Reducer } from '../crdt/fold.js'
import type { SignedEvent } from '../log/event.js'
import type { BodyOf } from '../log/bodies.js'
import { authorName } from '../log/author.js'
import { toHex } from '../log/bytes.js'

export interface Member {
  readonly author: string
  readonly peerId: string
  readonly hostname: string
  readonly cluster: string
  readonly os: string
  readonly arch: string
  readonly version: string
  readonly addrs: readonly string[]
  readonly caps: readonly string[]
  /** Requested role from the latest `node.join` or `role.claim`. */
  readonly role: BodyOf<'node.join'>['role']
  /** Position of the join that made this node a member (order of joining). */
  readonly joinedLamport: number
  readonly joinId: string
  /** X25519 key (hex) rotated transport keys are sealed to, if the join named one. */
  readonly seal?: string
}

export interface Departure { readonly author: string, readonly how: 'leave' | 'evict' | 'revoke' | 'forked', readonly by: string, readonly reason?: string, readonly lamport: number }

export interface MembersState {
  /** author hex → member; members are replaced, never mutated, so a shallow copy is a snapshot. */
  active: Map<string, Member>
  departed: Map<string, Departure>
}

/**
 * Membership. `node.join` makes the author a member (again, after a leave or an eviction);
 * `node.leave` and `node.evict` remove one. A join repeated by a member updates its details but
 * keeps its original join position, so restarts never change who joined first.
 */
export const members: Reducer<MembersState> = {
  initial: () => ({ active: new Map(), departed: new Map() }),
  clone: (s) => ({ active: new Map(s.active), departed: new Map(s.departed) }),
  apply (s, e: SignedEvent) {
    const f = e.fields
    switch (f.type) {
      case 'node.join': {
        // A repeated join keeps its position; one that moves the node to another cluster is a new
        // join there (it must not jump ahead of that cluster's earlier members).
        const was = s.active.get(e.authorHex)
        const prior = was?.cluster === f.body.cluster ? was : undefined
        s.departed.delete(e.authorHex)
        s.active.set(e.authorHex, {
          author: e.authorHex,
          peerId: authorName(f.author),
          hostname: f.body.hostname,
          cluster: f.body.cluster,
          os: f.body.os,
          arch: f.body.arch,
          version: f.body.version,
          addrs: f.body.addrs,
          caps: f.body.caps,
          role: f.body.role,
          joinedLamport: prior?.joinedLamport ?? f.lamport,
          joinId: prior?.joinId ?? e.idHex,
          ...(f.body.seal !== undefined ? { seal: toHex(f.body.seal) } : {})
        })
        break
      }
      case 'role.claim': {
        const m = s.active.get(e.authorHex)
        if (m !== undefined && m.cluster === f.body.cluster) s.active.set(e.authorHex, { ...m, role: f.body.role })
        break
      }
      case 'node.leave':
        if (s.active.delete(e.authorHex)) {
          s.departed.set(e.authorHex, { author: e.authorHex, how: 'leave', by: e.authorHex, reason: f.body.reason, lamport: f.lamport })
        }
        break
      case 'node.evict': {
        // Only a current member may evict, and not itself (that is a leave).
        const target = toHex(f.body.peer)
        if (!s.active.has(e.authorHex) || target === e.authorHex) break
        if (s.active.delete(target)) {
          s.departed.set(target, { author: target, how: 'evict', by: e.authorHex, reason: f.body.reason, lamport: f.lamport })
        }
        break
      }
      default:
        break
    }
  }
}
