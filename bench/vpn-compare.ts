/**
 * `npm run bench -- vpn-compare`: only the side-by-side table of the VPN bench (plain, Weft and
 * the userspace VPNs from Debian; see _vpn-compare.ts), without the libp2p baselines, the MTU
 * 9000 run or the soak: the quick loop while working on the data plane. Same lab as bench/vpn.ts.
 *
 * Where the native packet loop is built, Weft is measured twice per round: with its JavaScript
 * loop (WEFT_PACKET_LOOP=js, "before") and with the native one (the ratios are this row's). The
 * two daemons are restarted between the rows, keeping their data (same addresses), and each row
 * waits until the direct path carries the traffic. WEFT_BENCH_VPN_JS_LOOP=0 leaves the
 * JavaScript row out.
 */
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { NetnsLab, waitFor, weftApi, type LabHost, type WeftNode } from '../test/system/netns.js'
import { unsupported } from './vpn.js'
import { progress } from './_lib.js'
import { compare, compareSystems } from './_vpn-compare.js'
import { startVpnPair } from '../test/system/netns-vpn-pair.js'
import { weftVersion } from '../src/node/version.js'
import { loadNativeLoop } from '../src/net/packet-loop-native.js'

interface PairVpn { addresses: string[], peers: Array<{ path?: string }>, packetThread?: { loop?: string, restarts?: number } }

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url))

export async function run (): Promise<void> {
  const why = unsupported()
  if (why !== undefined) {
    progress(`vpn-compare: skipped: ${why}`)
    process.stdout.write(JSON.stringify({ bench: 'vpn', metric: 'compare', value: null, unit: null, target: null, skipped: why }) + '\n')
    return
  }
  const token = execFileSync(process.execPath, [CLI, 'token', 'new'], { encoding: 'utf8' }).trim()
  const lab = await NetnsLab.create(2, { hostnamePrefix: 'vpncmp' })
  try {
    const both = typeof loadNativeLoop() !== 'string' && process.env.WEFT_BENCH_VPN_JS_LOOP !== '0'
    if (!both) {
      const { a, b, addrB } = await startVpnPair(lab, CLI, token, 30_000, { asWeft: true })
      await compare(lab, a, b, addrB, weftVersion())
      return
    }
    let nodes: WeftNode[] = []
    const pairState = async (): Promise<string> => {
      const one = async (n: WeftNode): Promise<string> => {
        const v = (await weftApi<{ vpn?: PairVpn & { drops: Record<string, number>, tun: { faults?: number } } }>(lab, n, 'GET', '/status')).vpn
        if (v === undefined) return 'no vpn'
        const drops = Object.entries(v.drops).filter(([, x]) => x > 0).map(([k, x]) => `${k} ${x}`).join(', ')
        return `paths ${v.peers.map((p) => p.path ?? '-').join(',')}, drops ${drops === '' ? 'none' : drops}, faults ${v.tun.faults ?? 0}, thread restarts ${v.packetThread?.restarts ?? 0}`
      }
      return (await Promise.all(nodes.map(async (n) => await one(n).catch((e: Error) => e.message)))).map((x, i) => `${i === 0 ? 'A' : 'B'}: ${x}`).join('; ')
    }
    let current: 'js' | 'native' | undefined
    // The daemons inherit this process's environment: WEFT_PACKET_LOOP picks their loop.
    const pair = async (loop: 'js' | 'native'): Promise<string> => {
      for (const n of nodes) await lab.stop(n.proc)
      if (loop === 'js') process.env.WEFT_PACKET_LOOP = 'js'
      else delete process.env.WEFT_PACKET_LOOP
      const p = await startVpnPair<PairVpn>(lab, CLI, token, 30_000, { asWeft: true })
      delete process.env.WEFT_PACKET_LOOP
      nodes = p.nodes
      current = loop
      const want = loop === 'js' ? 'javascript' : 'native'
      await waitFor(async () => {
        const [va, vb] = [await p.vpn(0), await p.vpn(1)]
        return [va, vb].every((v) => v.packetThread?.loop === want && v.peers.some((x) => x.path === 'direct'))
      }, `the ${want} loop on the direct path on A and B`, 30_000, 200)
      return p.addrB
    }
    const addrB = await pair('native')
    const [a, b] = lab.hosts as [LabHost, LabHost]
    const enter = (loop: 'js' | 'native') => async (): Promise<void> => {
      // What the previous Weft row left (its path, drops, faults), so an odd figure can be read.
      if (current !== undefined && current !== loop) progress(`vpn: weft, ${current === 'js' ? 'JavaScript' : 'native'} loop, after its round: ${await pairState()}`)
      if (current !== loop) await pair(loop)
    }
    await compareSystems(lab, a, b, [
      { name: 'weft, JavaScript loop', version: weftVersion(), addrB, enter: enter('js') },
      { name: 'weft', version: weftVersion(), addrB, enter: enter('native') }
    ])
    progress(`vpn: weft, ${current === 'js' ? 'JavaScript' : 'native'} loop, at the end: ${await pairState()}`)
  } finally {
    await lab.destroy()
  }
}
