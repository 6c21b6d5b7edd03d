import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import {
  CLUSTERSET_ZONE, deriveDns, distinctLabel, DNS_TTL, hostLabel, isIpv4, isIpv6, lookupDns, VPN_CAP, zoneProblem,
  type DnsInput, type DnsMember, type DnsRecord, type DnsTable
} from '../../src/projections/dns.js'
import { isValidLabel, isValidName, nameProblem, normalizeName } from '../../src/projections/dns-name.js'
import type { ImportPort, ServiceImport } from '../../src/projections/services.js'

// ---- helpers ----

const ZONE = 'weft.internal'

let order = 0
/** A member whose join announces a VPN device (its address reaches it), unless `caps` says otherwise. */
function member (hostname: string, cluster: string, extra: Partial<DnsMember> = {}): DnsMember {
  order++
  return { author: `author-${order.toString().padStart(3, '0')}`, hostname, cluster, joinedOrder: order, caps: [VPN_CAP], ...extra }
}

function imp (name: string, namespace: string, clusters: string[], ports: ImportPort[] = [], type: ServiceImport['type'] = 'ClusterSetIP'): ServiceImport {
  return {
    namespace,
    name,
    type,
    ports,
    sessionAffinity: 'None',
    labels: {},
    annotations: {},
    clusters,
    oldest: { cluster: clusters[0] as string, created: { lamport: 1, author: 'x', seq: 1, id: 'x' } },
    conflicts: [],
    address: `127.77.0.${(name.length + namespace.length) % 250 + 1}`,
    exporters: clusters.map((c, i) => ({ cluster: c, author: `exporter-${c}`, address: `127.77.1.${i + 1}` }))
  }
}

function table (members: DnsMember[], imports: ServiceImport[] = [], zone = ZONE): DnsTable {
  return deriveDns({ zone, members, imports })
}

function values (t: DnsTable, name: string, type: DnsRecord['type']): unknown[] {
  return (t.records.get(name) ?? []).filter((r) => r.type === type).map((r) => r.value)
}

// ---- unit tests ----

