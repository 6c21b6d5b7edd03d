import './polyfill.js'
import { createLibp2p, type Libp2p, type Libp2pOptions } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify, type Identify } from '@libp2p/identify'
import { ping, type Ping } from '@libp2p/ping'
import { kadDHT, passthroughMapper, removePrivateAddressesMapper, type KadDHT } from '@libp2p/kad-dht'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { bootstrap } from '@libp2p/bootstrap'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { autoNAT } from '@libp2p/autonat'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { isPrivateIp } from '@libp2p/utils'
import { networkInterfaces } from 'node:os'
import type { ComponentLogger } from '@libp2p/interface'
import { identifiers, type NetworkToken } from '../log/token.js'
import { seedOf, type NodeIdentity } from '../log/identity.js'
import { gossipMessageId } from './gossip-id.js'
import { isProtectedConnection, protectedEpoch } from './transport-protector.js'
import type { MeshLogger } from './mesh-logger.js'
import { tokenTransportKeys, type TransportKeys } from './transport-keys.js'
import { transportProtector } from './transport-protector.js'
import type { AddressFilter } from './address-filter.js'
import { hasMulticastRoute, interfaceMdns, mdnsQuietInterval, multicastInterface } from './lan-discovery.js'
import { guardRegistrar } from './public-protocols.js'
import { reusePortTcp } from './reuseport-tcp.js'
import { memberDhtPeerInfo } from './member-dht-addresses.js'
import { thinYamuxWindowUpdates } from './yamux-window.js'

/** The public DHT's protocol (the IPFS "Amino" DHT every public libp2p node speaks). */
export const PUBLIC_DHT_PROTOCOL = '/ipfs/kad/1.0.0'
/** Relay slots a node behind a NAT keeps (one `/p2p-circuit` listen address each). */
export const RELAY_RESERVATIONS = 2
/** The member DHT's bucket size: how many peers hold a provider record and how many a query asks. */
export const MEMBER_DHT_K = 6
/** Members a member with a public address relays for at once (no time or byte limit: they hold the token). */
export const MEMBER_RELAY_RESERVATIONS = 64

export interface HostServices extends Record<string, unknown> {
  identify: Identify
  ping: Ping
  dht: KadDHT
  /** The public DHT client, with public discovery only. */
  publicDht?: KadDHT
  pubsub: GossipSub
}

/** Public discovery: the public DHT, public relays, plain connections to public nodes (docs/mesh.md). */
export interface PublicDiscovery {
  /** Public libp2p nodes to start from (multiaddrs with /p2p/<id>). */
  bootstrap: readonly string[]
  /** Whether a peer is (or may be) a member: outbound connections to it are protected, to others plain. */
  isMember: (peerId: string) => boolean
}

export type WeftHost = Libp2p<HostServices>

export interface HostOptions {
  token: NetworkToken
  /** The network id bytes (from the token), as events carry it. */
  net: Uint8Array
  identity: NodeIdentity
  /** TCP multiaddrs to listen on, e.g. /ip4/0.0.0.0/tcp/4001. */
  listen: readonly string[]
  /** Bootstrap multiaddrs (with /p2p/<id>). */
  peers?: readonly string[]
  mdns?: boolean
  /** mDNS query interval; short in tests so discovery does not wait 10 s. */
  mdnsIntervalMs?: number
  /** Act as a circuit relay for peers without a public address (default true). */
  relay?: boolean
  logger?: ComponentLogger
  /**
   * Refuse connections of these peers (revoked or forked members), by PeerId string; `epoch` is
   * the transport key epoch the connection was protected with (old epochs only for members).
   */
  denyPeer?: (peerId: string, epoch?: number) => boolean
  /** The transport keys (default: the one derived from the token); read again for every connection. */
  transportKeys?: TransportKeys
  /** Where refused transport handshakes are reported (info, at most one line per host per minute). */
  log?: MeshLogger
  /** Which addresses may be listened on, announced and dialled (address-filter.ts); default: all. */
  addressFilter?: AddressFilter
  /** Public discovery; absent: every connection is protected and only the private DHT runs (air-gapped). */
  public?: PublicDiscovery
  /** Told of every peer mDNS finds (a member: the service name comes from the token). */
  onLanPeer?: (peerId: string) => void
}

/** The address filter as libp2p options: listen expansion, announce filter, dial/inbound gater. */
function pathOptions (f: AddressFilter | undefined, listen: readonly string[]): Pick<Libp2pOptions, 'addresses' | 'connectionGater'> {
  if (f === undefined) return { addresses: { listen: [...listen] } }
  return {
    addresses: { listen: f.listenAddrs(listen), announceFilter: (mas) => mas.filter((ma) => f.allowsMultiaddr(ma)) },
    connectionGater: {
      denyDialMultiaddr: (ma) => !f.allowsMultiaddr(ma),
      denyInboundConnection: (conn) => !f.allowsMultiaddr(conn.remoteAddr)
    }
  }
}

