import { readFileSync, readdirSync } from 'node:fs'

/**
 * What the kernel says about this host's networking, for the node's problem checks
 * (node/host-checks.ts): the IPv4 routing table, interface flags and forwarding switches. Linux
 * /proc and /sys; elsewhere every read says "unknown" (undefined) and the checks stay quiet.
 * Synchronous and small: read every few seconds at most.
 */

/** `/proc/net/route` as text, or undefined when it cannot be read. */
export function readIpv4Routes (): string | undefined {
  return readText('/proc/net/route')
}

/** Interface name → its flags (IFF_*), from /sys/class/net/<name>/flags. */
export function readInterfaceFlags (): Map<string, number> {
  const out = new Map<string, number>()
  let names: string[]
  try {
    names = readdirSync('/sys/class/net')
  } catch {
    return out
  }
  for (const name of names) {
    const text = readText(`/sys/class/net/${name}/flags`)
    const n = text === undefined ? NaN : Number.parseInt(text.trim(), 16)
    if (Number.isFinite(n)) out.set(name, n)
  }
  return out
}

/** Whether the kernel forwards packets between interfaces, per family (undefined: unknown). */
export function readForwarding (): { v4?: boolean, v6?: boolean } {
  const v4 = readText('/proc/sys/net/ipv4/ip_forward')
  const v6 = readText('/proc/sys/net/ipv6/conf/all/forwarding')
  return {
    ...(v4 !== undefined ? { v4: v4.trim() !== '0' } : {}),
    ...(v6 !== undefined ? { v6: v6.trim() !== '0' } : {})
  }
}

function readText (path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return undefined
  }
}