describe('dns: node names', () => {
  it('a unique hostname gets <host>.<cluster>.<zone> and <host>.<zone>, A and AAAA, TTL 5', () => {
    const t = table([member('Alpha', 'east', { v4: '10.1.0.5', v6: 'FD00::5' })])
    expect(values(t, 'alpha.east.weft.internal', 'A')).toEqual(['10.1.0.5'])
    expect(values(t, 'alpha.east.weft.internal', 'AAAA')).toEqual(['fd00::5'])
    expect(values(t, 'alpha.weft.internal', 'A')).toEqual(['10.1.0.5'])
    expect(values(t, 'alpha.weft.internal', 'AAAA')).toEqual(['fd00::5'])
    for (const list of t.records.values()) for (const r of list) expect(r.ttl).toBe(DNS_TTL)
    expect(DNS_TTL).toBe(5)
    expect(t.invalid).toEqual([])
  })

  it('the same hostname in two clusters: the first joined keeps it, the second gets <host>-<6 hex of its key>', () => {
    const first = member('db', 'east', { v4: '10.1.0.1', author: 'aa11bb22cc33' })
    const second = member('DB', 'west', { v4: '10.1.0.2', author: 'ff00ee99dd88' })
    const t = table([first, second])
    expect(values(t, 'db.east.weft.internal', 'A')).toEqual(['10.1.0.1'])
    expect(values(t, 'db.weft.internal', 'A')).toEqual(['10.1.0.1'])
    expect(values(t, 'db-ff00ee.west.weft.internal', 'A')).toEqual(['10.1.0.2'])
    expect(values(t, 'db-ff00ee.weft.internal', 'A')).toEqual(['10.1.0.2'])
    expect(t.records.has('db.west.weft.internal')).toBe(false)
    expect(t.hostNames.get(second.author)).toBe('db-ff00ee')
    expect(t.invalid).toEqual([])
  })

  it('a taken hostname (issue 11): the earliest joined keeps its name whatever the input order; the later one gets a distinct, stable name', () => {
    const late = member('node', 'east', { v4: '10.1.0.9', joinedOrder: 50, author: '0123456789ab' })
    const early = member('Node', 'east', { v4: '10.1.0.3', joinedOrder: 2, author: 'fedcba987654' })
    for (const t of [table([late, early]), table([early, late])]) {
      expect(values(t, 'node.east.weft.internal', 'A')).toEqual(['10.1.0.3'])
      expect(values(t, 'node.weft.internal', 'A')).toEqual(['10.1.0.3'])
      expect(values(t, 'node-012345.east.weft.internal', 'A')).toEqual(['10.1.0.9'])
      expect(t.invalid).toEqual([])
    }
    // A third member whose own hostname is the suffixed name: the suffix grows, never a clash.
    const squatter = member('node-012345', 'east', { v4: '10.1.0.10', joinedOrder: 1, author: '999999999999' })
    const t = table([late, early, squatter])
    expect(values(t, 'node-012345.east.weft.internal', 'A')).toEqual(['10.1.0.10'])
    expect(values(t, 'node-01234567.east.weft.internal', 'A')).toEqual(['10.1.0.9'])
    expect(distinctLabel('x'.repeat(63), 'abcdef12', new Set(['x'.repeat(63)]))).toBe(`${'x'.repeat(56)}-abcdef`)
  })

  it('an FQDN hostname contributes its first label; a trailing dot and case are normalized', () => {
    expect(hostLabel('Web-1.Corp.Example.')).toBe('web-1')
    const t = table([member('Web-1.corp.example', 'east', { v4: '10.1.0.7' })])
    expect(values(t, 'web-1.east.weft.internal', 'A')).toEqual(['10.1.0.7'])
  })

  it('invalid hostnames are reported and not served', () => {
    const long = 'h'.repeat(64)
    const t = table([
      member('bad_host', 'east', { v4: '10.1.0.1' }),
      member('-lead', 'east', { v4: '10.1.0.2' }),
      member(long, 'east', { v4: '10.1.0.3' }),
      member('ok', 'east', { v4: '10.1.0.4' })
    ])
    expect([...t.records.keys()].filter((n) => n.endsWith(ZONE)).sort()).toEqual(['ok.east.weft.internal', 'ok.weft.internal'])
    expect(t.invalid.map((i) => i.name)).toEqual([`-lead.east.${ZONE}`, `bad_host.east.${ZONE}`, `${long}.east.${ZONE}`])
    expect(t.invalid.map((i) => i.reason).join(' ')).toMatch(/starts or ends with "-".*outside \[a-z0-9-\].*at most 63/)
  })

  it('members without an address get no records; invalid addresses are reported', () => {
    const t = table([member('quiet', 'east'), member('odd', 'east', { v4: '10.1.0.300', v6: 'fd00::zz' })])
    expect(t.records.has('quiet.east.weft.internal')).toBe(false)
    expect(t.records.has('odd.east.weft.internal')).toBe(false)
    expect(t.invalid.map((i) => i.reason).sort()).toEqual(['invalid IPv4 address "10.1.0.300"', 'invalid IPv6 address "fd00::zz"'])
  })

  it('an invalid zone, or one overlapping clusterset.local, is reported and not served', () => {
    for (const zone of ['bad_zone.internal', 'clusterset.local', 'x.clusterset.local', 'local']) {
      const t = table([member('a', 'east', { v4: '10.1.0.1' })], [], zone)
      expect(t.zones).toEqual([CLUSTERSET_ZONE])
      expect(t.invalid.some((i) => i.name === zone)).toBe(true)
      expect([...t.records.keys()]).toEqual(['dns-version.clusterset.local'])
      expect(lookupDns(t, `a.${zone}`, 'A').records).toEqual([])
    }
    expect(zoneProblem('Weft.Internal')).toBeDefined() // zones are normalized before this check
    expect(zoneProblem('weft.internal')).toBeUndefined()
    expect(table([], [], 'Weft.Internal.').zone).toBe('weft.internal')
  })
})

