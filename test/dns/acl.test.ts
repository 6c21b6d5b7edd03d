import net from 'node:net'
import { networkInterfaces } from 'node:os'
import { afterEach, describe, expect, it } from 'vitest'
import { startDnsServer, networkDnsSource, type DnsServer } from '../../src/adapters/dns-server.js'
import { encodeQuery, TYPE } from '../../src/adapters/dns-wire.js'
import { dnsExchange } from '../../src/adapters/dns-client.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import { dnsClientFilter } from '../../src/node/dns-service.js'
import { join, LogBuilder } from '../projections/support.js'
import { ask, udpPort } from './support.js'

/**
 * Issue 11: a node's DNS server is no open resolver. It answers loopback, overlay and
 * advertised-network clients; others get no answer (UDP dropped, TCP closed) unless
 * --dns-allow names their network.
 */

const hostIp = Object.values(networkInterfaces()).flat().find((a) => a !== undefined && !a.internal && a.family === 'IPv4')?.address

function network (): ReturnType<LogBuilder['stateOf']> {
  const b = new LogBuilder(2)
  b.append(0, 'node.join', join('a'))
  b.append(1, 'node.join', join('b'))
  b.append(1, 'route.advertise', { cidr: '192.168.77.0/24' })
  b.syncAll()
  return b.stateOf(0)
}

describe('dns: which clients are answered', () => {
  it('loopback, the overlay (v4, v6) and advertised networks; nobody else unless allowed; "any" answers all', () => {
    const state = network()
    const allow = dnsClientFilter(() => state, []) as (a: string) => boolean
    expect(allow('127.0.0.1')).toBe(true)
    expect(allow('127.53.0.9')).toBe(true)
    expect(allow('::1')).toBe(true)
    expect(allow('::ffff:127.0.0.1')).toBe(true)
    expect(allow('10.1.3.4')).toBe(true) // the default overlay 10.1.0.0/16
    expect(allow('192.168.77.20')).toBe(true) // advertised by a member (a pod network behind it)
    expect(allow('::ffff:192.168.77.20')).toBe(true)
    expect(allow('192.0.2.50')).toBe(false)
    expect(allow('8.8.8.8')).toBe(false)
    expect(allow('fe80::1')).toBe(false)
    expect(allow('not an address')).toBe(false)
    const lan = dnsClientFilter(() => state, ['192.0.2.0/24']) as (a: string) => boolean
    expect(lan('192.0.2.50')).toBe(true)
    expect(lan('198.51.100.1')).toBe(false)
    expect(dnsClientFilter(() => state, ['any'])).toBeUndefined()
  })

  describe.skipIf(hostIp === undefined)('the server on a LAN address', () => {
    let server: DnsServer | undefined
    afterEach(async () => { await server?.close(); server = undefined })

    async function start (allow: string[]): Promise<number> {
      const state = network()
      const filter = dnsClientFilter(() => state, allow)
      server = await startDnsServer({
        listen: [{ host: hostIp as string, port: 0 }],
        answer: networkDnsSource(() => state),
        upstreams: ['192.0.2.254:53'], // an upstream: the case that made it an open resolver
        log: silentLogger,
        ...(filter !== undefined ? { allowClient: filter } : {})
      })
      return udpPort(server)
    }

    it('a client from a LAN address gets no answer over UDP and a closed connection over TCP; counted as denied', async () => {
      const port = await start([])
      // From this machine to its LAN address, the source is the LAN address: not a client of the network.
      const q = encodeQuery(7, 'dns-version.clusterset.local', TYPE.TXT)
      expect(await dnsExchange({ host: hostIp as string, port, family: 4 }, q, { proto: 'udp', timeoutMs: 500 })).toBeUndefined()
      const closed = await new Promise<boolean>((resolve) => {
        const s = net.connect(port, hostIp as string)
        s.on('data', () => { resolve(false) })
        s.on('close', () => { resolve(true) })
        s.on('error', () => { /* reset: closed */ })
      })
      expect(closed).toBe(true)
      expect(server?.stats.denied).toBeGreaterThanOrEqual(2)
      expect(server?.stats.queries).toBe(0)
    })

    it('--dns-allow with the LAN: answered', async () => {
      const port = await start([`${hostIp as string}/32`])
      const r = await ask(port, 'dns-version.clusterset.local', 'TXT', { host: hostIp as string })
      expect(r.header.rcode).toBe(0)
      expect(r.answers).toHaveLength(1)
      expect(server?.stats.denied).toBe(0)
    })
  })
})
