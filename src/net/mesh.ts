import { bestConnection, isDirect, type AddressFilter } from './address-filter.js'
import { multiaddr } from '@multiformats/multiaddr'
import type { Connection, PeerId } from '@libp2p/interface'
import { identifiers, type NetworkToken } from '../log/token.js'
import type { NodeIdentity } from '../log/identity.js'
import type { SignedEvent, Verifier } from '../log/event.js'
import { WeftError } from '../log/errors.js'
import { createHost, type WeftHost } from './host.js'
import { lanDiscoveryProblem } from './lan-discovery.js'
import { isPlainConnection, isProtectedConnection } from './transport-protector.js'
import { EventGossip } from './event-gossip.js'
import { AntiEntropy } from './anti-entropy.js'
import { Presence } from './presence.js'
import { ConnectionProbe } from './connection-probe.js'
import { LogDigest } from './log-digest.js'
import { Rendezvous } from './rendezvous.js'
import type { ReplicaPort } from './replica-port.js'
import type { MeshLogger } from './mesh-logger.js'
import type { TransportKeys } from './transport-keys.js'
import type { PeerBook } from './peer-book.js'
import { MemberRelays } from './member-relay.js'
import { DIAL_DISCOVERED_BELOW, PeerDials, REDIAL_MS } from './peer-dials.js'

export interface MeshOptions {
  token: NetworkToken
  identity: NodeIdentity
  verifier: Verifier
  replica: ReplicaPort
  listen: readonly string[]
  /** Which addresses the host may listen on, announce and dial (default: all). */
  addressFilter?: AddressFilter
  peers?: readonly string[]
  mdns?: boolean
  mdnsIntervalMs?: number
  /** Anti-entropy period (default 10 s). */
  syncIntervalMs?: number
  /** Presence heartbeat period (default 10 s); online means heard of within 3 periods. */
  presenceIntervalMs?: number
  /** DHT rendezvous period (default 60 s). */
  rendezvousIntervalMs?: number
  log: MeshLogger
  now: () => number
  /** Transport keys (default: derived from the token); a secret rotation supplies its own. */
  transportKeys?: TransportKeys
  onGossipAccepted?: (event: SignedEvent, from: PeerId) => void
  /** Peers whose connections are refused (revoked or forked members), by PeerId string. */
  denyPeer?: (peerId: string, epoch?: number) => boolean
  /** Members' addresses kept across restarts (peer-book.ts): redialled first, fed by identify and dials. */
  peerBook?: PeerBook
  /**
   * Public discovery (docs/mesh.md, "Beyond the LAN"): the public DHT from these bootstrap nodes,
   * relay slots, plain connections to public nodes. Absent: today's private-only behaviour.
   */
  public?: { bootstrap: readonly string[] }
  /** Whether a PeerId is a member in the log (its connections are protected); default: none known. */
  isLogMember?: (peerId: string) => boolean
}

export interface MeshPeer {
  peerId: string
  author?: string
  connected: boolean
  online: boolean
  lastSeenMs?: number
  addrs: string[]
  latencyMs?: number
  /**
   * The connection traffic takes (address-filter.ts bestConnection): its remote address, whether
   * it is direct, and whether it is limited (a public relay's: no sync, gossip or VPN over it).
   */
  path?: { addr: string, direct: boolean, limited: boolean }
  /** Milliseconds since the last anti-entropy session we started with this peer completed. */
  lastSyncMs?: number
}

/**
 * The presence protocols of a network (presence.ts), newest first: version 2 replaced the
 * gossiped beacons, version 3 adds round trips and the log digest (a v2 node still links).
 */
function presenceProtocols (networkId: string): [string, string] {
  return [`/weft/${networkId}/presence/3.0.0`, `/weft/${networkId}/presence/2.0.0`]
}

/**
 * Periodic sync rounds skipped in a row with a peer while nothing changed here since a session
 * with it found both sides equal (issue 16: idle traffic). Whoever gets a new event syncs with
 * every peer at its next round, so skipping on the quiet side loses nothing; the bound keeps a
 * session at least every (1 + QUIET_SKIPS) intervals as a safety net.
 */
