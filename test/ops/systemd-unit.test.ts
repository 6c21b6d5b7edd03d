import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const UNIT = fileURLToPath(new URL('../../deploy/weft.service', import.meta.url))

/** `Key=value` lines of the unit, by key (a repeated key keeps every value). */
function directives (text: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim())
    if (m !== null) out.set(m[1] as string, [...(out.get(m[1] as string) ?? []), m[2] as string])
  }
  return out
}

async function analyzer (): Promise<string | undefined> {
  try {
    await promisify(execFile)('systemd-analyze', ['--version'])
    return undefined
  } catch {
    return 'systemd-analyze is not installed'
  }
}
const noAnalyzer = await analyzer()

describe('deploy/weft.service', () => {
  const d = directives(readFileSync(UNIT, 'utf8'))
  const one = (k: string): string | undefined => d.get(k)?.[0]

  it('is hardened: CAP_NET_ADMIN only, no new privileges, a read-only system, its state in /var/lib/weft', () => {
    expect(one('AmbientCapabilities')).toBe('CAP_NET_ADMIN')
    expect(one('CapabilityBoundingSet')).toBe('CAP_NET_ADMIN')
    expect(one('NoNewPrivileges')).toBe('yes')
    expect(one('ProtectSystem')).toBe('strict')
    expect(one('ProtectHome')).toBe('yes')
    expect(one('StateDirectory')).toBe('weft')
    expect(one('DynamicUser')).toBe('yes')
    expect(one('DevicePolicy')).toBe('closed')
    expect(d.get('DeviceAllow')).toEqual(['/dev/net/tun rw'])
    expect(one('RestrictAddressFamilies')?.split(' ').sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX'])
    // The data dir the CLI finds as root (src/node/data-dir.ts) is the StateDirectory.
    expect(one('Environment')).toMatch(/WEFT_DATA_DIR=\/var\/lib\/weft/)
    expect(one('ExecStart')).toMatch(/^\/usr\/local\/bin\/weft up --token-file \$\{CREDENTIALS_DIRECTORY\}\/token$/)
  })

  it.skipIf(noAnalyzer !== undefined)(`systemd rates its exposure as OK or better${noAnalyzer !== undefined ? ` (skipped: ${noAnalyzer})` : ''}`, async () => {
    const { stdout } = await promisify(execFile)('systemd-analyze', ['security', '--offline=true', '--no-pager', UNIT]).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }))
    const m = /Overall exposure level for weft\.service: ([\d.]+) (\w+)/.exec(stdout)
    expect(m, stdout.slice(-500)).not.toBeNull()
    expect(Number(m?.[1])).toBeLessThan(3)
  })
})
