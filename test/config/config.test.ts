import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { isWeftError } from '../../src/log/errors.js'
import { formatToken, newToken } from '../../src/log/token.js'
import { UP_CONFIG_KEYS, parseApiAddress, parseDuration, resolveUpConfig, type UpConfig, type UpFlags } from '../../src/node/config.js'
import { WeftBlock } from '../../src/node/config-schema.js'
import { defaultDataDir } from '../../src/node/data-dir.js'

const T1 = formatToken(newToken())
const T2 = formatToken(newToken())
const T3 = formatToken(newToken())
const T4 = formatToken(newToken())
const PEER_ID = '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA'
/** What an edgevpn/Kairos token looks like: base64 of a YAML document. */
const EDGEVPN_TOKEN = 'b3RwOgogIGRodDoKICAgIGludGVydmFsOiA5MDAwCiAgICBrZXk6IE9iSFJzZVl0RHhac3pCVEpZWklFNE14aTB6MTBvQzlocGtlWEc4TUpRNFcK'

const host = { hostname: () => 'test-host' }
let dir: string

beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'weft-config-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

async function yamlFile (text: string, name = 'weft.yaml'): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, text)
  return path
}

function up (flags: UpFlags, env: Record<string, string | undefined> = {}): Promise<UpConfig> {
  return resolveUpConfig(flags, env, host)
}

/** Rejects with ERR_BAD_CONFIG whose message contains every fragment; returns the message. */
async function configError (p: Promise<unknown>, ...fragments: string[]): Promise<string> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err, 'expected the config to be rejected').toBeDefined()
  if (!isWeftError(err, 'ERR_BAD_CONFIG')) throw err
  for (const f of fragments) expect(err.message).toContain(f)
  return err.message
}

describe('defaults', () => {
  it('only a token: every other setting has its documented default', async () => {
    const c = await up({ token: T1 })
    expect(c.tokenText).toBe(T1)
    expect(c.token.secret).toHaveLength(32)
    expect(c).toMatchObject({
      dataDir: defaultDataDir({}),
      cluster: 'default',
      role: 'auto',
      hostname: 'test-host',
      listen: ['/ip4/0.0.0.0/tcp/4001'],
      peers: [],
      mdns: true,
      api: { kind: 'tcp', host: '127.0.0.1', port: 8080 },
      syncIntervalMs: 10_000,
      joinWaitMs: 5_000,
      logLevel: 'info'
    })
    expect(c.configFile).toBeUndefined()
  })

  it('join-wait: a duration or 0, from the flag or the file, with a clear error otherwise', async () => {
    expect((await up({ token: T1, joinWait: '0' })).joinWaitMs).toBe(0)
    expect((await up({ token: T1, joinWait: '1500ms' })).joinWaitMs).toBe(1500)
    await expect(up({ token: T1, joinWait: 'soon' })).rejects.toThrow(/--join-wait: "soon" is not a duration/)
  })

  it('the data dir defaults to WEFT_DATA_DIR, and the hostname to os.hostname()', async () => {
    const c = await resolveUpConfig({ token: T1 }, { WEFT_DATA_DIR: join(dir, 'env-dir') })
    expect(c.dataDir).toBe(join(dir, 'env-dir'))
    const { hostname } = await import('node:os')
    expect(c.hostname).toBe(hostname())
  })

  it('no token anywhere: the error says how to make one and every way to pass it', async () => {
    await configError(up({}), 'weft token new', '--token', 'WEFT_TOKEN', '--token-file')
    // an empty WEFT_TOKEN counts as unset
    await configError(up({}, { WEFT_TOKEN: '' }), 'weft token new')
  })

  it('every key of UP_CONFIG_KEYS is a key of the weft: block and the other way round', () => {
    expect(UP_CONFIG_KEYS.map((k) => k.key).sort()).toEqual(Object.keys(WeftBlock.shape).sort())
    for (const k of UP_CONFIG_KEYS) expect(k.description.length).toBeGreaterThan(10)
  })
})

