/** Helpers for the DNS server tests: a log-backed network, raw queries decoded by dns2. */
import { Resolver } from 'node:dns/promises'
import { Packet } from 'dns2'
import { dnsExchange } from '../../src/adapters/dns-client.js'
import { encodeQuery, TYPE } from '../../src/adapters/dns-wire.js'
import type { DnsServer } from '../../src/adapters/dns-server.js'
import type { MeshLogger } from '../../src/net/mesh-logger.js'
import type { BodyOf } from '../../src/log/bodies.js'
import { VPN_CAP } from '../../src/projections/dns.js'
import { join } from '../projections/support.js'

export interface Decoded {
  header: { id: number, qr: number, aa: number, tc: number, rd: number, ra: number, rcode: number }
  questions: Array<{ name: string, type: number }>
  answers: Array<{ name: string, type: number, ttl: number, address?: string, priority?: number, weight?: number, port?: number, target?: string, data?: unknown }>
  authorities: Array<{ name: string, type: number, ttl: number, primary?: string, minimum?: number, serial?: number }>
  additionals: Array<{ type: number, class: number }>
}

/** dns2's decoder: an implementation independent of the server's own codec. */
export function decode (b: Buffer): Decoded {
  return Packet.parse(b) as unknown as Decoded
}

export function udpPort (s: DnsServer): number {
  const a = s.addresses().find((x) => x.proto === 'udp')
  if (a === undefined) throw new Error('no UDP address')
  return a.port
}

let nextId = 1
export async function ask (port: number, name: string, type: keyof typeof TYPE = 'A', opts: { proto?: 'udp' | 'tcp', edns?: number, host?: string } = {}): Promise<Decoded> {
  const q = encodeQuery(nextId++ & 0xffff, name, TYPE[type], opts.edns !== undefined ? { edns: opts.edns } : {})
  const host = opts.host ?? '127.0.0.1'
  const r = await dnsExchange({ host, port, family: host.includes(':') ? 6 : 4 }, q, { proto: opts.proto ?? 'udp', timeoutMs: 5000 })
  if (r === undefined) throw new Error(`no answer for ${name} ${type}`)
  return decode(r)
}

export function resolverFor (port: number): Resolver {
  const r = new Resolver({ timeout: 3000, tries: 1 })
  r.setServers([`127.0.0.1:${port}`])
  return r
}

/** The error code of a failed lookup (ENOTFOUND for NXDOMAIN, ENODATA for NODATA, …). */
export async function errorCode (p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'no code'
  }
  return 'resolved'
}

export function recordingLogger (): MeshLogger & { lines: Array<{ level: string, msg: string, obj: object }> } {
  const lines: Array<{ level: string, msg: string, obj: object }> = []
  const at = (level: string) => (obj: object, msg: string): void => { lines.push({ level, msg, obj }) }
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}

export function exportBody (cluster: string, namespace: string, name: string, ports: BodyOf<'service.export'>['ports']): BodyOf<'service.export'> {
  return { cluster, namespace, name, type: 'ClusterSetIP', ports, sessionAffinity: 'None', labels: {}, annotations: {} }
}

/** The join of a node with a VPN device (the TUN data plane): only such a member's name has A/AAAA. */
export function vpnJoin (hostname: string, cluster = 'default'): BodyOf<'node.join'> {
  return { ...join(hostname, cluster), caps: [VPN_CAP] }
}