const QUIET_SKIPS = 5
/** With public discovery, rendezvous rounds run at the fast pace for this long after start. */
const FAST_RENDEZVOUS_AFTER_START_MS = 120_000
/**
 * A member reached only through a public relay's limited connection is dialled through a member
 * relay at once by the side with the smaller PeerId, and by the other side only once the limited
 * connection is this old (both dialling at once would make two connections).
 */
const UPGRADE_BY_EITHER_AFTER_MS = 15_000
/** Member candidates remembered from discovery (bounded: rendezvous providers come from strangers' DHT nodes). */
const MAX_CANDIDATES = 4_096

/**
 * One node's place in the mesh: the libp2p host, push (gossip), pull (anti-entropy) and
 * presence, and the triggers that tie them together: a sync with every peer as soon as it is
 * identified, with every connected peer each sync interval, and with the sender of any event
 * whose parents we lack.
 */
export class Mesh {
  private timers: NodeJS.Timeout[] = []
  private readonly memberRelays: MemberRelays
  private readonly dials: PeerDials
  private lanProblem: string | undefined
  rendezvous: Rendezvous | undefined
  private stopped = false
  /** Events added to the replica so far (any source): a change since a quiet session. */
  private changes = 0
  private unsubscribe: (() => void) | undefined
  /** Connected peers last found in sync with us, at which `changes`, and rounds skipped since. */
  private readonly quiet = new Map<string, { changes: number, skipped: number }>()

  private constructor (
    readonly host: WeftHost,
    readonly gossip: EventGossip,
    readonly sync: AntiEntropy,
    readonly presence: Presence,
    private readonly digest: LogDigest,
    private readonly probe: ConnectionProbe,
    private readonly opts: MeshOptions,
    private readonly candidates: Set<string>
  ) {
    this.memberRelays = new MemberRelays({ host, isMember: (id) => this.isMember(id), log: opts.log, now: opts.now })
    this.dials = new PeerDials({ host, peers: opts.peers ?? [], log: opts.log, stopped: () => this.stopped, now: opts.now })
  }

  /** A member candidate (rendezvous, mDNS, --peer, peer book) or a member in the log. */
  private isMember (id: string): boolean {
    return this.candidates.has(id) || (this.opts.isLogMember?.(id) ?? false)
  }

  /** What keeps this node from finding peers, each with its fix (for `weft status`). */
  problems (): string[] {
    return this.lanProblem !== undefined ? [this.lanProblem] : []
  }

  /**
   * A peer found where only members are (the rendezvous keys): protect connections to it from
   * now on; a plain connection made before we knew (it was met as a relay or DHT node) cannot
   * carry the network's protocols, so it is closed and the peer dialled again, protected.
   */
  private async noteMember (peer: PeerId): Promise<void> {
    const id = peer.toString()
    if (!this.candidates.has(id) && this.candidates.size >= MAX_CANDIDATES) return
    this.candidates.add(id)
    await this.protect(peer)
  }

  /**
   * A member connected only plain (it dialled us before it knew we are one, or we met it as a
   * public node first): such a connection cannot carry the network's protocols, and while it is
   * open libp2p hands it to every dial, so a protected one would never be made (seen with 30
   * nodes: a third of them stayed alone). Close it and dial the member again, protected.
   */
  private async protect (peer: PeerId): Promise<void> {
    const conns = this.host.getConnections(peer)
    if (this.stopped || conns.length === 0 || !conns.every((c) => isPlainConnection(c))) return
    await Promise.all(conns.map(async (c) => { await c.close().catch(() => {}) }))
    await this.host.dial(peer, { signal: AbortSignal.timeout(10_000) }).catch((err: Error) => {
      this.opts.log.debug({ peer: peer.toString(), err: err.message }, 'cannot dial a member again, protected')
    })
  }

