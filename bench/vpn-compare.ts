/**
 * `npm run bench -- vpn-compare`: only the side-by-side table of the VPN bench (plain, Weft and
 * the userspace VPNs from Debian; see _vpn-compare.ts), without the libp2p baselines, the MTU
 * 9000 run or the soak: the quick loop while working on the data plane. Same lab as bench/vpn.ts.
 */
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { NetnsLab } from '../test/system/netns.js'
import { unsupported } from './vpn.js'
import { progress } from './_lib.js'
import { compare } from './_vpn-compare.js'
import { startVpnPair } from '../test/system/netns-vpn-pair.js'
import { weftVersion } from '../src/node/version.js'

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
    const { a, b, addrB } = await startVpnPair(lab, CLI, token, 30_000, { asWeft: true })
    await compare(lab, a, b, addrB, weftVersion())
  } finally {
    await lab.destroy()
  }
}