describe('precedence: flag > env > weft: > kairos: > default', () => {
  const kairos = `kairos:\n  network_token: ${T1}\n  network_id: kairos-net\n  role: worker\n`
  const weft = `weft:\n  token: ${T2}\n  cluster: weft-net\n  role: master\n  data-dir: /srv/weft-file\n  log-level: debug\n`

  it('kairos: alone supplies token, cluster (network_id) and role', async () => {
    const c = await up({ config: await yamlFile(kairos) })
    expect(c.tokenText).toBe(T1)
    expect(c.cluster).toBe('kairos-net')
    expect(c.role).toBe('worker')
    expect(c.dataDir).toBe(defaultDataDir({}))
  })

  it('weft: overrides kairos:', async () => {
    const file = await yamlFile(kairos + weft)
    const c = await up({ config: file })
    expect(c).toMatchObject({ tokenText: T2, cluster: 'weft-net', role: 'master', dataDir: '/srv/weft-file', logLevel: 'debug', configFile: file })
  })

  it('WEFT_TOKEN and WEFT_DATA_DIR override the file', async () => {
    const c = await up({ config: await yamlFile(kairos + weft) }, { WEFT_TOKEN: T3, WEFT_DATA_DIR: '/srv/weft-env' })
    expect(c).toMatchObject({ tokenText: T3, dataDir: '/srv/weft-env', role: 'master', cluster: 'weft-net' })
  })

  it('flags override env and the file', async () => {
    const c = await up({
      config: await yamlFile(kairos + weft),
      token: T4,
      dataDir: '/srv/weft-flag',
      cluster: 'flag-net',
      role: 'client',
      logLevel: 'warn'
    }, { WEFT_TOKEN: T3, WEFT_DATA_DIR: '/srv/weft-env' })
    expect(c).toMatchObject({ tokenText: T4, dataDir: '/srv/weft-flag', cluster: 'flag-net', role: 'client', logLevel: 'warn' })
  })

  it('--token-file is a flag too: it beats WEFT_TOKEN', async () => {
    const tf = join(dir, 'token')
    await writeFile(tf, T4)
    const c = await up({ tokenFile: tf }, { WEFT_TOKEN: T3 })
    expect(c.tokenText).toBe(T4)
  })

  it('--listen and --peer replace the file lists instead of merging with them', async () => {
    const file = await yamlFile(`weft:\n  token: ${T1}\n  listen: [/ip4/10.0.0.1/tcp/4001, /ip4/10.0.0.2/tcp/4001]\n  peers: /ip4/10.0.0.9/tcp/4001/p2p/${PEER_ID}\n`)
    const fromFile = await up({ config: file })
    expect(fromFile.listen).toEqual(['/ip4/10.0.0.1/tcp/4001', '/ip4/10.0.0.2/tcp/4001'])
    expect(fromFile.peers).toEqual([`/ip4/10.0.0.9/tcp/4001/p2p/${PEER_ID}`])
    const fromFlags = await up({ config: file, listen: ['/ip6/::/tcp/5001'], peer: [`/dns4/boot.example.com/tcp/4001/p2p/${PEER_ID}`] })
    expect(fromFlags.listen).toEqual(['/ip6/::/tcp/5001'])
    expect(fromFlags.peers).toEqual([`/dns4/boot.example.com/tcp/4001/p2p/${PEER_ID}`])
    // an empty flag list (what commander gives when the flag is absent) does not replace the file
    expect((await up({ config: file, listen: [], peer: [] })).listen).toHaveLength(2)
  })

  it('mdns: false in the file holds unless the flag says otherwise; --no-mdns turns it off', async () => {
    const off = await yamlFile(`weft:\n  token: ${T1}\n  mdns: false\n`, 'off.yaml')
    expect((await up({ config: off })).mdns).toBe(false)
    expect((await up({ config: off, mdns: undefined })).mdns).toBe(false)
    expect((await up({ token: T1, mdns: false })).mdns).toBe(false)
    expect((await up({ token: T1 })).mdns).toBe(true)
  })

  it('hostname: flag > weft.hostname > the system hostname', async () => {
    const file = await yamlFile(`weft:\n  token: ${T1}\n  hostname: from-file\n`)
    expect((await up({ config: file })).hostname).toBe('from-file')
    expect((await up({ config: file, hostname: 'from-flag' })).hostname).toBe('from-flag')
  })

  it('kairos: values are checked only when used: an edgevpn token and role none are fine under --token and weft.role', async () => {
    const file = await yamlFile(`kairos:\n  network_token: ${EDGEVPN_TOKEN}\n  role: none\nweft:\n  role: worker\n`)
    const c = await up({ config: file, token: T1 })
    expect(c.tokenText).toBe(T1)
    expect(c.role).toBe('worker')
  })
})