  static async start (opts: MeshOptions): Promise<Mesh> {
    const ids = identifiers(opts.token)
    for (const p of opts.peers ?? []) {
      if (multiaddr(p).getComponents().find((c) => c.name === 'p2p') === undefined) {
        throw new WeftError('ERR_BAD_INPUT', `peer address ${p} has no /p2p/<peer id> part; copy the full address from the other node's "weft status"`)
      }
    }
    // Peers we protect connections to: configured, in the peer book, found by mDNS or under the
    // rendezvous keys, or members in the log. Every other peer is a public node (plain).
    const candidates = new Set<string>()
    for (const p of opts.peers ?? []) {
      const id = multiaddr(p).getComponents().findLast((c) => c.name === 'p2p')?.value
      if (id !== undefined) candidates.add(id)
    }
    for (const e of opts.peerBook?.entries() ?? []) candidates.add(e.id)
    const host = await createHost({
      ...(opts.public !== undefined ? { public: { bootstrap: opts.public.bootstrap, isMember: (id) => candidates.has(id) || (opts.isLogMember?.(id) ?? false) } } : {}),
      // Every mDNS answer, not only a peer's first: a first dial that failed (a loaded LAN, a
      // peer still starting) is tried again on the next answer (PeerDials.seenOnLan).
      onLanPeer: (id) => {
        if (candidates.has(id) || candidates.size < MAX_CANDIDATES) candidates.add(id)
        mesh?.dials.seenOnLan(id)
      },
      token: opts.token,
      net: opts.replica.net,
      identity: opts.identity,
      listen: opts.listen,
      ...(opts.addressFilter !== undefined ? { addressFilter: opts.addressFilter } : {}),
      peers: opts.peers,
      mdns: opts.mdns,
      mdnsIntervalMs: opts.mdnsIntervalMs,
      ...(opts.denyPeer !== undefined ? { denyPeer: opts.denyPeer } : {}),
      transportKeys: opts.transportKeys,
      log: opts.log
    })
    const syncIntervalMs = opts.syncIntervalMs ?? 10_000
    let mesh: Mesh | undefined
    const gossip = new EventGossip({
      pubsub: host.services.pubsub,
      topic: ids.gossipTopic,
      replica: opts.replica,
      verifier: opts.verifier,
      log: opts.log,
      onMissingParents: (peer) => { void mesh?.syncPeer(peer) },
      onAccepted: opts.onGossipAccepted,
      now: opts.now
    })
    const sync = new AntiEntropy({ host, protocol: ids.syncProtocol, replica: opts.replica, log: opts.log, now: opts.now })
    const digest = new LogDigest(opts.replica)
    const presence = new Presence({
      host,
      protocols: presenceProtocols(ids.networkId),
      // The link rides the path traffic takes, so its round trip is that path's.
      pick: (conns) => bestConnection(conns, (c) => c.limits === undefined && !isPlainConnection(c)),
      intervalMs: opts.presenceIntervalMs ?? 10_000,
      now: opts.now,
      digest: () => digest.current(),
      log: opts.log
    })
    const probe = new ConnectionProbe({ host, measured: (c) => presence.carries(c), log: opts.log })
    mesh = new Mesh(host, gossip, sync, presence, digest, probe, opts, candidates)
    try {
      await host.start()
      await sync.start()
      gossip.start()
      await presence.start()
      probe.start()
    } catch (err) {
      try { await host.stop() } catch {}
      throw new WeftError('ERR_NETWORK', `cannot start the libp2p host: ${(err as Error).message}`, { cause: err })
    }
    mesh.wire(syncIntervalMs)
    return mesh
  }