describe('dns: services (MCS)', () => {
  const http: ImportPort = { name: 'http', protocol: 'TCP', port: 80, clusters: ['east', 'west'] }
  const dnsPort: ImportPort = { name: 'dns', protocol: 'UDP', port: 53, clusters: ['east'] }
  const unnamed: ImportPort = { protocol: 'TCP', port: 8080, clusters: ['east'] }

  it('ClusterSetIP: the service address at the clusterset and zone names, per-cluster addresses, SRV at the bare name and per named port', () => {
    const members = [
      member('e1', 'east', { v4: '10.1.0.1', caps: [VPN_CAP, 'services'] }),
      member('w1', 'west', { v4: '10.1.0.11' }),
      member('n1', 'north', { v4: '10.1.0.21' })
    ]
    const i = imp('web', 'shop', ['east', 'west'], [http, dnsPort, unnamed])
    const t = table(members, [i])
    const svc = 'web.shop.svc.clusterset.local'
    // The name's own address, not the members of the exporting clusters (issue 11).
    expect(values(t, svc, 'A')).toEqual([i.address])
    expect(values(t, svc, 'AAAA')).toEqual([])
    expect(values(t, 'web.shop.svc.weft.internal', 'A')).toEqual([i.address])
    expect(values(t, 'web.shop.svc.east.weft.internal', 'A')).toEqual(['127.77.1.1'])
    expect(values(t, 'web.shop.svc.west.weft.internal', 'A')).toEqual(['127.77.1.2'])
    expect(t.records.has('web.shop.svc.north.weft.internal')).toBe(false)
    expect(values(t, `_http._tcp.${svc}`, 'SRV')).toEqual([{ priority: 0, weight: 100, port: 80, target: svc }])
    expect(values(t, `_dns._udp.${svc}`, 'SRV')).toEqual([{ priority: 0, weight: 100, port: 53, target: svc }])
    expect(values(t, svc, 'SRV')).toEqual([53, 80, 8080].map((port) => ({ priority: 0, weight: 100, port, target: svc })))
    expect([...t.records.keys()].filter((n) => n.startsWith('_')).sort()).toEqual([`_dns._udp.${svc}`, `_dns._udp.web.shop.svc.weft.internal`, `_http._tcp.${svc}`, `_http._tcp.web.shop.svc.weft.internal`])
    expect(values(t, 'dns-version.clusterset.local', 'TXT')).toEqual(['1.0.0'])
    expect(t.invalid).toEqual([])
  })

  it('a member of an exporting cluster that did not author the export adds no record (issue 11)', () => {
    const i = imp('web', 'shop', ['east'], [http])
    const base = table([member('e1', 'east', { v4: '10.1.0.1' })], [i])
    const more = table([member('e1', 'east', { v4: '10.1.0.1' }), member('intruder', 'east', { v4: '10.1.0.66' })], [i])
    for (const name of ['web.shop.svc.clusterset.local', 'web.shop.svc.east.weft.internal', 'web.shop.svc.weft.internal']) {
      expect(values(more, name, 'A')).toEqual(values(base, name, 'A'))
      expect(values(more, name, 'A')).not.toContain('10.1.0.66')
    }
  })

  it('headless imports: one A per exporting cluster, per-endpoint <host>.<cluster>.<svc> names, SRV to each endpoint', () => {
    const i = { ...imp('db', 'data', ['east', 'west'], [{ name: 'pg', protocol: 'TCP' as const, port: 5432, clusters: ['east', 'west'] }], 'Headless') }
    const e1 = member('e1', 'east', { v4: '10.1.0.1', author: 'exporter-east' })
    const t = table([e1, member('w9', 'west', { v4: '10.1.0.2', author: 'exporter-west' })], [i])
    expect(values(t, 'db.data.svc.clusterset.local', 'A')).toEqual(['127.77.1.1', '127.77.1.2'])
    expect(values(t, 'e1.east.db.data.svc.clusterset.local', 'A')).toEqual(['127.77.1.1'])
    expect(values(t, 'w9.west.db.data.svc.clusterset.local', 'A')).toEqual(['127.77.1.2'])
    expect(values(t, '_pg._tcp.db.data.svc.clusterset.local', 'SRV')).toEqual([
      { priority: 0, weight: 100, port: 5432, target: 'e1.east.db.data.svc.clusterset.local' },
      { priority: 0, weight: 100, port: 5432, target: 'w9.west.db.data.svc.clusterset.local' }
    ])
  })

  it('an import without a service address serves nothing (NXDOMAIN)', () => {
    const { address: _a, ...i } = imp('web', 'shop', ['east'], [http])
    const t = table([member('e1', 'east')], [{ ...i, exporters: [] }])
    expect([...t.records.keys()]).toEqual(['dns-version.clusterset.local'])
    expect(lookupDns(t, 'web.shop.svc.clusterset.local', 'A')).toEqual({ records: [], authoritative: true, nxdomain: true })
  })

  it('the TXT schema version is served with no imports at all', () => {
    const t = table([])
    expect(lookupDns(t, 'DNS-VERSION.clusterset.local.', 'TXT').records.map((r) => r.value)).toEqual(['1.0.0'])
  })

  it('253-character limit: a per-cluster service name over the limit is reported, the clusterset name is still served', () => {
    const zone = ['a', 'b', 'c', 'd'].map((c) => c.repeat(40)).join('.') // 163 characters
    const svc = 's'.repeat(63)
    const ns = 'n'.repeat(63)
    const t = table([member('e1', 'east', { v4: '10.1.0.1' })], [imp(svc, ns, ['east'], [http])], zone)
    const long = `${svc}.${ns}.svc.east.${zone}`
    expect(long.length).toBeGreaterThan(253)
    expect(t.records.has(long)).toBe(false)
    expect(t.invalid.map((x) => x.name)).toContain(long)
    expect(values(t, `${svc}.${ns}.svc.clusterset.local`, 'A')).toEqual([imp(svc, ns, ['east']).address])
    expect(t.records.has(`e1.east.${zone}`)).toBe(true)
  })
})