describe('a Kairos cloud-config', () => {
  const cloudConfig = (token: string): string => `#cloud-config

hostname: kairoslab-{{ trunc 4 .MachineID }}
users:
- name: kairos
  passwd: kairos
  ssh_authorized_keys:
  - github:someone

install:
  device: /dev/sda
  auto: true
  reboot: true

stages:
  initramfs:
    - name: "set the keymap"
      commands:
        - loadkeys us

k3s:
  enabled: true

kairos:
  network_token: "${token}"
  network_id: edge-site-1
  role: master
  dns: true
  hubs: []
  disable_dht: true
  auto:
    enable: true
    ha:
      enable: true
      master_nodes: 2

vpn:
  create: false
  use: false

weft:
  listen:
    - /ip4/0.0.0.0/tcp/4001
    - /ip6/::/tcp/4001
  peers:
    - /ip4/192.0.2.10/tcp/4001/p2p/${PEER_ID}
  api: /run/weft/api.sock
  sync-interval: 5s
`

  it('is read: Kairos keys Weft does not use and other top-level keys are ignored', async () => {
    const c = await up({ config: await yamlFile(cloudConfig(T1)) })
    expect(c).toMatchObject({
      tokenText: T1,
      cluster: 'edge-site-1',
      role: 'master',
      listen: ['/ip4/0.0.0.0/tcp/4001', '/ip6/::/tcp/4001'],
      peers: [`/ip4/192.0.2.10/tcp/4001/p2p/${PEER_ID}`],
      api: { kind: 'unix', path: '/run/weft/api.sock' },
      syncIntervalMs: 5000,
      // the cloud-config's top-level hostname is for Kairos to set, not for Weft to read
      hostname: 'test-host'
    })
  })

  it('an edgevpn token is refused with an explanation, without echoing the token', async () => {
    const file = await yamlFile(cloudConfig(EDGEVPN_TOKEN))
    const msg = await configError(up({ config: file }), file, 'kairos.network_token', 'not a Weft token', 'weft token new')
    expect(msg).toMatch(/:25: kairos\.network_token/) // the line of network_token
    expect(msg).not.toContain(EDGEVPN_TOKEN.slice(0, 12))
  })

  it('network_token: "" (as in the Kairos examples) counts as no token', async () => {
    await configError(up({ config: await yamlFile('kairos:\n  network_token: ""\n') }), 'no network token', 'weft token new')
  })

  it('a Kairos role without a Weft equivalent is refused naming kairos.role and the allowed values', async () => {
    const file = await yamlFile(`kairos:\n  network_token: ${T1}\n  role: none\n`)
    await configError(up({ config: file }), `${file}:3: kairos.role`, '"none"', 'master, worker, auto')
  })

  it('a network_id that is not a DNS label is refused, naming network_id', async () => {
    const file = await yamlFile(`kairos:\n  network_token: ${T1}\n  network_id: Edge_Site\n`)
    await configError(up({ config: file }), 'kairos.network_id', '"Edge_Site"', 'DNS label', 'weft.cluster')
  })

  it('a file with neither weft: nor kairos: is refused', async () => {
    const file = await yamlFile('#cloud-config\nusers:\n- name: kairos\n')
    await configError(up({ config: file }), `no weft: or kairos: block in ${file}`)
    await configError(up({ config: await yamlFile('', 'empty.yaml') }), 'no weft: or kairos: block')
    await configError(up({ config: await yamlFile(`p2p:\n  network_token: ${T1}\n`, 'p2p.yaml') }), 'no weft: or kairos: block', 'p2p:')
  })
})