  private wire (syncIntervalMs: number): void {
    const { host, opts } = this
    const syncProtocol = identifiers(opts.token).syncProtocol
    host.addEventListener('peer:identify', (evt) => {
      if (evt.detail.protocols.includes(syncProtocol)) {
        void this.syncPeer(evt.detail.peerId)
        void this.presence.connected(evt.detail.peerId)
        // A member: remember where it listens and where we reached it (a dial that worked).
        const c = evt.detail.connection
        const reached = c.direction === 'outbound' ? [c.remoteAddr.toString()] : []
        opts.peerBook?.add(evt.detail.peerId.toString(), [...reached, ...evt.detail.listenAddrs.map((a) => a.toString())])
        if (opts.public !== undefined) {
          void this.memberRelays.reserve(evt.detail.peerId, c, evt.detail.protocols)
          if (c.limits !== undefined) void this.upgradeLimited(evt.detail.peerId)
        }
      }
    })
    // libp2p v3 has no auto-dialler: a peer found by mDNS (or any discovery) is only stored in
    // the peer store until someone dials it.
    host.addEventListener('peer:discovery', (evt) => { this.dials.discovered(evt.detail.id) })
    // After identify, so the peer store has the member's listen addresses to dial it again.
    host.addEventListener('peer:identify', (evt) => {
      const c = evt.detail.connection
      if (isPlainConnection(c) && this.isMember(c.remotePeer.toString())) void this.protect(c.remotePeer)
    })
    host.addEventListener('peer:connect', (evt) => {
      opts.log.info({ peer: evt.detail.toString() }, 'peer connected')
    })
    host.addEventListener('peer:disconnect', (evt) => {
      opts.log.info({ peer: evt.detail.toString() }, 'peer disconnected')
    })
    const every = (ms: number, fn: () => void): void => {
      const t = setInterval(fn, ms)
      t.unref()
      this.timers.push(t)
    }
    this.unsubscribe = opts.replica.onChange((added) => { this.changes += added.length })
    every(syncIntervalMs, () => {
      void this.syncRound()
      void this.dials.redialKnown(syncProtocol)
    })
    const startedAt = opts.now()
    this.rendezvous = new Rendezvous({
      host,
      token: opts.token,
      now: opts.now,
      log: opts.log,
      intervalMs: opts.rendezvousIntervalMs,
      onProvider: async (p) => { await this.noteMember(p) },
      // Look every few seconds in the first minutes, while members that started with us are still
      // announcing themselves, and while no member is connected (a new node, or one cut off);
      // back off while rounds find nobody new (rendezvous-pace.ts). Without public discovery:
      // every rendezvousIntervalMs, as before.
      ...(opts.public !== undefined
        ? {
            fast: () => opts.now() - startedAt < FAST_RENDEZVOUS_AFTER_START_MS,
            alone: () => !host.getConnections().some((c) => isProtectedConnection(c) && c.limits === undefined),
            backoff: true
          }
        : {})
    })
    this.rendezvous.start()
    // New addresses (a relay slot, an observed public address): announce them under the keys now.
    if (opts.public !== undefined) host.addEventListener('self:peer:update', () => { void this.rendezvous?.kick() })
    this.lanProblem = lanDiscoveryProblem(opts.mdns !== false, opts.addressFilter !== undefined ? { allowsInterface: (n) => opts.addressFilter?.allowsInterface(n) ?? true } : {})
    // Said once, with its fix, by the node's problem list (node/problems.ts), not here as well.
    if (opts.peerBook !== undefined) void this.dials.dialBook(opts.peerBook)
    if ((opts.peers ?? []).length > 0) {
      every(REDIAL_MS, () => { void this.dials.dialConfigured() })
      void this.dials.dialConfigured()
    }
  }

  /**
   * A member connected only through a public relay's limited connection: move it onto a member
   * relay (member-relay.ts), the smaller PeerId first (see UPGRADE_BY_EITHER_AFTER_MS).
   */
  private async upgradeLimited (peer: PeerId): Promise<void> {
    if (this.stopped || this.opts.public === undefined || !this.memberRelays.onlyLimited(peer)) return
    const oldest = Math.min(...this.host.getConnections(peer).map((c) => c.timeline.open))
    if (this.host.peerId.toString() > peer.toString() && Date.now() - oldest < UPGRADE_BY_EITHER_AFTER_MS) return
    if (await this.memberRelays.upgrade(peer)) void this.syncPeer(peer)
  }

  async syncPeer (peer: PeerId): Promise<void> {
    if (this.stopped) return
    const r = await this.sync.syncWith(peer)
    if (r !== undefined && (r.pulled > 0 || r.pushed > 0)) {
      this.opts.log.debug({ ...r }, 'synced')
    }
  }

  /**
   * Connected peers that may be members and can carry sync: public nodes (plain connections only)
   * are never synced with, and a member reached only through a public relay's limited connection
   * cannot be (it is moved onto a member relay instead).
   */
  private memberPeers (): PeerId[] {
    return this.host.getPeers().filter((p) => this.host.getConnections(p).some((c) => !isPlainConnection(c) && c.limits === undefined))
  }

