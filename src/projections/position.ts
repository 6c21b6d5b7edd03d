import type { SignedEvent } from '../log/event.js'

/**
 * Where an event sits in the log's total order, as projections record it: "the first claim
 * wins" compares these, never wall-clock time.
 */
export interface Position {
  readonly lamport: number
  readonly author: string
  readonly seq: number
  readonly id: string
}

export function positionOf (e: SignedEvent): Position {
  return { lamport: e.fields.lamport, author: e.authorHex, seq: e.fields.seq, id: e.idHex }
}

export function comparePositions (a: Position, b: Position): number {
  return a.lamport - b.lamport ||
    (a.author < b.author ? -1 : a.author > b.author ? 1 : 0) ||
    a.seq - b.seq ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
}