describe('dns: lookup', () => {
  const t = table([member('alpha', 'east', { v4: '10.1.0.5' })], [imp('web', 'shop', ['east'], [{ name: 'http', protocol: 'TCP', port: 80, clusters: ['east'] }])])

  it('answers existing names, case-insensitively and with a trailing dot', () => {
    const r = lookupDns(t, 'ALPHA.East.Weft.Internal.', 'A')
    expect(r.authoritative).toBe(true)
    expect(r.nxdomain).toBe(false)
    expect(r.records.map((x) => x.value)).toEqual(['10.1.0.5'])
  })

  it('NODATA when the name exists with other types only', () => {
    expect(lookupDns(t, 'alpha.east.weft.internal', 'TXT')).toEqual({ records: [], authoritative: true, nxdomain: false })
    expect(lookupDns(t, 'alpha.east.weft.internal', 'AAAA')).toEqual({ records: [], authoritative: true, nxdomain: false })
  })

  it('NODATA for empty non-terminals and zone apexes', () => {
    for (const n of ['east.weft.internal', 'weft.internal', 'svc.clusterset.local', 'shop.svc.clusterset.local', 'clusterset.local', '_tcp.web.shop.svc.clusterset.local', 'svc.east.weft.internal']) {
      expect(lookupDns(t, n, 'A'), n).toEqual({ records: [], authoritative: true, nxdomain: false })
    }
  })

  it('NXDOMAIN for names that do not exist under an authoritative zone', () => {
    for (const n of ['beta.east.weft.internal', 'alpha.west.weft.internal', 'api.shop.svc.clusterset.local', '_grpc._tcp.web.shop.svc.clusterset.local', 'x.alpha.east.weft.internal']) {
      expect(lookupDns(t, n, 'A'), n).toEqual({ records: [], authoritative: true, nxdomain: true })
    }
  })

  it('not authoritative outside the zone and clusterset.local', () => {
    for (const n of ['example.com', 'internal', 'weft.internal.example', 'cluster.local', 'local']) {
      expect(lookupDns(t, n, 'A'), n).toEqual({ records: [], authoritative: false, nxdomain: false })
    }
  })
})

