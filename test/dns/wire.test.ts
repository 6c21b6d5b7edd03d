import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { Packet } from 'dns2'
import {
  CLASSIC_UDP_BYTES, encodeQuery, encodeResponse, ipv4Bytes, ipv6Bytes, nameToWire, parseQuery, RCODE, soaRdata, srvRdata, TYPE, txtRdata
} from '../../src/adapters/dns-wire.js'
import { parseHostPort, formatHostPort } from '../../src/adapters/dns-client.js'
import { decode } from './support.js'

describe('dns wire: parseQuery', () => {
  it('reads id, flags, the question (lowercased, case kept in the raw bytes) and EDNS', () => {
    const q = encodeQuery(0xbeef, 'Web1.East.Weft.Internal', TYPE.AAAA, { edns: 4096 })
    const p = parseQuery(q)
    expect(p.ok).toBe(true)
    if (!p.ok) return
    expect(p.query).toMatchObject({ id: 0xbeef, opcode: 0, rd: true, cd: false, name: 'web1.east.weft.internal', qtype: TYPE.AAAA, qclass: 1, edns: { payload: 4096, version: 0 } })
    expect(p.query.question.toString('latin1')).toContain('Web1')
  })

  it('escapes bytes outside [a-z0-9_-] as \\DDD, so a dot inside a label stays one label', () => {
    const q = Buffer.concat([Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([3]), Buffer.from('a.b'), Buffer.from([2]), Buffer.from('*\\'), Buffer.from([0, 0, 1, 0, 1])])
    const p = parseQuery(q)
    expect(p.ok && p.query.name).toBe('a\\046b.\\042\\092')
  })

  it('never throws, whatever the bytes (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 700 }), (bytes) => {
      const r = parseQuery(Buffer.from(bytes))
      if (!r.ok && r.reply !== undefined) expect([RCODE.FORMERR, RCODE.NOTIMP]).toContain(r.reply.rcode)
    }), { numRuns: 20_000 })
  })

  it('never throws on mutated queries, and a FORMERR reply decodes (property)', () => {
    const base = encodeQuery(1, 'n1.c.weft.internal', TYPE.SRV, { edns: 1232 })
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), fc.nat(base.length), (flips, cut) => {
      const m = Buffer.from(base)
      for (const [i, v] of flips) m[i] = v
      const r = parseQuery(m.subarray(0, cut))
      if (!r.ok && r.reply !== undefined) {
        const b = encodeResponse(r.reply, { rcode: r.reply.rcode, aa: false, ra: false }, CLASSIC_UDP_BYTES).bytes
        expect(decode(b).header.rcode).toBe(r.reply.rcode)
      }
      if (r.ok) {
        const b = encodeResponse(r.query, { rcode: 0, aa: true, ra: false, answers: [{ type: TYPE.A, ttl: 5, rdata: ipv4Bytes('10.0.0.1') }] }, CLASSIC_UDP_BYTES).bytes
        expect(() => Packet.parse(b)).not.toThrow()
      }
    }), { numRuns: 5000 })
  })
})

