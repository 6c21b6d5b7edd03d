import type { ProblemReport } from './feature.js'

/**
 * Checks of this host that explain silent failures (issue 17), as pure functions of what the
 * kernel says (adapters/host-network.ts reads it): --advertise with forwarding off. (mDNS that
 * cannot work is the mesh's own finding: net/lan-discovery.ts.)
 */

/**
 * A node that advertises a network (--advertise) routes packets from the overlay into it; with
 * the kernel's forwarding off every such packet is dropped (100% loss, silently).
 */
export function forwardingProblem (advertise: readonly string[], forwarding: { v4?: boolean, v6?: boolean }): ProblemReport | undefined {
  const v4 = advertise.filter((c) => !c.includes(':'))
  const v6 = advertise.filter((c) => c.includes(':'))
  const v4off = v4.length > 0 && forwarding.v4 === false
  const v6off = v6.length > 0 && forwarding.v6 === false
  const off = [...(v4off ? ['net.ipv4.ip_forward'] : []), ...(v6off ? ['net.ipv6.conf.all.forwarding'] : [])]
  if (off.length === 0) return undefined
  return {
    code: 'ip-forward-off',
    severity: 'error',
    message: `--advertise ${[...(v4off ? v4 : []), ...(v6off ? v6 : [])].join(', ')}: the kernel does not forward packets (${off.map((k) => `${k}=0`).join(', ')}), so traffic to the advertised networks is dropped`,
    fix: `${off.map((k) => `sysctl -w ${k}=1`).join('; ')} (and keep it: echo ${off.map((k) => `${k}=1`).join(' ')} in /etc/sysctl.d/99-weft.conf)`
  }
}