describe('dns: name rules', () => {
  it('RFC 1123 labels and the 253-character limit', () => {
    expect(isValidLabel('a')).toBe(true)
    expect(isValidLabel('a-1')).toBe(true)
    expect(isValidLabel('x'.repeat(63))).toBe(true)
    expect(isValidLabel('x'.repeat(64))).toBe(false)
    expect(isValidLabel('-a')).toBe(false)
    expect(isValidLabel('a-')).toBe(false)
    expect(isValidLabel('A')).toBe(false)
    expect(isValidLabel('a_b')).toBe(false)
    expect(isValidLabel('')).toBe(false)
    const name253 = ['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(61)].join('.')
    expect(name253.length).toBe(253)
    expect(isValidName(name253)).toBe(true)
    expect(nameProblem(name253 + 'e')).toBe('name is 254 characters (at most 253)')
    expect(isValidName('a..b')).toBe(false)
    expect(isValidName('_http._tcp.web.shop.svc.clusterset.local')).toBe(false)
    expect(isValidName('_http._tcp.web.shop.svc.clusterset.local', { underscoreLabels: 2 })).toBe(true)
    expect(isValidName('_http.tcp.web', { underscoreLabels: 2 })).toBe(false)
    expect(normalizeName('A.B.')).toBe('a.b')
  })

  it('address syntax', () => {
    for (const a of ['10.1.0.1', '0.0.0.0', '255.255.255.255']) expect(isIpv4(a), a).toBe(true)
    for (const a of ['10.1.0', '256.1.1.1', '01.1.1.1', '1.1.1.1.1', 'a.b.c.d']) expect(isIpv4(a), a).toBe(false)
    for (const a of ['fd00::1', '::', '::1', '2001:db8:0:0:0:0:0:1', '::ffff:10.1.0.1', 'FD00::A']) expect(isIpv6(a), a).toBe(true)
    for (const a of ['fd00:::1', '1:2:3:4:5:6:7:8:9', 'fd00::1::2', 'g::1', '10.1.0.1', 'fe80::1%eth0', '1:2:3:4:5:6:7::8']) expect(isIpv6(a), a).toBe(false)
  })
})

// ---- properties ----

/** Independent check of a served name: RFC 1123 labels (SRV: two `_label`s first), <= 253 chars. */
function servable (name: string, type: DnsRecord['type']): boolean {
  if (name.length > 253 || name !== name.toLowerCase() || name.endsWith('.')) return false
  const labels = name.split('.')
  const ok = (l: string): boolean => l.length >= 1 && l.length <= 63 && /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(l)
  return labels.every((l, i) => type === 'SRV' && name.startsWith('_') && i < 2 ? l.startsWith('_') && ok(l.slice(1)) : ok(l))
}

const arbLabelish = fc.oneof(
  { arbitrary: fc.constantFrom('alpha', 'beta', 'Gamma', 'db', 'node-1', 'web'), weight: 6 },
  { arbitrary: fc.constantFrom('bad_name', '-x', 'y-', 'x'.repeat(64), 'a.b.c', 'UPPER.case.', 'ü', ''), weight: 1 },
  { arbitrary: fc.stringMatching(/^[a-zA-Z0-9_.-]{1,70}$/), weight: 1 }
)

const arbMember = fc.record({
  hostname: arbLabelish.filter((h) => h.length > 0),
  cluster: fc.constantFrom('east', 'west', 'north'),
  v4: fc.option(fc.oneof(fc.ipV4(), fc.constant('999.1.1.1')), { nil: undefined }),
  v6: fc.option(fc.oneof(fc.ipV6(), fc.constant('zz::1')), { nil: undefined }),
  caps: fc.subarray(['services', 'relay', VPN_CAP])
})

const arbInput = fc.record({
  zone: fc.oneof({ arbitrary: fc.constantFrom('weft.internal', 'Corp.Example.', 'z'), weight: 5 }, { arbitrary: fc.constantFrom('clusterset.local', 'bad_zone', ['q'.repeat(60), 'r'.repeat(60), 's'.repeat(60)].join('.')), weight: 1 }),
  members: fc.array(arbMember, { maxLength: 10 }),
  imports: fc.uniqueArray(fc.record({
    name: fc.constantFrom('web', 'api', 'x'.repeat(63)),
    namespace: fc.constantFrom('shop', 'ops', 'n'.repeat(63)),
    clusters: fc.subarray(['east', 'west', 'north'], { minLength: 1 }),
    ports: fc.uniqueArray(fc.record({
      name: fc.option(fc.constantFrom('http', 'grpc', 'p'.repeat(63)), { nil: undefined }),
      protocol: fc.constantFrom('TCP' as const, 'UDP' as const, 'SCTP' as const),
      port: fc.integer({ min: 1, max: 65535 })
    }), { maxLength: 3, selector: (p) => p.name ?? `#${p.port}` }),
    headless: fc.boolean()
  }), { maxLength: 4, selector: (i) => `${i.namespace}/${i.name}` })
}).map(({ zone, members, imports }): DnsInput => ({
  zone,
  members: members.map((m, i) => ({ author: `a${i}`, joinedOrder: (i * 7) % 11, ...m })),
  imports: imports.map((i) => imp(i.name, i.namespace, [...i.clusters].sort(), i.ports.map((p) => ({ ...p, clusters: i.clusters })), i.headless ? 'Headless' : 'ClusterSetIP'))
}))

describe('dns: properties', () => {
  it('every served name is valid, keyed by its own name, and found by lookup', () => {
    fc.assert(fc.property(arbInput, (input) => {
      const t = deriveDns(input)
      for (const [name, list] of t.records) {
        expect(list.length).toBeGreaterThan(0)
        for (const r of list) {
          expect(r.name).toBe(name)
          expect(servable(name, r.type), `${r.type} ${name}`).toBe(true)
          expect(r.ttl).toBe(5)
          if (r.type === 'A') expect(isIpv4(r.value as string)).toBe(true)
          if (r.type === 'AAAA') expect(isIpv6(r.value as string)).toBe(true)
        }
        for (const type of new Set(list.map((r) => r.type))) {
          const res = lookupDns(t, name.toUpperCase() + '.', type)
          expect(res.authoritative).toBe(true)
          expect(res.nxdomain).toBe(false)
          expect(res.records).toEqual(list.filter((r) => r.type === type))
        }
      }
    }), { numRuns: 300 })
  })

  it('every valid member has one name, unique in the network; the earliest joined of a hostname keeps it', () => {
    fc.assert(fc.property(arbInput, (input) => {
      const t = deriveDns(input)
      if (zoneProblem(t.zone) !== undefined) return
      const valid = input.members.filter((m) => isValidLabel(hostLabel(m.hostname)) && isValidLabel(m.cluster))
      const labels = valid.map((m) => t.hostNames.get(m.author))
      expect(new Set(labels).size).toBe(valid.length)
      for (const m of valid) {
        const label = t.hostNames.get(m.author) as string
        const a = values(t, `${label}.${m.cluster}.${t.zone}`, 'A')
        // Without a VPN device the address reaches nothing: the name is kept, with no A.
        const vpn = m.caps.includes(VPN_CAP)
        expect(a).toEqual(vpn && m.v4 !== undefined && isIpv4(m.v4) ? [m.v4] : [])
        expect(values(t, `${label}.${t.zone}`, 'A')).toEqual(a)
        const addressed = (m.v4 !== undefined && isIpv4(m.v4)) || (m.v6 !== undefined && isIpv6(m.v6))
        if (!vpn && addressed) {
          for (const owner of [`${label}.${m.cluster}.${t.zone}`, `${label}.${t.zone}`]) {
            expect(t.records.get(owner)).toBeUndefined()
            expect(lookupDns(t, owner, 'A')).toEqual({ records: [], authoritative: true, nxdomain: false })
          }
        }
        const first = valid.filter((x) => hostLabel(x.hostname) === hostLabel(m.hostname)).sort((p, q) => p.joinedOrder - q.joinedOrder || (p.author < q.author ? -1 : 1))[0] as DnsMember
        if (first === m && !valid.some((x) => x !== m && t.hostNames.get(x.author) === hostLabel(m.hostname))) expect(label).toBe(hostLabel(m.hostname))
      }
    }), { numRuns: 300 })
  })

  it('the table does not depend on the order of members or imports', () => {
    fc.assert(fc.property(arbInput, fc.integer(), (input, seed) => {
      const shuffle = <T>(xs: readonly T[]): T[] => [...xs].map((x, i) => ({ x, k: (i * 2654435761 + seed) % 1000 })).sort((p, q) => p.k - q.k).map((p) => p.x)
      const a = deriveDns(input)
      const b = deriveDns({ ...input, members: shuffle(input.members), imports: shuffle(input.imports) })
      expect([...b.records]).toEqual([...a.records])
      expect(b.invalid).toEqual(a.invalid)
      expect([...b.names].sort()).toEqual([...a.names].sort())
    }), { numRuns: 200 })
  })
})