describe('the weft: block', () => {
  it('an unknown key is refused naming it, its line, a suggestion and the valid keys', async () => {
    const file = await yamlFile(`weft:\n  token: ${T1}\n  dataDir: /srv/weft\n`)
    await configError(up({ config: file }), `${file}:3`, '"dataDir"', 'did you mean "data-dir"', 'valid keys are token, token-file, data-dir')
    const other = await yamlFile(`weft:\n  token: ${T1}\n  colour: blue\n`, 'other.yaml')
    const msg = await configError(up({ config: other }), '"colour"', 'valid keys are')
    expect(msg).not.toContain('did you mean')
  })

  it('a value of the wrong type names the key and what it must be', async () => {
    const file = await yamlFile(`weft:\n  token: ${T1}\n  mdns: "no"\n`)
    await configError(up({ config: file }), `${file}:3: weft.mdns`, 'true or false', '"no"')
    const list = await yamlFile(`weft:\n  token: ${T1}\n  listen: [/ip4/0.0.0.0/tcp/1, 5]\n`, 'list.yaml')
    await configError(up({ config: list }), 'weft.listen[1]', 'the number 5')
  })

  it('weft: must be a mapping', async () => {
    await configError(up({ config: await yamlFile('weft: yes\n') }), 'weft: must be a mapping')
  })

  it('a value in weft: is checked even when a flag overrides it', async () => {
    const file = await yamlFile(`weft:\n  token: ${T1}\n  role: boss\n`)
    await configError(up({ config: file, role: 'worker' }), 'weft.role', '"boss"')
  })

  it('relative paths in the file are relative to the file; in flags, to the working directory', async () => {
    await writeFile(join(dir, 'token.txt'), `${T2}\n`)
    const file = await yamlFile('weft:\n  token-file: token.txt\n  data-dir: state\n  api: ./api.sock\n')
    const c = await up({ config: file })
    expect(c.tokenText).toBe(T2)
    expect(c.dataDir).toBe(join(dir, 'state'))
    expect(c.api).toEqual({ kind: 'unix', path: join(dir, 'api.sock') })
    const f = await up({ config: file, dataDir: 'rel', api: './x.sock' })
    expect(f.dataDir).toBe(resolve('rel'))
    expect(f.api).toEqual({ kind: 'unix', path: resolve('x.sock') })
  })

  it('sync-interval as a number means seconds; api: false means off', async () => {
    const c = await up({ config: await yamlFile(`weft:\n  token: ${T1}\n  sync-interval: 30\n  api: false\n`) })
    expect(c.syncIntervalMs).toBe(30_000)
    expect(c.api).toEqual({ kind: 'off' })
  })

  it('a YAML syntax error gives the file and the line number', async () => {
    const file = await yamlFile(`weft:\n  token: ${T1}\n  listen: [/ip4/0.0.0.0/tcp/1,\n`)
    await configError(up({ config: file }), file, 'invalid YAML', 'line 4')
    const dup = await yamlFile(`weft:\n  token: ${T1}\nweft:\n  role: worker\n`, 'dup.yaml')
    await configError(up({ config: dup }), 'line 3')
  })

  it('a missing config file is refused naming --config and the path', async () => {
    await configError(up({ config: join(dir, 'nope.yaml') }), '--config', join(dir, 'nope.yaml'), 'ENOENT')
  })
})

describe('token sources', () => {
  it('--token-file is read and trimmed', async () => {
    const tf = join(dir, 'token')
    await writeFile(tf, `\n   ${T1}  \n\n`)
    const c = await up({ tokenFile: tf })
    expect(c.tokenText).toBe(T1)
  })

  it('an empty or missing token file is refused naming the source and the path', async () => {
    const tf = join(dir, 'token')
    await writeFile(tf, ' \n')
    await configError(up({ tokenFile: tf }), '--token-file', tf, 'empty')
    await configError(up({ tokenFile: join(dir, 'missing') }), '--token-file', join(dir, 'missing'), 'ENOENT')
  })

  it('--token and --token-file together are refused; so are token and token-file in weft:', async () => {
    await configError(up({ token: T1, tokenFile: '/x' }), '--token and --token-file')
    const file = await yamlFile(`weft:\n  token: ${T1}\n  token-file: /x\n`)
    await configError(up({ config: file }), file, 'both token and token-file')
  })

  it('a bad token is refused naming where it came from', async () => {
    const typo = T1.slice(0, -1) + (T1.endsWith('a') ? 'b' : 'a')
    await configError(up({ token: typo }), '--token:', 'checksum')
    await configError(up({}, { WEFT_TOKEN: 'weft1short' }), 'WEFT_TOKEN:')
    await configError(up({ token: 'hello' }), '--token:', 'weft token new')
    const file = await yamlFile(`weft:\n  token: ${typo}\n`)
    await configError(up({ config: file }), `${file}:2: weft.token`, 'checksum')
  })
})