/**
 * A libp2p host for one network. The token decides everything that must match between nodes:
 * the transport key (a machine without the token fails the handshake before noise, see
 * docs/transport.md), the DHT
 * protocol, the mDNS service name and the gossip topic. The node's own key is its event
 * signing key, so its PeerId and its author name are the same string.
 */
export async function createHost (opts: HostOptions): Promise<WeftHost> {
  const ids = identifiers(opts.token)
  const messageId = gossipMessageId(opts.net)
  const privateKey = await generateKeyPairFromSeed('Ed25519', seedOf(opts.identity))
  const discovery: NonNullable<Libp2pOptions['peerDiscovery']> = []
  if (opts.mdns !== false) {
    const f = opts.addressFilter
    // Without a route for multicast the kernel cannot pick an interface: name one (lan-discovery.ts).
    const pick = (): ReturnType<typeof multicastInterface> => hasMulticastRoute() ? undefined : multicastInterface(f !== undefined ? { allowsInterface: (n) => f.allowsInterface(n) } : {})
    const interval = opts.mdnsIntervalMs ?? 5_000
    // Once a member is connected, ask every minute per 10 members (lan-discovery.ts, mdnsQuietInterval).
    const members = (): number => new Set(created?.getConnections().filter((c) => isProtectedConnection(c)).map((c) => c.remotePeer.toString())).size
    const quiet = { get intervalMs () { return Math.max(interval, mdnsQuietInterval(members())) }, when: () => members() > 0 }
    discovery.push(interfaceMdns({ serviceTag: ids.mdnsServiceName, interval }, pick, opts.onLanPeer, quiet))
  }
  const pub = opts.public
  const bootList = [...(opts.peers ?? []), ...(pub?.bootstrap ?? [])]
  if (bootList.length > 0) {
    discovery.push(bootstrap({ list: bootList, timeout: 0 }))
  }
  const path = pathOptions(opts.addressFilter, opts.listen)
  if (pub !== undefined && path.addresses !== undefined) {
    // Relay slots: a node behind a NAT is reachable at <relay>/p2p-circuit/p2p/<us>.
    path.addresses.listen = [...(path.addresses.listen ?? []), ...Array.from({ length: RELAY_RESERVATIONS }, () => '/p2p-circuit')]
    // A public address of our own is announced as it is: libp2p would wait for AutoNAT to confirm
    // it, and AutoNAT is not run here (see below).
    path.addresses.appendAnnounce = publicListenAddrs(opts.listen, opts.addressFilter)
  }
  let identifyService: unknown
  let created: WeftHost | undefined
  // A peer that passed the token-keyed handshake on any connection (it dialled us through a relay
  // before we found it under the rendezvous keys, say) holds the token: dial it protected too.
  const isMember = (id: string): boolean => pub?.isMember(id) === true || (created?.getConnections().some((c) => c.remotePeer.toString() === id && isProtectedConnection(c)) ?? false)
  // With public discovery, dials to public addresses leave from the listening port: what hole
  // punching needs (reuseport-tcp.ts). Without it, Node's own TCP as before.
  const reuse = pub !== undefined ? reusePortTcp({ log: (msg) => { opts.log?.warn({}, msg) }, protectedPeer: isMember }) : undefined
  thinYamuxWindowUpdates()
  const host = await createLibp2p<HostServices>({
    privateKey,
    start: false,
    addresses: path.addresses,
    transports: [reuse?.transport ?? tcp(), circuitRelayTransport({ reservationCompletionTimeout: 10_000 })],
    connectionProtector: transportProtector({
      keys: opts.transportKeys ?? tokenTransportKeys(opts.token),
      ...(opts.log !== undefined ? { log: opts.log } : {}),
      ...(pub !== undefined ? { plain: { plainDial: (id) => id !== undefined && !isMember(id) } } : {})
    }),
    connectionEncrypters: [noise()],
    // yamux pings each connection to learn its round trip (its window auto-tuning uses it): at
    // the start, then every 5 min instead of every 30 s. Liveness is presence's and
    // ConnectionProbe's job; yamux's ping only logs a failure. At 10 nodes its pings and their
    // ACKs were ~90 B/s of each node's idle traffic on the wire.
    streamMuxers: [yamux({ keepAliveInterval: 300_000 })],
    peerDiscovery: discovery,
    // One gater: the path filter's address rules and the admission's peer rules.
    connectionGater: { ...path.connectionGater, ...(opts.denyPeer !== undefined ? gaterFor(opts.denyPeer) : {}) },
    // No connection monitor: its ping stream on every connection every 30 s was half of an idle
    // node's streams. Presence heartbeats measure each member link's round trip and close a dead
    // connection; the other connections are pinged by ConnectionProbe (connection-probe.ts).
    connectionMonitor: { enabled: false },
    connectionManager: {
      // Many nodes on one host all dial from the same address: the default threshold treats
      // that as a flood and refuses them.
      inboundConnectionThreshold: 1_000,
      maxIncomingPendingConnections: 100
    },
    ...(opts.logger !== undefined ? { logger: opts.logger } : {}),
    services: {
      // First: guards every handler and topology registered after it (public-protocols.ts).
      guard: (components: { registrar: Parameters<typeof guardRegistrar>[0] }) => { guardRegistrar(components.registrar, () => identifyService); return {} },
      identify: identify(),
      ping: ping(),
      dht: kadDHT({
        protocol: `${ids.dhtProtocolPrefix}/kad/1.0.0`,
        clientMode: false,
        // Every query asks the kBucketSize peers closest to its key (and closer ones it learns
        // of): at libp2p's 20 each rendezvous round and upkeep query asked every member of a
        // network under ~20, so the DHT's idle traffic grew with N (docs/operations.md, "Idle
        // traffic"). The member DHT is small and its members answer; 6 is enough to hold a
        // provider record and to find it (the table still holds up to 64 × 6 members).
        kBucketSize: MEMBER_DHT_K,
        // Private and loopback addresses are the normal case on a LAN or in a test; with public
        // discovery, circuit addresses through relays at private addresses are left out.
        peerInfoMapper: pub !== undefined ? memberDhtPeerInfo : passthroughMapper
      }),
      pubsub: gossipsub({
        globalSignaturePolicy: 'StrictNoSign',
        // The message id is the event id: a duplicate event is a duplicate message, whoever
        // sends it, and gossip's seen-cache and the log agree on identity.
        msgIdFn: (msg) => messageId(msg.data),
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        // An event is at most 64 KiB; leave room for the envelope and the RPC framing.
        maxInboundDataLength: 256 * 1024,
        // Only token holders get past the transport protection, and many of them share one IP (a NAT, a test host);
        // the default same-IP penalty would make peers ignore each other past 10 per IP.
        scoreParams: { IPColocationFactorWeight: 0 }
      }),
      ...(pub !== undefined
        ? {
            publicDht: kadDHT({
              protocol: PUBLIC_DHT_PROTOCOL,
              // A client: it asks and announces, and answers no stranger's queries.
              clientMode: true,
              peerInfoMapper: removePrivateAddressesMapper,
              logPrefix: 'libp2p:dht-public',
              datastorePrefix: '/dht-public',
              metricsPrefix: 'libp2p_dht_public'
            })
          }
        : {}),
      // With public discovery the relay serves members only (hop is refused on plain
      // connections), so it needs none of the limits that protect a public relay.
      ...(opts.relay !== false ? { relay: pub !== undefined ? circuitRelayServer({ reservations: { applyDefaultLimit: false, maxReservations: MEMBER_RELAY_RESERVATIONS } }) : circuitRelayServer() } : {}),
      dcutr: dcutr(),
      ...(reuse !== undefined ? { observedListenAddrs: reuse.service } : {}),
      // AutoNAT v1 closes the connection it verified a dial-back on, even when the dial reused an
      // existing one: with public addresses in play it cut every link to a relay and to members
      // right after they opened (seen in the simulated internet). Off with public discovery;
      // kept as before without it (private addresses never trigger it).
      ...(pub === undefined ? { autonat: autoNAT() } : {})
    }
  })
  identifyService = host.services.identify
  created = host
  await host.start()
  return host
}

