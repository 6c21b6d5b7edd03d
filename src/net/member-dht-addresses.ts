import { isPrivate } from '@libp2p/utils'
import type { PeerInfo } from '@libp2p/interface'

/**
 * The private DHT's peer-info mapper with public discovery (without it the DHT passes every
 * address through, as before): addresses in the records members exchange (FIND_NODE and
 * GET_PROVIDERS answers, peers added to the routing table) keep private and loopback addresses
 * (the normal case on a LAN) but drop circuit addresses through a relay at a private address.
 *
 * Why: libp2p reserves its relay slots on any connected peer that serves circuit relay hop, and
 * on a LAN that is every member, so each member announced several
 * `<member's LAN address>/p2p/<member>/p2p-circuit/p2p/<us>` addresses (~90 bytes each, one more
 * per address the relay was seen at). They reach nobody a direct address does not: whoever can
 * reach the relay at its private address shares its private network. In a 10-node LAN they made
 * every DHT answer ~10× larger: 4.6 KB/s of a node's idle traffic against 0.45 KB/s without
 * (issue 16). Circuit addresses through relays at public addresses (public relays, a member with
 * a public address, or ranges made public with --public-ranges) are kept: they are how NATted
 * members reach each other.
 */
export function memberDhtPeerInfo (peer: PeerInfo): PeerInfo {
  const multiaddrs = peer.multiaddrs.filter((ma) => !ma.toString().includes('/p2p-circuit') || !isPrivate(ma))
  return multiaddrs.length === peer.multiaddrs.length ? peer : { ...peer, multiaddrs }
}
