import { hostLabel } from '../projections/dns.js'
import { leaseOf } from '../projections/ipam.js'
import type { NetworkState } from '../projections/network.js'
import { networkView } from '../projections/view.js'
import type { ProblemReport } from './feature.js'

/** How long a node may have no connected peer before it says so. */
export const NO_PEERS_AFTER_MS = 30_000

/**
 * Checks of this node's place in the network that explain silent failures (issue 17), as pure
 * functions of the folded state and what the mesh tried.
 */

export interface PeerSearch {
  /** How long no peer has been connected (since start, or since the last one went). */
  aloneMs: number
  mdns: boolean
  /** mDNS is on but cannot work (see host-checks.ts mdnsProblem). */
  mdnsUnusable: boolean
  /** --peer addresses. */
  peers: readonly string[]
  /** Other members the log knows (their addresses are dialled again). */
  knownMembers: number
}

/** "No peers found for 30 s", with what was tried. */
export function noPeersProblem (s: PeerSearch): ProblemReport | undefined {
  if (s.aloneMs < NO_PEERS_AFTER_MS) return undefined
  const tried = [
    s.mdns ? `mDNS on the LAN${s.mdnsUnusable ? ' (unusable here: see mdns-unusable)' : ''}` : 'no mDNS (--no-mdns)',
    s.peers.length > 0 ? `--peer ${s.peers.slice(0, 3).join(', ')}${s.peers.length > 3 ? ` (+${s.peers.length - 3})` : ''}` : 'no --peer',
    s.knownMembers > 0 ? `the addresses of ${s.knownMembers} member${s.knownMembers === 1 ? '' : 's'} known from the log` : 'no member known from the log',
    'the DHT rendezvous (it needs a first connection)'
  ]
  return {
    code: 'no-peers',
    severity: 'warning',
    message: `no peers found for ${Math.floor(s.aloneMs / 1000)} s; tried: ${tried.join('; ')}`,
    fix: 'give --peer <multiaddr> of a running node (`weft status` on it lists its listen addresses); check that both use the same network token and that the listen port is open between them'
  }
}

/**
 * Our DNS name went to another member with the same host label that joined first: the DNS
 * projection names this node `<label>-<6 hex>` instead (projections/dns.ts distinctLabel).
 */
export function hostnameProblem (state: NetworkState, self: string): ProblemReport | undefined {
  const me = state.members.active.get(self)
  if (me === undefined) return undefined
  const label = hostLabel(me.hostname)
  const first = [...state.members.active.values()].find((m) => m.author !== self && hostLabel(m.hostname) === label &&
    (m.joinedLamport < me.joinedLamport || (m.joinedLamport === me.joinedLamport && m.author < self)))
  if (first === undefined) return undefined
  const name = networkView(state).members.find((m) => m.author === self)?.dnsName
  return {
    code: 'hostname-taken',
    severity: 'warning',
    message: `the host name "${label}" is taken: member ${first.peerId} (${first.hostname}) joined first with it, so this node is named ${name ?? `${label}-${self.slice(0, 6)}`} in DNS`,
    fix: 'give each machine its own name: restart this node with --hostname <unique name> (or remove the other member if it is gone: weft node ls, weft node evict)'
  }
}

/**
 * A node without a VPN device (--no-tun, or no TUN available) still holds an overlay address,
 * which reaches nothing: other nodes mark it "no VPN" (the join has no `vpn` capability), and
 * its DNS name is reserved but answers no A/AAAA (NODATA, docs/dns.md).
 */
export function noTunProblem (state: NetworkState, self: string, vpn: boolean): ProblemReport | undefined {
  const lease = leaseOf(state.ipam, self, 4) ?? leaseOf(state.ipam, self, 6)
  if (vpn || lease === undefined) return undefined
  return {
    code: 'no-vpn-address',
    severity: 'warning',
    message: `this node runs without a VPN device, so its overlay address ${lease.addr} reaches nothing (other members see it marked "no VPN") and its DNS name answers no address`,
    fix: 'run it with the TUN device (as root or with CAP_NET_ADMIN, without --no-tun) if it should be reachable on the overlay'
  }
}