describe('value checks name the flag or key', () => {
  it('listen: bad multiaddr, no tcp, or no ip', async () => {
    await configError(up({ token: T1, listen: ['/ip4/999.1.1.1/tcp/4001'] }), '--listen', 'not a multiaddr')
    await configError(up({ token: T1, listen: ['0.0.0.0:4001'] }), '--listen', 'not a multiaddr')
    await configError(up({ token: T1, listen: ['/ip4/0.0.0.0/udp/4001'] }), '--listen', '/tcp/')
    await configError(up({ token: T1, listen: ['/dns4/example.com/tcp/4001'] }), '--listen', '/ip4/')
    const file = await yamlFile(`weft:\n  token: ${T1}\n  listen:\n    - /ip4/0.0.0.0/tcp/4001\n    - /ip4/0.0.0.0/tcp/99999\n`)
    await configError(up({ config: file }), 'weft.listen[1]')
  })

  it('peers: must end with a valid /p2p/<peer id>', async () => {
    await configError(up({ token: T1, peer: ['/ip4/192.0.2.1/tcp/4001'] }), '--peer', '/p2p/<peer id>')
    await configError(up({ token: T1, peer: ['/ip4/192.0.2.1/tcp/4001/p2p/Qmbad'] }), '--peer', '"Qmbad" is not a valid peer id')
    const file = await yamlFile(`weft:\n  token: ${T1}\n  peers: [/ip4/192.0.2.1/tcp/4001]\n`)
    await configError(up({ config: file }), 'weft.peers[0]')
  })

  it('role, cluster, log level, hostname, api and sync interval', async () => {
    await configError(up({ token: T1, role: 'boss' }), '--role', '"boss"', 'auto, master, worker, client')
    await configError(up({ token: T1, cluster: 'My_Cluster' }), '--cluster', 'DNS label')
    await configError(up({ token: T1, logLevel: 'verbose' }), '--log-level', 'trace')
    await configError(up({ token: T1, hostname: 'a b' }), '--hostname')
    await configError(up({ token: T1, api: 'localhost' }), '--api', 'no port')
    await configError(up({ token: T1, syncInterval: '10 seconds' }), '--sync-interval', 'not a duration')
    await configError(up({ config: await yamlFile(`weft:\n  token: ${T1}\n  api: "[::1]:99999"\n`) }), 'weft.api', '0 to 65535')
    await configError(up({ config: await yamlFile(`weft:\n  token: ${T1}\n  sync-interval: 2h\n`, 's.yaml') }), 'weft.sync-interval', 'between 100ms and 1h')
  })
})

describe('parseDuration', () => {
  it.each([
    ['500ms', 500], ['10s', 10_000], ['1m', 60_000], ['1h', 3_600_000], ['1m30s', 90_000],
    ['10', 10_000], ['0.5', 500], ['1.5s', 1500], ['100ms', 100], [' 2s ', 2000]
  ])('%s -> %i ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms)
  })

  it.each(['', 'abc', '10 s', '10S', '1m30', 's', '-1s', '1d'])('refuses %j as not a duration', (text) => {
    expect(() => parseDuration(text)).toThrow(/not a duration/)
  })

  it.each(['99ms', '0', '0.05', '61m', '2h', '1h1ms'])('refuses %j as out of range', (text) => {
    expect(() => parseDuration(text)).toThrow(/between 100ms and 1h/)
  })
})

describe('parseApiAddress', () => {
  it.each([
    ['127.0.0.1:8080', { kind: 'tcp', host: '127.0.0.1', port: 8080 }],
    ['0.0.0.0:0', { kind: 'tcp', host: '0.0.0.0', port: 0 }],
    ['localhost:65535', { kind: 'tcp', host: 'localhost', port: 65535 }],
    ['[::1]:8080', { kind: 'tcp', host: '::1', port: 8080 }],
    ['[::]:80', { kind: 'tcp', host: '::', port: 80 }],
    ['/run/weft/api.sock', { kind: 'unix', path: '/run/weft/api.sock' }],
    ['./api.sock', { kind: 'unix', path: './api.sock' }],
    ['unix:///run/weft.sock', { kind: 'unix', path: '/run/weft.sock' }],
    ['off', { kind: 'off' }]
  ])('%s', (text, expected) => {
    expect(parseApiAddress(text)).toEqual(expected)
  })

  it.each([
    ['::1:8080', 'brackets'],
    ['127.0.0.1:70000', '0 to 65535'],
    ['127.0.0.1:-1', '0 to 65535'],
    ['127.0.0.1', 'no port'],
    [':8080', 'no host'],
    ['http://127.0.0.1:8080', 'URL'],
    ['[nope]:80', 'not an IPv6 address'],
    ['bad host:80', 'not an IP address or host name'],
    ['api.sock', 'no port']
  ])('refuses %j (%s)', (text, why) => {
    let err: unknown
    try { parseApiAddress(text) } catch (e) { err = e }
    expect(isWeftError(err, 'ERR_BAD_CONFIG')).toBe(true)
    expect((err as Error).message).toContain(why)
  })
})

