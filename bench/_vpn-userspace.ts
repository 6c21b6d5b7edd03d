/**
 * The userspace VPNs the VPN bench compares Weft with (Debian packages: wireguard-go +
 * wireguard-tools, tinc 1.0, nebula, yggdrasil), each set up between the bench's two network
 * namespaces on its own interface and subnet, so all run side by side (idle when not measured).
 * The bench installs nothing: a missing binary, or a setup that fails, gives a `skipped` reason.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { waitFor, type LabHost, type NetnsLab } from '../test/system/netns.js'

export interface Peer {
  name: string
  version: string
  /** B's address inside this VPN (A sends to it). */
  addrB: string
}

function which (bin: string): boolean {
  try { execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }); return true } catch { return false }
}

function version (argv: string[], re: RegExp): string {
  try {
    const out = execFileSync(argv[0] as string, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    return re.exec(out)?.[1] ?? 'unknown'
  } catch (err) {
    const out = String((err as { stdout?: string }).stdout ?? '') + String((err as { stderr?: string }).stderr ?? '')
    return re.exec(out)?.[1] ?? 'unknown'
  }
}

async function run (lab: NetnsLab, h: LabHost, argv: string[], input?: string): Promise<string> {
  const r = await lab.exec(h, input === undefined ? argv : ['sh', '-c', `printf '%s' "$0" | ${argv.map((a) => `'${a}'`).join(' ')}`, input])
  if (r.code !== 0) throw new Error(`${argv.join(' ')} in ${h.hostname} failed (${String(r.code)}): ${r.stderr.trim()}`)
  return r.stdout
}

/** Waits until A can ping B's address in the VPN. */
async function reachable (lab: NetnsLab, a: LabHost, addr: string, what: string): Promise<void> {
  await waitFor(async () => (await lab.exec(a, ['ping', '-n', '-c', '1', '-W', '1', addr])).code === 0, `${what}: A to ping ${addr}`, 30_000, 300)
}

async function wireguardGo (lab: NetnsLab, a: LabHost, b: LabHost, dir: string): Promise<Peer> {
  const hosts = [a, b]
  const keys = await Promise.all(hosts.map(async (h) => (await run(lab, h, ['wg', 'genkey'])).trim()))
  const pubs = await Promise.all(hosts.map(async (h, i) => (await run(lab, h, ['wg', 'pubkey'], keys[i])).trim()))
  for (const [i, h] of hosts.entries()) {
    // One name per side: the UAPI socket (/var/run/wireguard/NAME.sock) is not per namespace.
    lab.spawn(h, ['wireguard-go', '-f', `wgb${i}`], { logFile: join(dir, `wg-${i}.log`), env: { ...process.env, WG_PROCESS_FOREGROUND: '1' } })
  }
  for (const [i, h] of hosts.entries()) {
    const dev = `wgb${i}`
    await waitFor(async () => (await lab.exec(h, ['ip', 'link', 'show', dev])).code === 0 && (await lab.exec(h, ['wg', 'show', dev])).code === 0, `wireguard-go to create ${dev}`, 15_000, 100)
    const keyFile = join(dir, `wg-${i}.key`)
    writeFileSync(keyFile, keys[i] as string, { mode: 0o600 })
    const other = hosts[1 - i] as LabHost
    await run(lab, h, ['wg', 'set', dev, 'private-key', keyFile, 'listen-port', '51820', 'peer', pubs[1 - i] as string, 'endpoint', `${other.ip}:51820`, 'allowed-ips', `10.90.1.${2 - i}/32`])
    await run(lab, h, ['ip', 'addr', 'add', `10.90.1.${i + 1}/24`, 'dev', dev])
    await run(lab, h, ['ip', 'link', 'set', dev, 'mtu', '1420', 'up'])
  }
  await reachable(lab, a, '10.90.1.2', 'wireguard-go')
  return { name: 'wireguard-go', version: version(['wireguard-go', '--version'], /wireguard-go v(\S+)/), addrB: '10.90.1.2' }
}

async function tinc (lab: NetnsLab, a: LabHost, b: LabHost, dir: string): Promise<Peer> {
  const hosts = [a, b]
  const names = ['a', 'b']
  const dirs = names.map((n) => join(dir, `tinc-${n}`))
  for (const [i, d] of dirs.entries()) {
    mkdirSync(join(d, 'hosts'), { recursive: true })
    writeFileSync(join(d, 'tinc.conf'), `Name = ${names[i] as string}\nMode = router\nInterface = tincb0\nAddressFamily = ipv4\n${i === 0 ? 'ConnectTo = b\n' : ''}`)
    writeFileSync(join(d, 'tinc-up'), `#!/bin/sh\nip addr add 10.91.1.${i + 1}/24 dev $INTERFACE\nip link set $INTERFACE mtu 1420 up\n`, { mode: 0o755 })
    writeFileSync(join(d, 'hosts', names[i] as string), `Address = ${(hosts[i] as LabHost).ip}\nSubnet = 10.91.1.${i + 1}/32\n`)
    await run(lab, hosts[i] as LabHost, ['sh', '-c', `tincd -c ${d} -K2048 </dev/null`])
  }
  // Each side needs the other's host file (address, subnet, public key).
  for (const [i, d] of dirs.entries()) {
    const other = names[1 - i] as string
    writeFileSync(join(d, 'hosts', other), readFileSync(join(dirs[1 - i] as string, 'hosts', other)))
  }
  for (const [i, h] of hosts.entries()) lab.spawn(h, ['tincd', '-c', dirs[i] as string, '-D', `--pidfile=${join(dir, `tinc-${i}.pid`)}`], { logFile: join(dir, `tinc-${i}.log`) })
  await reachable(lab, a, '10.91.1.2', 'tinc')
  return { name: 'tinc', version: version(['tincd', '--version'], /tinc version (\S+)/), addrB: '10.91.1.2' }
}

async function nebula (lab: NetnsLab, a: LabHost, b: LabHost, dir: string): Promise<Peer> {
  const d = join(dir, 'nebula')
  mkdirSync(d, { recursive: true })
  execFileSync('nebula-cert', ['ca', '-name', 'weft-bench', '-out-crt', join(d, 'ca.crt'), '-out-key', join(d, 'ca.key')])
  const hosts = [a, b]
  for (const [i, h] of hosts.entries()) {
    const n = `n${i}`
    execFileSync('nebula-cert', ['sign', '-name', n, '-ip', `10.92.1.${i + 1}/24`, '-ca-crt', join(d, 'ca.crt'), '-ca-key', join(d, 'ca.key'), '-out-crt', join(d, `${n}.crt`), '-out-key', join(d, `${n}.key`)])
    const other = hosts[1 - i] as LabHost
    writeFileSync(join(d, `${n}.yml`), [
      'pki:', `  ca: ${join(d, 'ca.crt')}`, `  cert: ${join(d, `${n}.crt`)}`, `  key: ${join(d, `${n}.key`)}`,
      'static_host_map:', `  "10.92.1.${2 - i}": ["${other.ip}:4242"]`,
      'lighthouse:', '  am_lighthouse: false', '  hosts: []',
      'listen:', '  host: 0.0.0.0', '  port: 4242',
      'punchy:', '  punch: false',
      'tun:', '  dev: nebb0', '  mtu: 1420',
      'logging:', '  level: warning',
      'firewall:', '  outbound:', '    - port: any', '      proto: any', '      host: any', '  inbound:', '    - port: any', '      proto: any', '      host: any', ''
    ].join('\n'))
    lab.spawn(h, ['nebula', '-config', join(d, `${n}.yml`)], { logFile: join(dir, `nebula-${i}.log`) })
  }
  await reachable(lab, a, '10.92.1.2', 'nebula')
  return { name: 'nebula', version: version(['nebula', '-version'], /Version: (\S+)/), addrB: '10.92.1.2' }
}

function readLog (f: string): string {
  try { return readFileSync(f, 'utf8') } catch { return '' }
}

async function yggdrasil (lab: NetnsLab, a: LabHost, b: LabHost, dir: string): Promise<Peer> {
  const hosts = [a, b]
  const files: string[] = []
  // B (the listener) first: A's first dial to a port not yet open is retried only after a backoff.
  for (const i of [1, 0]) {
    const h = hosts[i] as LabHost
    const conf = JSON.parse(execFileSync('yggdrasil', ['-genconf', '-json'], { encoding: 'utf8' })) as Record<string, unknown>
    conf.Peers = i === 0 ? [`tcp://${b.ip}:12345`] : []
    conf.Listen = i === 1 ? ['tcp://0.0.0.0:12345'] : []
    conf.IfName = 'yggb0'
    conf.IfMTU = 65535
    conf.AdminListen = 'none'
    conf.MulticastInterfaces = []
    const f = join(dir, `ygg-${i}.json`)
    writeFileSync(f, JSON.stringify(conf))
    files[i] = f
    lab.spawn(h, ['yggdrasil', '-useconffile', f, '-logto', join(dir, `ygg-${i}.log`)], { logFile: join(dir, `ygg-${i}.out`) })
    if (i === 1) await waitFor(() => /listener started/.test(readLog(join(dir, 'ygg-1.log'))), 'yggdrasil on B to listen', 15_000, 100)
  }
  const addrB = execFileSync('yggdrasil', ['-useconffile', files[1] as string, '-address'], { encoding: 'utf8' }).trim()
  await reachable(lab, a, addrB, 'yggdrasil')
  return { name: 'yggdrasil', version: version(['dpkg-query', '-W', '-f=${Version}', 'yggdrasil'], /^(\S+)/), addrB }
}

const SYSTEMS: Array<{ name: string, bins: string[], up: (lab: NetnsLab, a: LabHost, b: LabHost, dir: string) => Promise<Peer> }> = [
  { name: 'wireguard-go', bins: ['wireguard-go', 'wg'], up: wireguardGo },
  { name: 'tinc', bins: ['tincd'], up: tinc },
  { name: 'nebula', bins: ['nebula', 'nebula-cert'], up: nebula },
  { name: 'yggdrasil', bins: ['yggdrasil'], up: yggdrasil }
]

/** Starts every userspace VPN it can; the others come back with the reason they were skipped. */
export async function startUserspaceVpns (lab: NetnsLab, a: LabHost, b: LabHost): Promise<{ up: Peer[], skipped: Array<{ name: string, reason: string }> }> {
  const up: Peer[] = []
  const skipped: Array<{ name: string, reason: string }> = []
  for (const s of SYSTEMS) {
    const missing = s.bins.filter((bin) => !which(bin))
    if (missing.length > 0) {
      skipped.push({ name: s.name, reason: `${missing.join(', ')} not installed (apt-get install iperf3 tinc nebula yggdrasil wireguard-go wireguard-tools)` })
      continue
    }
    try {
      up.push(await s.up(lab, a, b, lab.dir))
    } catch (err) {
      skipped.push({ name: s.name, reason: `setup failed: ${(err as Error).message.split('\n')[0] as string}` })
    }
  }
  return { up, skipped }
}