/**
 * The addresses of ours that libp2p calls public (after --public-ranges), with each listen port:
 * a member with a public address announces them to members and to the public DHT.
 */
export function publicListenAddrs (listen: readonly string[], filter?: AddressFilter): string[] {
  const out: string[] = []
  const locals = Object.values(networkInterfaces()).flatMap((infos) => infos ?? []).filter((i) => i.family === 'IPv4' && !i.internal)
  for (const l of listen) {
    const m = /^\/ip4\/([^/]+)\/tcp\/(\d+)$/.exec(l)
    if (m === null || m[2] === '0') continue
    const ips = m[1] === '0.0.0.0' ? locals.map((i) => i.address) : [m[1] as string]
    for (const ip of ips) {
      if (isPrivateIp(ip) === true || (filter !== undefined && !filter.allowsIp(ip))) continue
      out.push(`/ip4/${ip}/tcp/${m[2] as string}`)
    }
  }
  return [...new Set(out)]
}

/** Refuse a denied peer as soon as its identity is known (after the handshake), both ways. */
function gaterFor (deny: (peerId: string, epoch?: number) => boolean): NonNullable<Libp2pOptions['connectionGater']> {
  return {
    denyDialPeer: async (peer) => deny(peer.toString()),
    denyInboundEncryptedConnection: async (peer, conn) => deny(peer.toString(), protectedEpoch(conn)),
    denyOutboundEncryptedConnection: async (peer, conn) => deny(peer.toString(), protectedEpoch(conn)),
    denyInboundUpgradedConnection: async (peer, conn) => deny(peer.toString(), protectedEpoch(conn)),
    denyOutboundUpgradedConnection: async (peer, conn) => deny(peer.toString(), protectedEpoch(conn))
  }
}