describe('VPN settings of weft up', () => {
  it('defaults to a weft0 TUN device and no advertised networks', async () => {
    const c = await resolveUpConfig({ token: formatToken(newToken()) }, {})
    expect(c).toMatchObject({ tun: true, tunName: 'weft0', advertise: [] })
  })

  it('takes --no-tun, --tun-name and repeated --advertise, in canonical form, over the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-cfg-vpn-'))
    try {
      const file = join(dir, 'c.yaml')
      await writeFile(file, 'weft:\n  tun-name: wg9\n  advertise: [192.168.7.0/24]\n')
      expect(await resolveUpConfig({ token: formatToken(newToken()), config: file }, {})).toMatchObject({ tunName: 'wg9', advertise: ['192.168.7.0/24'] })
      const c = await resolveUpConfig({ token: formatToken(newToken()), config: file, tun: false, tunName: 'x0', advertise: ['10.20.0.0/16', 'FD00:0::/64', '10.20.0.0/16'] }, {})
      expect(c).toMatchObject({ tun: false, tunName: 'x0', advertise: ['10.20.0.0/16', 'fd00::/64'] })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('refuses a host address as an advertised network and a bad interface name, naming the fix', async () => {
    await expect(resolveUpConfig({ token: formatToken(newToken()), advertise: ['192.168.7.5/24'] }, {})).rejects.toThrow(/--advertise.*host bits set; did you mean 192\.168\.7\.0\/24/)
    await expect(resolveUpConfig({ token: formatToken(newToken()), tunName: 'a-very-long-name0' }, {})).rejects.toThrow(/--tun-name.*1 to 15/)
  })
})