describe('dns wire: encodeResponse and record data (checked with dns2\'s decoder)', () => {
  it('writes A, AAAA, SRV, TXT and SOA records that dns2 reads back', () => {
    const p = parseQuery(encodeQuery(42, 'x.weft.internal', TYPE.ANY, { edns: 1232 }))
    if (!p.ok) throw new Error('parse')
    const { bytes, truncated } = encodeResponse(p.query, {
      rcode: RCODE.NOERROR,
      aa: true,
      ra: true,
      answers: [
        { type: TYPE.A, ttl: 5, rdata: ipv4Bytes('10.1.2.3') },
        { type: TYPE.AAAA, ttl: 5, rdata: ipv6Bytes('fd00:1::5') },
        { type: TYPE.SRV, ttl: 5, rdata: srvRdata(0, 100, 8080, 'web.shop.svc.clusterset.local') },
        { type: TYPE.TXT, ttl: 5, rdata: txtRdata('1.0.0') }
      ],
      authority: [{ owner: nameToWire('weft.internal'), type: TYPE.SOA, ttl: 5, rdata: soaRdata({ mname: 'ns.dns.weft.internal', rname: 'hostmaster.weft.internal', serial: 7, refresh: 1, retry: 2, expire: 3, minimum: 5 }) }],
      ednsPayload: 1232
    }, 1232)
    expect(truncated).toBe(false)
    const d = decode(bytes)
    expect(d.header).toMatchObject({ id: 42, qr: 1, aa: 1, ra: 1, rd: 1, rcode: 0 })
    expect(d.answers).toMatchObject([
      { name: 'x.weft.internal', type: TYPE.A, ttl: 5, address: '10.1.2.3' },
      { type: TYPE.AAAA, address: 'fd00:1::5' },
      { type: TYPE.SRV, priority: 0, weight: 100, port: 8080, target: 'web.shop.svc.clusterset.local' },
      { type: TYPE.TXT, data: ['1.0.0'] }
    ])
    expect(d.authorities).toMatchObject([{ name: 'weft.internal', type: TYPE.SOA, serial: 7, minimum: 5 }])
    expect(d.additionals).toMatchObject([{ type: TYPE.OPT, class: 1232 }])
  })

  it('over the size limit: no records, TC set, question and OPT kept', () => {
    const p = parseQuery(encodeQuery(1, 'big.weft.internal', TYPE.A, { edns: 512 }))
    if (!p.ok) throw new Error('parse')
    const answers = Array.from({ length: 40 }, (_, i) => ({ type: TYPE.A, ttl: 5, rdata: ipv4Bytes(`10.0.0.${i}`) }))
    const r = encodeResponse(p.query, { rcode: 0, aa: true, ra: false, answers, ednsPayload: 1232 }, 512)
    expect(r.truncated).toBe(true)
    expect(r.bytes.length).toBeLessThanOrEqual(512)
    const d = decode(r.bytes)
    expect(d.header).toMatchObject({ tc: 1, aa: 1 })
    expect(d.answers).toEqual([])
    expect(d.questions).toHaveLength(1)
    expect(d.additionals).toHaveLength(1)
  })

  it('BADVERS (16) goes in the OPT record\'s extended rcode', () => {
    const r = encodeResponse({ id: 3, opcode: 0, rd: true, cd: false }, { rcode: RCODE.BADVERS, aa: false, ra: false, ednsPayload: 1232 }, 512)
    expect(r.bytes[3] as number & 0x0f).toBe(0)
    expect(decode(r.bytes).header.rcode).toBe(16)
  })

  it('IPv6 text forms', () => {
    const hex = (a: string): string => ipv6Bytes(a).toString('hex')
    expect(hex('::')).toBe('0'.repeat(32))
    expect(hex('::1')).toBe('0'.repeat(31) + '1')
    expect(hex('fd00:1::5')).toBe('fd000001' + '0'.repeat(20) + '0005')
    expect(hex('::ffff:192.0.2.1')).toBe('0'.repeat(20) + 'ffffc0000201')
    expect(hex('64:ff9b::1.2.3.4')).toBe('0064ff9b' + '0'.repeat(16) + '01020304')
    expect(hex('1:2:3:4:5:6:7:8')).toBe('00010002000300040005000600070008')
    expect(hex('1:2:3:4:5:6:1.2.3.4')).toBe('000100020003000400050006' + '01020304')
    for (const bad of ['1:2', '1::2::3', ':::', '1:2:3:4:5:6:7:8:9', '12345::', 'g::1', '1:2:3:4:5:6:7::8']) expect(() => ipv6Bytes(bad)).toThrow()
    expect(() => ipv4Bytes('1.2.3.256')).toThrow()
  })

  it('TXT values longer than 255 bytes are split into character-strings', () => {
    const t = 'x'.repeat(300)
    const b = txtRdata(t)
    expect(b[0]).toBe(255)
    expect(b[256]).toBe(45)
    expect(txtRdata('')).toEqual(Buffer.from([0]))
  })
})

describe('dns client: host:port', () => {
  it('parses ip, ip:port, [v6]:port and bare v6; rejects names and bad ports', () => {
    expect(parseHostPort('10.1.0.1')).toEqual({ host: '10.1.0.1', port: 53, family: 4 })
    expect(parseHostPort('10.1.0.1:5353')).toEqual({ host: '10.1.0.1', port: 5353, family: 4 })
    expect(parseHostPort('[fd00::1]:54')).toEqual({ host: 'fd00::1', port: 54, family: 6 })
    expect(parseHostPort('fd00::1')).toEqual({ host: 'fd00::1', port: 53, family: 6 })
    expect(parseHostPort('[::1]')).toEqual({ host: '::1', port: 53, family: 6 })
    for (const bad of ['dns.google', 'dns.google:53', '10.1.0.1:0', '10.1.0.1:70000', '10.1.0.1:x', '']) expect(() => parseHostPort(bad)).toThrow()
    expect(formatHostPort({ host: 'fd00::1', port: 53 })).toBe('[fd00::1]:53')
    expect(formatHostPort({ host: '10.0.0.1', port: 53 })).toBe('10.0.0.1:53')
  })
})
