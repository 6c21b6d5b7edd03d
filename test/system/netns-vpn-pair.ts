/**
 * Two `weft up` nodes, A and B, in a lab's first two namespaces, with the overlay working: the
 * start shared by the VPN soak test and the VPN bench.
 */
import { startWeft, waitApi, waitFor, weftApi, type LabHost, type NetnsLab, type WeftNode } from './netns.js'

export interface VpnPair<S> {
  a: LabHost
  b: LabHost
  nodes: [WeftNode, WeftNode]
  /** B's overlay address (no prefix). */
  addrB: string
  /** The `vpn` part of node i's /status. */
  vpn: (i: 0 | 1) => Promise<S>
}

/** `asWeft`: start the daemons as the `weft` executable does (the benches: what ships is measured). */
export async function startVpnPair<S extends { addresses: string[] }> (lab: NetnsLab, cli: string, token: string, timeoutMs = 45_000, opts: { asWeft?: boolean } = {}): Promise<VpnPair<S>> {
  const [a, b] = lab.hosts as [LabHost, LabHost]
  const nodes: [WeftNode, WeftNode] = [startWeft(lab, a, cli, token, [], opts), startWeft(lab, b, cli, token, [], opts)]
  await Promise.all(nodes.map(async (n) => { await waitApi(n, 30_000) }))
  const vpn = async (i: 0 | 1): Promise<S> => {
    const s = await weftApi<{ vpn?: S }>(lab, nodes[i], 'GET', '/status')
    if (s.vpn === undefined) throw new Error('no vpn in /status')
    return s.vpn
  }
  let addrB = ''
  await waitFor(async () => {
    const [va, vb] = [await vpn(0), await vpn(1)]
    if (va.addresses.length === 0 || vb.addresses.length === 0) return false
    addrB = (vb.addresses[0] as string).split('/')[0] as string
    return (await lab.exec(a, ['ping', '-n', '-c', '1', '-W', '1', addrB])).code === 0
  }, 'A to ping B through the overlay', timeoutMs, 100)
  return { a, b, nodes, addrB, vpn }
}