  /** The periodic round: every peer, except quiet ones while nothing changed here. */
  private async syncRound (): Promise<void> {
    if (this.opts.public !== undefined) {
      for (const p of this.host.getPeers()) {
        if (this.memberRelays.onlyLimited(p) && this.isMember(p.toString())) void this.upgradeLimited(p)
        else void this.memberRelays.closeRedundant(p)
      }
    }
    const peers = this.memberPeers()
    const connected = new Set(peers.map((p) => p.toString()))
    for (const id of this.quiet.keys()) if (!connected.has(id)) this.quiet.delete(id)
    await Promise.all(peers.map(async (p) => {
      const id = p.toString()
      // Its heartbeat says its log is ours: nothing to exchange (log-digest.ts). Once we have
      // completed a session with it: a new peer (one first met over a limited connection, say,
      // where the session at identify could not run) gets one, so sync is known to work with it.
      if (this.sync.lastSessionAt(id) !== undefined && this.digest.same(this.presence.digestOf(id))) return
      const q = this.quiet.get(id)
      if (q !== undefined && q.changes === this.changes && q.skipped < QUIET_SKIPS) { q.skipped++; return }
      const before = this.changes
      const r = this.stopped ? undefined : await this.sync.syncWith(p)
      if (r !== undefined && r.pulled === 0 && r.pushed === 0 && this.changes === before) this.quiet.set(id, { changes: before, skipped: 0 })
      else this.quiet.delete(id)
    }))
  }

  async syncAll (): Promise<void> {
    await Promise.all(this.memberPeers().map(async (p) => { await this.syncPeer(p) }))
  }

  async publish (events: readonly SignedEvent[]): Promise<void> {
    await this.gossip.publish(events)
  }

  listenAddrs (): string[] {
    return this.host.getMultiaddrs().map((a) => a.toString())
  }

  /**
   * Peers of this network: those with a protected connection (the token-keyed handshake) and
   * those presence knows. Plain connections to public DHT and relay nodes, and to anyone else
   * reached through public discovery, are not peers: a non-member met that way (a revoked node,
   * say) must not count as connected (`publicConnections()` counts them).
   */
  peers (): MeshPeer[] {
    const now = this.opts.now()
    const out = new Map<string, MeshPeer>()
    const conns = new Map<string, Connection[]>()
    for (const conn of this.host.getConnections()) {
      if (isPlainConnection(conn)) continue
      const id = conn.remotePeer.toString()
      const p = out.get(id) ?? { peerId: id, connected: true, online: false, addrs: [] }
      p.addrs.push(conn.remoteAddr.toString())
      out.set(id, p)
      conns.set(id, [...(conns.get(id) ?? []), conn])
    }
    for (const p of out.values()) {
      const best = bestConnection(conns.get(p.peerId) ?? [])
      if (best === undefined) continue
      p.path = { addr: best.remoteAddr.toString(), direct: isDirect(best), limited: best.limits !== undefined }
      if (best.rtt !== undefined && best.rtt >= 0) p.latencyMs = best.rtt
    }
    for (const e of this.presence.entries()) {
      if (e.peerId === this.host.peerId.toString()) continue
      const p = out.get(e.peerId) ?? { peerId: e.peerId, connected: false, online: false, addrs: [...e.addrs] }
      p.author = e.author
      p.online = this.presence.isOnline(e.author)
      p.lastSeenMs = now - e.lastSeen
      out.set(e.peerId, p)
    }
    for (const p of out.values()) {
      const at = this.sync.lastSessionAt(p.peerId)
      if (at !== undefined) p.lastSyncMs = Math.max(0, now - at)
    }
    return [...out.values()].sort((a, b) => (a.peerId < b.peerId ? -1 : 1))
  }

  /** Plain connections: public DHT and relay nodes (public protocols only, docs/mesh.md). */
  publicConnections (): number {
    return this.host.getConnections().filter((c) => isPlainConnection(c)).length
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    for (const t of this.timers) clearInterval(t)
    this.unsubscribe?.()
    this.rendezvous?.stop()
    this.probe.stop()
    this.digest.stop()
    await this.presence.stop()
    this.gossip.stop()
    await this.sync.stop().catch(() => {})
    await this.host.stop()
    await this.opts.peerBook?.flush()
  }
}
