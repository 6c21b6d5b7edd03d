import type { MembersState } from '../projections/members.js'
import { authorName } from '../log/author.js'
import { fromHex } from '../log/bytes.js'
import { plain, shortPeer, table } from './output.js'

/**
 * Human rendering of folded state, one renderer per projection key of `cliReducers`. A key
 * without a renderer is printed as JSON, so a new reducer shows up in `weft log state` the day
 * it is added to ./reducers.ts; register a renderer here to give it a table.
 */
export interface ProjectionRenderer<S = unknown> {
  /** Section heading. */
  readonly title: string
  /** Text lines for people (no trailing newline). */
  human (state: S): string
}

const renderers = new Map<string, ProjectionRenderer<never>>()

export function registerRenderer<S> (key: string, renderer: ProjectionRenderer<S>): void {
  renderers.set(key, renderer as ProjectionRenderer<never>)
}

export function renderStates (states: Record<string, unknown>): string {
  const parts: string[] = []
  for (const [key, state] of Object.entries(states)) {
    const r = renderers.get(key) as ProjectionRenderer | undefined
    if (r === undefined) {
      parts.push(`${key}:\n${JSON.stringify(plain(state), null, 2)}`)
    } else {
      parts.push(`${r.title}:\n${r.human(state)}`)
    }
  }
  return parts.join('\n\n')
}

/** For `--json`: the whole state object, Maps as objects. */
export function statesJson (states: Record<string, unknown>): unknown {
  return plain(states)
}

registerRenderer<MembersState>('members', {
  title: 'members',
  human (s) {
    const rows = [...s.active.values()]
      .sort((a, b) => a.joinedLamport - b.joinedLamport || (a.peerId < b.peerId ? -1 : 1))
      .map((m) => [m.hostname, m.cluster, m.role, m.peerId, String(m.joinedLamport)])
    const lines = [rows.length === 0 ? '(no members)' : table(['HOST', 'CLUSTER', 'ROLE', 'PEER ID', 'JOINED'], rows)]
    if (s.departed.size > 0) {
      const gone = [...s.departed.values()].sort((a, b) => a.lamport - b.lamport)
        .map((d) => [peerOf(d.author), d.how === 'evict' ? `evicted by ${shortPeer(peerOf(d.by))}` : 'left', String(d.lamport), d.reason ?? ''])
      lines.push('', 'departed:', table(['PEER', 'HOW', 'LAMPORT', 'REASON'], gone))
    }
    return lines.join('\n')
  }
})

function peerOf (authorHex: string): string {
  return authorName(fromHex(authorHex))
}
