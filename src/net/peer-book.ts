import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { z } from 'zod'
import { silentLogger, type MeshLogger } from './mesh-logger.js'

/**
 * The peer book (`peers.json` in the data dir): members' addresses learned from the log (the
 * addresses in their `node.join`), from identify and from successful dials, so a restarted node
 * redials members first and reconnects without mDNS, `--peer` or the public DHT.
 *
 * Bounded: at most PEER_BOOK_LIMITS.peers peers (the least recently seen go first) and
 * PEER_BOOK_LIMITS.addrs addresses per peer (the most recently learned kept). Written at most once
 * per `flushMs`, atomically (a temporary file renamed over the old one); a missing or unreadable
 * book is an empty one (it is a cache: the log and discovery rebuild it).
 */
export const PEER_BOOK_LIMITS = { peers: 256, addrs: 8 } as const

const FILE_VERSION = 1
const Entry = z.object({ id: z.string().max(128), addrs: z.array(z.string().max(512)).max(64), seen: z.number() })
const BookFile = z.object({ v: z.literal(FILE_VERSION), peers: z.array(Entry).max(10_000) })
export interface PeerBookEntry { id: string, addrs: string[], seen: number }

export interface PeerBookOptions {
  now: () => number
  log?: MeshLogger
  /** Coalesce writes: at most one per this many ms (default 2 s). */
  flushMs?: number
}

/** An address worth remembering: parses, names no peer id of its own (one is added on dial), not a wildcard. */
function usable (addr: string): string | undefined {
  try {
    const ma = multiaddr(addr)
    const comps = ma.getComponents()
    if (comps.some((c) => (c.name === 'ip4' && c.value === '0.0.0.0') || (c.name === 'ip6' && c.value === '::'))) return undefined
    // Keep a circuit address whole (relay id, /p2p-circuit); strip only a trailing /p2p/<the peer>.
    const last = comps[comps.length - 1]
    return (last?.name === 'p2p' ? ma.decapsulateCode(421) : ma).toString()
  } catch {
    return undefined
  }
}

export class PeerBook {
  private readonly peers = new Map<string, PeerBookEntry>()
  private timer: NodeJS.Timeout | undefined
  private writing: Promise<void> = Promise.resolve()
  private dirty = false

  private constructor (readonly path: string, private readonly opts: PeerBookOptions) {}

  static async open (path: string, opts: PeerBookOptions): Promise<PeerBook> {
    const book = new PeerBook(path, opts)
    let text: string | undefined
    try {
      text = await readFile(path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') (opts.log ?? silentLogger).warn({ path, err: (err as Error).message }, 'cannot read the peer book; starting with an empty one')
    }
    if (text !== undefined) {
      const parsed = (() => { try { return BookFile.safeParse(JSON.parse(text)) } catch { return undefined } })()
      if (parsed?.success === true) {
        for (const e of parsed.data.peers) book.add(e.id, e.addrs, e.seen, false)
      } else {
        (opts.log ?? silentLogger).warn({ path }, 'the peer book is not valid JSON of the expected shape; starting with an empty one (it is rebuilt from the log and discovery)')
      }
    }
    return book
  }

  /**
   * Remember addresses of a peer (seen at `seen`, default now). Bad addresses and peer ids are
   * skipped: they come from other machines.
   */
  add (id: string, addrs: readonly string[], seen = this.opts.now(), flush = true): void {
    try { peerIdFromString(id) } catch { return }
    const clean = addrs.map(usable).filter((a): a is string => a !== undefined)
    if (clean.length === 0) return
    const old = this.peers.get(id)
    const merged = [...new Set([...clean, ...(old?.addrs ?? [])])].slice(0, PEER_BOOK_LIMITS.addrs)
    const entry = { id, addrs: merged, seen: Math.max(seen, old?.seen ?? 0) }
    if (old !== undefined && old.seen === entry.seen && old.addrs.join() === merged.join()) return
    this.peers.delete(id)
    this.peers.set(id, entry)
    while (this.peers.size > PEER_BOOK_LIMITS.peers) {
      let oldest: PeerBookEntry | undefined
      for (const e of this.peers.values()) if (oldest === undefined || e.seen < oldest.seen) oldest = e
      if (oldest === undefined) break
      this.peers.delete(oldest.id)
    }
    if (flush) this.scheduleFlush()
  }

  forget (id: string): void {
    if (this.peers.delete(id)) this.scheduleFlush()
  }

  /** Most recently seen first. */
  entries (): PeerBookEntry[] {
    return [...this.peers.values()].sort((a, b) => b.seen - a.seen)
  }

  private scheduleFlush (): void {
    this.dirty = true
    if (this.timer !== undefined) return
    this.timer = setTimeout(() => { this.timer = undefined; void this.flush() }, this.opts.flushMs ?? 2_000)
    this.timer.unref()
  }

  /** Write now if anything changed (also on stop). */
  async flush (): Promise<void> {
    if (this.timer !== undefined) { clearTimeout(this.timer); this.timer = undefined }
    if (!this.dirty) return await this.writing
    this.dirty = false
    const body = JSON.stringify({ v: FILE_VERSION, peers: this.entries() })
    this.writing = this.writing.then(async () => {
      const tmp = `${this.path}.tmp`
      try {
        await mkdir(dirname(this.path), { recursive: true })
        await writeFile(tmp, body, { mode: 0o600 })
        await rename(tmp, this.path)
      } catch (err) {
        (this.opts.log ?? silentLogger).warn({ path: this.path, err: (err as Error).message }, 'cannot write the peer book')
      }
    })
    await this.writing
  }
}