describe('DNS settings of weft up', () => {
  it('takes listen addresses (ip, [ipv6], overlay; port 53 by default) and upstream resolvers', async () => {
    const c = await resolveUpConfig({ token: formatToken(newToken()), dns: ['127.0.0.1:5353', 'overlay', '[::1]:0'], dnsUpstream: ['192.0.2.53', '192.0.2.53:53'] }, {})
    expect(c.dns).toEqual([{ host: '127.0.0.1', port: 5353 }, { host: 'overlay', port: 53 }, { host: '::1', port: 0 }])
    expect(c.dnsUpstreams).toEqual(['192.0.2.53:53'])
  })

  it('refuses a host name as a DNS address and says what to write', async () => {
    await expect(resolveUpConfig({ token: formatToken(newToken()), dns: ['localhost:53'] }, {})).rejects.toThrow(/--dns.*not an IP address \(or "overlay"/)
    await expect(resolveUpConfig({ token: formatToken(newToken()), dnsUpstream: ['overlay'] }, {})).rejects.toThrow(/--dns-upstream.*use ip or ip:port/)
  })
})

describe('dns-allow and service-address', () => {
  const T = formatToken(newToken())
  it('--dns-allow takes CIDRs (canonical), bare addresses and "any"; the file key too', async () => {
    const c = await up({ token: T, dnsAllow: ['192.168.1.0/24', '192.168.1.0/24', '10.9.8.7', 'fd00::/64', 'any'] })
    expect(c.dnsAllow).toEqual(['192.168.1.0/24', '10.9.8.7/32', 'fd00::/64', 'any'])
    const file = await yamlFile('weft:\n  dns-allow: [172.16.0.0/12]\n  service-address: 192.0.2.10\n')
    const f = await up({ token: T, config: file })
    expect(f.dnsAllow).toEqual(['172.16.0.0/12'])
    expect(f.serviceAddress).toBe('192.0.2.10')
    await configError(up({ token: T, dnsAllow: ['lan'] }), '--dns-allow', 'is not a network')
    await configError(up({ token: T, dnsAllow: ['192.168.1.7/24'] }), '--dns-allow', 'did you mean 192.168.1.0/24')
    expect((await up({ token: T })).dnsAllow).toEqual([])
  })

  it('--service-address refuses what an API server refuses in an EndpointSlice', async () => {
    expect((await up({ token: T, serviceAddress: '10.1.0.5' })).serviceAddress).toBe('10.1.0.5')
    for (const bad of ['127.0.0.1', '::1', '0.0.0.0', '169.254.3.4', 'fe80::1', 'node1']) {
      await configError(up({ token: T, serviceAddress: bad }), '--service-address')
    }
  })
})

describe('the default data dir (issue 17: one for up and bridge, never relative)', () => {
  it('/var/lib/weft as root; $XDG_STATE_HOME/weft, else ~/.local/state/weft for another user', () => {
    expect(defaultDataDir({}, 0)).toBe('/var/lib/weft')
    expect(defaultDataDir({ XDG_STATE_HOME: '/home/ann/.state', HOME: '/home/ann' }, 1000)).toBe('/home/ann/.state/weft')
    expect(defaultDataDir({ HOME: '/home/ann' }, 1000)).toBe('/home/ann/.local/state/weft')
    // A relative XDG_STATE_HOME is invalid (the spec says to ignore it).
    expect(defaultDataDir({ XDG_STATE_HOME: 'rel', HOME: '/home/ann' }, 1000)).toBe('/home/ann/.local/state/weft')
  })
})

describe('discovery beyond the LAN: bootstrap, public-discovery, public-ranges', () => {
  const T = formatToken(newToken())
  const A = `/ip4/198.18.0.2/tcp/4001/p2p/${PEER_ID}`
  const B = `/dns4/relay.example/tcp/4001/p2p/${PEER_ID}`

  it('defaults: the public libp2p bootstrap list, public discovery on, no extra public ranges', async () => {
    const c = await up({ token: T })
    expect(c.bootstrap.length).toBeGreaterThanOrEqual(4)
    expect(c.bootstrap.every((a) => a.includes('/p2p/'))).toBe(true)
    expect(c.publicDiscovery).toBe(true)
    expect(c.publicRanges).toEqual([])
  })

  it('--bootstrap (comma-separated or repeated) beats WEFT_BOOTSTRAP, which beats the file', async () => {
    const file = await yamlFile(`weft:\n  token: ${T}\n  bootstrap: [${A}]\n  public-discovery: false\n  public-ranges: 100.64.0.0/10\n`)
    const f = await up({ config: file })
    expect(f.bootstrap).toEqual([A])
    expect(f.publicDiscovery).toBe(false)
    expect(f.publicRanges).toEqual(['100.64.0.0/10'])
    expect((await up({ config: file }, { WEFT_BOOTSTRAP: `${B}, ${A}` })).bootstrap).toEqual([B, A])
    expect((await up({ config: file, bootstrap: [`${A},${B}`, A] }, { WEFT_BOOTSTRAP: B })).bootstrap).toEqual([A, B])
    expect((await up({ token: T, publicDiscovery: false })).publicDiscovery).toBe(false)
    expect((await up({ token: T, publicRanges: ['198.18.0.0/15,100.64.0.0/10'] })).publicRanges).toEqual(['198.18.0.0/15', '100.64.0.0/10'])
  })

  it('bad values name the flag, variable or key and show the right form', async () => {
    await configError(up({ token: T, bootstrap: ['/ip4/198.18.0.2/tcp/4001'] }), '--bootstrap', '/p2p/<peer id>')
    await configError(up({ token: T }, { WEFT_BOOTSTRAP: 'nonsense' }), 'WEFT_BOOTSTRAP', 'not a multiaddr')
    await configError(up({ token: T, publicRanges: ['198.18.0.0'] }), '--public-ranges', 'not a CIDR', '198.18.0.0/15')
    const file = await yamlFile(`weft:\n  token: ${T}\n  public-discovery: "off"\n`)
    await configError(up({ config: file }), 'weft.public-discovery', 'true or false')
  })
})
