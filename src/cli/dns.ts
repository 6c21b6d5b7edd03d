import { randomInt } from 'node:crypto'
import { Option, type Command } from 'commander'
import { createRequire } from 'node:module'
import { DEFAULT_SETTINGS } from '../projections/settings-defaults.js'
import { corednsSnippet as snippetOf, type Snippet, type SnippetInput } from '../node/coredns-snippet.js'
import { isWeftError } from '../log/errors.js'
import { dnsExchange, formatHostPort, parseHostPort, type HostPort } from '../adapters/dns-client.js'
import { encodeQuery, HEADER_BYTES, RCODE_NAMES } from '../adapters/dns-wire.js'
import { CliError, EXIT_CHECK_FAILED, EXIT_OK, run } from './errors.js'
import { intParser, jsonOption } from './options.js'
import { out, printJson, table } from './output.js'

/**
 * `weft dns coredns-snippet` prints the CoreDNS server blocks that send Weft's zones to Weft's
 * DNS servers (for k3s: the `coredns-custom` ConfigMap); `weft dns query` asks a DNS server one
 * question, for debugging. Neither needs a running node. See docs/dns.md.
 */

/** The snippet, with bad flags reported as the CLI's input errors (exit 2). */
export function corednsSnippet (input: SnippetInput): Snippet {
  try {
    return snippetOf(input)
  } catch (err) {
    if (isWeftError(err, 'ERR_BAD_INPUT')) throw new CliError(err.message)
    throw err
  }
}

/** dns2's packet codec, loaded by `weft dns query` only (every command, the daemon too, imports this file). */
function packet (): typeof import('dns2').Packet {
  return (createRequire(import.meta.url)('dns2') as typeof import('dns2')).Packet
}

const QUERY_TYPES = ['A', 'AAAA', 'SRV', 'TXT', 'SOA', 'NS', 'CNAME', 'PTR', 'MX', 'ANY'] as const

interface Resource { name: string, type: number, ttl: number, address?: string, priority?: number, weight?: number, port?: number, target?: string, data?: unknown, primary?: string, admin?: string, serial?: number, ns?: string, domain?: string, exchange?: string }

function typeName (t: number): string {
  const entry = Object.entries(packet().TYPE).find(([, v]) => v === t)
  return entry?.[0] ?? `TYPE${t}`
}

function valueOf (r: Resource): string {
  switch (typeName(r.type)) {
    case 'A': case 'AAAA': return r.address ?? ''
    case 'SRV': return `${r.priority ?? 0} ${r.weight ?? 0} ${r.port ?? 0} ${r.target ?? ''}`
    case 'TXT': return (Array.isArray(r.data) ? r.data : [r.data]).map((d) => JSON.stringify(String(d))).join(' ')
    case 'SOA': return `${r.primary ?? ''} ${r.admin ?? ''} ${r.serial ?? 0}`
    case 'NS': return r.ns ?? ''
    case 'CNAME': case 'PTR': return r.domain ?? ''
    case 'MX': return `${r.priority ?? 0} ${r.exchange ?? ''}`
    default: return Buffer.isBuffer(r.data) ? r.data.toString('hex') : ''
  }
}

interface QueryOpts { type: string, server: string, tcp: boolean, timeout: number, json: boolean }

