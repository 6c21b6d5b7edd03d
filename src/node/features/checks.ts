import { readForwarding } from '../../adapters/host-network.js'
import { forwardingProblem } from '../host-checks.js'
import { hostnameProblem, noPeersProblem, noTunProblem } from '../mesh-checks.js'
import type { Feature, FeatureContext, ProblemReport } from '../feature.js'
import { reusePortProblem } from '../../net/reuseport-tcp.js'

/**
 * The node's own checks (issue 17: problems said out loud): peers not found, mDNS that cannot
 * work, our host name taken, --advertise with forwarding off, no VPN device. Every node runs it.
 */
export class NodeChecks implements Feature {
  readonly name = 'checks'
  private lastConnected: number

  /** `vpn`: whether the VPN device runs; `tunError`: why it could not be opened, if it could not. */
  constructor (private readonly ctx: FeatureContext, private readonly vpn: () => boolean, private readonly tunError: string | undefined) {
    this.lastConnected = ctx.now()
  }

  problems (): ProblemReport[] {
    const { ctx } = this
    const { config } = ctx
    const now = ctx.now()
    const state = ctx.state()
    if (ctx.mesh.peers().some((p) => p.connected)) this.lastConnected = now
    // The mesh's own finding (net/lan-discovery.ts): it sends mDNS on an interface it picks when
    // no route carries multicast, so only "no interface can carry it at all" is a problem.
    const mdns = ctx.mesh.problems().map((message) => ({ code: 'mdns-unusable', severity: 'warning' as const, message, fix: 'connect this machine to a LAN with multicast, give --peer <multiaddr> of a running node, or use public discovery (--bootstrap); --no-mdns silences this' }))[0]
    const out = [
      this.tunError !== undefined
        ? { code: 'tun-unavailable', severity: 'error' as const, message: `no VPN: the TUN device could not be opened (${this.tunError}); this node runs without one`, fix: 'run weft as root or with CAP_NET_ADMIN (deploy/weft.service), load the tun module (modprobe tun) if /dev/net/tun is missing, or (weft up only) give --no-tun to run without a VPN on purpose' }
        : undefined,
      noPeersProblem({
        aloneMs: now - this.lastConnected,
        mdns: config.mdns,
        mdnsUnusable: mdns !== undefined,
        peers: config.peers,
        knownMembers: [...state.members.active.keys()].filter((a) => a !== ctx.identity.authorHex).length
      }),
      mdns,
      // With public discovery: dials cannot leave from the listening port (net/reuseport-tcp.ts).
      ...[reusePortProblem()].filter((p) => p !== undefined).map((p) => ({ code: 'hole-punching-unavailable', severity: 'warning' as const, ...p })),
      hostnameProblem(state, ctx.identity.authorHex),
      forwardingProblem(config.advertise, config.advertise.length > 0 ? readForwarding() : {}),
      // A node whose TUN failed already says so (tun-unavailable).
      this.tunError === undefined ? noTunProblem(state, ctx.identity.authorHex, this.vpn()) : undefined
    ]
    return out.filter((p): p is ProblemReport => p !== undefined)
  }

  async stop (): Promise<void> {}
}
