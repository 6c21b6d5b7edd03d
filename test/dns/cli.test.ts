import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { corednsSnippet } from '../../src/cli/dns.js'
import { CliError } from '../../src/cli/errors.js'
import { startDnsServer, tableDnsSource, type DnsServer } from '../../src/adapters/dns-server.js'
import { deriveDns, VPN_CAP } from '../../src/projections/dns.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import { udpPort } from './support.js'

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url))

/** The CLI from source (tsx), so these tests do not depend on a build. */
async function weft (args: readonly string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    child.on('error', reject)
    child.on('close', (code) => { resolve({ code, stdout, stderr }) })
  })
}

describe('weft dns coredns-snippet', () => {
  it('forwards the network zone and clusterset.local to every --server, port 53 by default', () => {
    const s = corednsSnippet({ zone: 'Corp.Example', servers: ['10.1.0.1', '10.1.0.2:5353', '[fd00::1]:53', '10.1.0.1:53'] })
    expect(s.zones).toEqual(['corp.example', 'clusterset.local'])
    expect(s.servers).toEqual(['10.1.0.1:53', '10.1.0.2:5353', '[fd00::1]:53'])
    expect(s.corefile).toContain([
      'corp.example:53 {',
      '    errors',
      '    cache 5',
      '    forward . 10.1.0.1:53 10.1.0.2:5353 [fd00::1]:53',
      '}',
      'clusterset.local:53 {'
    ].join('\n'))
  })

  it('the ConfigMap is the coredns-custom one k3s imports, with the blocks under a *.server key', () => {
    const s = corednsSnippet({ zone: 'weft.internal', servers: ['10.1.0.1'] })
    const cm = parseYaml(s.configmap) as { kind: string, metadata: { name: string, namespace: string }, data: Record<string, string> }
    expect(cm.kind).toBe('ConfigMap')
    expect(cm.metadata).toEqual({ name: 'coredns-custom', namespace: 'kube-system' })
    expect(Object.keys(cm.data)).toEqual(['weft.server'])
    expect(cm.data['weft.server']).toBe(s.corefile)
  })

  it('refuses a missing --server, a host name, and a zone that overlaps clusterset.local', () => {
    expect(() => corednsSnippet({ zone: 'weft.internal', servers: [] })).toThrow(/127\.0\.0\.1 in a CoreDNS pod is CoreDNS itself/)
    expect(() => corednsSnippet({ zone: 'weft.internal', servers: ['dns.local'] })).toThrow(CliError)
    expect(() => corednsSnippet({ zone: 'svc.clusterset.local', servers: ['10.1.0.1'] })).toThrow(/overlaps/)
    expect(() => corednsSnippet({ zone: 'bad_zone', servers: ['10.1.0.1'] })).toThrow(/invalid zone/)
  })

  it('runs as a command: blocks, --configmap, --json, exit 2 without --server', async () => {
    const plain = await weft(['dns', 'coredns-snippet', '--server', '10.1.0.1'])
    expect(plain.code).toBe(0)
    expect(plain.stdout).toContain('weft.internal:53 {')
    const cm = await weft(['dns', 'coredns-snippet', '--server', '10.1.0.1,10.1.0.2', '--configmap'])
    expect(cm.stdout).toContain('name: coredns-custom')
    expect(cm.stdout).toContain('forward . 10.1.0.1:53 10.1.0.2:53')
    const json = await weft(['dns', 'coredns-snippet', '--server', '10.1.0.1', '--zone', 'corp.example', '--json'])
    expect(JSON.parse(json.stdout)).toMatchObject({ zones: ['corp.example', 'clusterset.local'], servers: ['10.1.0.1:53'] })
    const none = await weft(['dns', 'coredns-snippet'])
    expect(none.code).toBe(2)
    expect(none.stderr).toMatch(/^weft: give --server/)
  })
})

describe('weft dns query', () => {
  let server: DnsServer
  beforeAll(async () => {
    const table = deriveDns({ zone: 'weft.internal', members: [{ author: 'a', hostname: 'n1', cluster: 'c', joinedOrder: 0, v4: '10.1.0.1', caps: [VPN_CAP] }], imports: [] })
    server = await startDnsServer({ listen: [{ host: '127.0.0.1', port: 0 }], answer: tableDnsSource(() => table), log: silentLogger })
  })
  afterAll(async () => { await server.close() })

  it('prints the answer, the flags and the rcode; --json; exit 1 on REFUSED, 2 without an answer', async () => {
    const at = `127.0.0.1:${udpPort(server)}`
    const a = await weft(['dns', 'query', 'n1.c.weft.internal', '--server', at])
    expect(a.code).toBe(0)
    expect(a.stdout).toMatch(/status NOERROR, flags aa rd/)
    expect(a.stdout).toMatch(/n1\.c\.weft\.internal\s+5\s+A\s+10\.1\.0\.1/)
    const j = await weft(['dns', 'query', 'nobody.weft.internal', '--server', at, '--tcp', '--json'])
    expect(j.code).toBe(0)
    expect(JSON.parse(j.stdout)).toMatchObject({ proto: 'tcp', rcode: 'NXDOMAIN', flags: { aa: true }, answers: [], authority: [{ type: 'SOA' }] })
    const refused = await weft(['dns', 'query', 'example.com', '--server', at])
    expect(refused.code).toBe(1)
    expect(refused.stdout).toContain('status REFUSED')
    const silent = await weft(['dns', 'query', 'example.com', '--server', '127.0.0.1:9', '--timeout', '300'])
    expect(silent.code).toBe(2)
    expect(silent.stderr).toMatch(/no answer from 127\.0\.0\.1:9/)
  })
})