async function dnsQuery (name: string, opts: QueryOpts): Promise<number> {
  let server: HostPort
  try {
    server = parseHostPort(opts.server)
  } catch (err) {
    throw new CliError(`--server ${(err as Error).message}`)
  }
  const Packet = packet()
  const qtype = Packet.TYPE[opts.type as keyof typeof Packet.TYPE]
  let query: Buffer
  try {
    query = encodeQuery(randomInt(0x10000), name, qtype, { edns: 1232 })
  } catch (err) {
    throw new CliError(`"${name}": ${(err as Error).message}`)
  }
  let proto: 'udp' | 'tcp' = opts.tcp ? 'tcp' : 'udp'
  let resp = await dnsExchange(server, query, { proto, timeoutMs: opts.timeout })
  if (resp !== undefined && proto === 'udp' && ((resp[2] as number) & 0x02) !== 0) {
    proto = 'tcp' // truncated: ask again over TCP, as resolvers do
    resp = await dnsExchange(server, query, { proto, timeoutMs: opts.timeout })
  }
  if (resp === undefined) throw new CliError(`no answer from ${formatHostPort(server)} over ${proto} within ${opts.timeout} ms`)
  if (resp.length < HEADER_BYTES) throw new CliError(`${formatHostPort(server)} sent a ${resp.length}-byte reply`)
  const p = Packet.parse(resp) as unknown as { header: { rcode: number, aa: number, tc: number, rd: number, ra: number }, answers: Resource[], authorities: Resource[] }
  const rcode = RCODE_NAMES[p.header.rcode] ?? String(p.header.rcode)
  const flags = { aa: p.header.aa === 1, tc: p.header.tc === 1, rd: p.header.rd === 1, ra: p.header.ra === 1 }
  const rows = (list: Resource[]): Array<{ name: string, type: string, ttl: number, value: string }> =>
    list.filter((r) => r.type !== 41).map((r) => ({ name: r.name, type: typeName(r.type), ttl: r.ttl, value: valueOf(r) }))
  const answers = rows(p.answers)
  const authority = rows(p.authorities)
  if (opts.json) {
    printJson({ server: formatHostPort(server), proto, name, type: opts.type, rcode, flags, answers, authority })
  } else {
    out(`status ${rcode}, flags ${Object.entries(flags).filter(([, v]) => v).map(([k]) => k).join(' ') || '-'}, from ${formatHostPort(server)} over ${proto}`)
    if (answers.length > 0) out(table(['NAME', 'TTL', 'TYPE', 'VALUE'], answers.map((a) => [a.name, String(a.ttl), a.type, a.value])))
    if (authority.length > 0) out(table(['AUTHORITY', 'TTL', 'TYPE', 'VALUE'], authority.map((a) => [a.name, String(a.ttl), a.type, a.value])))
  }
  // An answer arrived; NXDOMAIN and the like are answers, not failures of the command, except
  // SERVFAIL/REFUSED/FORMERR/NOTIMP, which say the server could not answer.
  return p.header.rcode === 0 || p.header.rcode === 3 ? EXIT_OK : EXIT_CHECK_FAILED
}

function collect (value: string, previous: string[]): string[] {
  return [...previous, ...value.split(',').map((s) => s.trim()).filter((s) => s !== '')]
}

export function registerDns (program: Command): void {
  const dns = program.command('dns').description('Weft DNS: wire CoreDNS to it, ask it questions')

  jsonOption(dns.command('coredns-snippet')
    .description('print CoreDNS server blocks forwarding the network zone and clusterset.local to Weft DNS servers')
    .option('--zone <zone>', 'the network\'s zone (its "zone" setting)', DEFAULT_SETTINGS.zone)
    .option('--server <ip[:port]>', 'a Weft DNS server as CoreDNS pods reach it, e.g. a node\'s overlay address 10.1.0.1 (port 53 when absent); repeatable, or comma-separated; required', collect, [])
    .option('--configmap', 'print the k3s coredns-custom ConfigMap (for kubectl apply -f -) instead of bare server blocks', false),
  'print {zones, servers, corefile, configmap}')
    .action(async (opts: { zone: string, server: string[], configmap: boolean, json: boolean }) => {
      await run(() => {
        const s = corednsSnippet({ zone: opts.zone, servers: opts.server })
        if (opts.json) printJson(s)
        else out((opts.configmap ? s.configmap : s.corefile).trimEnd())
        return EXIT_OK
      })
    })

  jsonOption(dns.command('query')
    .description('ask a DNS server (by default the local Weft DNS on 127.0.0.1:53) one question; exit 1 on SERVFAIL, REFUSED and other errors')
    .argument('<name>', 'the name to look up')
    .addOption(new Option('--type <type>', 'record type').choices(QUERY_TYPES).default('A'))
    .option('--server <ip[:port]>', 'the server to ask', '127.0.0.1:53')
    .option('--tcp', 'ask over TCP (UDP falls back to TCP by itself when the answer is truncated)', false)
    .option('--timeout <ms>', 'give up after this long', intParser(1), 3000))
    .action(async (name: string, opts: QueryOpts) => {
      await run(async () => await dnsQuery(name, opts))
    })
}
