import { readFileSync, readdirSync } from 'node:fs'

/**
 * What the kernel says about this host's networking, for the node's problem checks
 * (node/host-checks.ts): the forwarding switches. Linux
 * /proc and /sys; elsewhere every read says "unknown" (undefined) and the checks stay quiet.
 * Synchronous and small: read every few seconds at most.
 */

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
