import type { Connection, PeerId, Stream, StreamHandler, StreamHandlerRecord, Topology } from '@libp2p/interface'
import { isPlainConnection } from './transport-protector.js'

/**
 * What a plain (unprotected) connection may carry: the connection to or from a public libp2p
 * node, which does not hold the token (docs/mesh.md, "Beyond the LAN"). Everything of the
 * network (sync, gossip, presence, the private DHT, the VPN, tunnels, kubeconfig) needs the
 * token-keyed protection; on a plain connection:
 * - inbound streams of other protocols are refused before their handler runs;
 * - topologies (how gossipsub, the relay discovery and the DHTs learn about peers) of other
 *   protocols are not told about the peer, so nothing of ours opens a stream to it;
 * - identify answers with the public protocols only, so the network's protocol names (which
 *   carry its id) are not shown to strangers.
 */

/** Protocols a stranger may open on us over a plain connection. */
export const PUBLIC_INBOUND: ReadonlySet<string> = new Set([
  '/ipfs/id/1.0.0',
  '/ipfs/ping/1.0.0',
  // a public relay delivering a relayed connection from a member
  '/libp2p/circuit/relay/0.2.0/stop',
  '/libp2p/dcutr',
  '/libp2p/autonat/1.0.0',
  '/libp2p/autonat/2/dial-back'
])

/** Protocols we use towards public nodes (besides the inbound ones). */
export const PUBLIC_OUTBOUND: ReadonlySet<string> = new Set([
  ...PUBLIC_INBOUND,
  '/ipfs/kad/1.0.0',
  // reservations on public relays (our own relay serves members only: hop is not inbound-public)
  '/libp2p/circuit/relay/0.2.0/hop',
  '/libp2p/autonat/2/dial-request'
])

const IDENTIFY = '/ipfs/id/1.0.0'

interface GuardedRegistrar {
  getHandler: (protocol: string) => StreamHandlerRecord
  register: (protocol: string, topology: Topology) => Promise<string>
}

interface IdentifyLike {
  handleProtocol: (stream: Stream, connection: Connection) => Promise<void>
  components: { peerStore: { get: (id: PeerId, o?: unknown) => Promise<{ protocols: string[] }> } }
}

function refuse (protocol: string): StreamHandler {
  return (stream) => { stream.abort(new Error(`${protocol} is not served on an unprotected connection`)) }
}

/**
 * Installs the rules above on a libp2p registrar (as the first service, before any other
 * registers). `identify` is looked up lazily: the identify service, to answer strangers.
 */
export function guardRegistrar (registrar: GuardedRegistrar, identify: () => unknown): void {
  const getHandler = registrar.getHandler.bind(registrar)
  registrar.getHandler = (protocol) => {
    const record = getHandler(protocol)
    return {
      ...record,
      handler: (stream, connection) => {
        if (!isPlainConnection(connection)) return record.handler(stream, connection)
        if (!PUBLIC_INBOUND.has(protocol)) return refuse(protocol)(stream, connection)
        if (protocol === IDENTIFY) return publicIdentify(identify() as IdentifyLike | undefined, stream, connection)
        return record.handler(stream, connection)
      }
    }
  }
  const register = registrar.register.bind(registrar)
  registrar.register = async (protocol, topology) => {
    if (PUBLIC_OUTBOUND.has(protocol)) return await register(protocol, topology)
    const guarded: Topology = Object.create(topology, {
      onConnect: {
        value: (peer: PeerId, connection: Connection) => {
          if (isPlainConnection(connection)) {
            // Told later, when a protected connection to the same peer is identified.
            topology.filter?.remove(peer)
            return
          }
          return topology.onConnect?.(peer, connection)
        }
      }
    }) as Topology
    return await register(protocol, guarded)
  }
}

/** identify's own answer, with our protocol list cut to the public protocols. */
async function publicIdentify (service: IdentifyLike | undefined, stream: Stream, connection: Connection): Promise<void> {
  if (service?.components?.peerStore === undefined || typeof service.handleProtocol !== 'function') {
    stream.abort(new Error('identify is not available to unprotected connections'))
    return
  }
  const store = service.components.peerStore
  const components = Object.create(service.components, {
    peerStore: {
      value: Object.create(store, {
        get: {
          value: async (id: PeerId, o?: unknown) => {
            const data = await store.get(id, o)
            return { ...data, protocols: data.protocols.filter((p) => PUBLIC_INBOUND.has(p)) }
          }
        }
      })
    }
  })
  // The instance's handleProtocol is bound to it (identify's constructor): take the class's own.
  const unbound = (Object.getPrototypeOf(service) as IdentifyLike).handleProtocol
  await unbound.call(Object.create(service, { components: { value: components } }), stream, connection)
}
