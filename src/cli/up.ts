import { Option, type Command } from 'commander'
import { run } from './errors.js'

export interface UpOpts {
  token?: string
  tokenFile?: string
  dataDir?: string
  cluster?: string
  role?: string
  hostname?: string
  listen: string[]
  peer: string[]
  mdns: boolean
  bootstrap: string[]
  publicDiscovery: boolean
  publicRanges: string[]
  api?: string
  syncInterval?: string
  joinWait?: string
  logLevel?: string
  logFormat?: string
  config?: string
  tun: boolean
  tunName?: string
  directPort?: string
  advertise: string[]
  pathInclude?: string[]
  pathExclude?: string[]
  dns: string[]
  dnsUpstream: string[]
  dnsAllow?: string[]
  serviceAddress?: string
  kubeconfig?: string
  shareKubeApi?: boolean
  entangle?: boolean
  entangleWebhook?: string
  sidecarImage?: string
  allow: string[]
  k3s?: boolean
  k3sBin?: string
  k3sKubeconfig?: string
  k3sArg?: string[]
}

const collect = (value: string, previous: string[]): string[] => [...previous, value]

/**
 * `weft up`: run a node until SIGINT or SIGTERM. Flags override the config file; the file may be
 * a Kairos cloud-config (see docs/config.md). Logs go to stderr: JSON lines (pino), or readable
 * lines with --log-format pretty (the default on a terminal).
 */
export function registerUp (program: Command): void {
  program.command('up').description('run a node: join the network of the token and stay in it until stopped (Ctrl-C)')
    .option('--token <token>', 'network token from "weft token new" (or WEFT_TOKEN, or --token-file)')
    .option('--token-file <path>', 'read the network token from a file')
    .option('--data-dir <dir>', 'node data directory: identity.key, events/, api.token (default: WEFT_DATA_DIR, else /var/lib/weft as root, else $XDG_STATE_HOME/weft or ~/.local/state/weft)')
    .option('--cluster <name>', 'cluster this node belongs to (default: default)')
    .addOption(new Option('--role <role>', 'requested k3s role (default: auto)').choices(['auto', 'master', 'worker', 'client']))
    .option('--hostname <name>', 'name of this node in the network (default: the machine hostname)')
    .option('--listen <multiaddr>', 'libp2p listen address, repeatable (default: /ip4/0.0.0.0/tcp/4001)', collect, [])
    .option('--peer <multiaddr>', 'bootstrap peer address with /p2p/<peer id>, repeatable', collect, [])
    .option('--no-mdns', 'do not discover peers on the LAN with mDNS')
    .option('--bootstrap <multiaddr,...>', 'public libp2p nodes to find members through (or WEFT_BOOTSTRAP; default: the public libp2p bootstrap list), comma-separated or repeatable', collect, [])
    .option('--no-public-discovery', 'do not use the public DHT and relays: only mDNS, --peer and the peer book (air-gapped networks)')
    .option('--public-ranges <cidr,...>', 'address ranges to treat as public although libp2p calls them private (e.g. 100.64.0.0/10), comma-separated or repeatable', collect, [])
    .option('--api <host:port|path|off>', 'HTTP API address, or a unix socket path (default: 127.0.0.1:8080)')
    .option('--sync-interval <duration>', 'anti-entropy period, e.g. 10s or 500ms (default: 10s)')
    .option('--join-wait <duration>', 'first start: wait this long for a first sync with a peer before joining alone, e.g. 5s or 0 (default: 5s)')
    .addOption(new Option('--log-level <level>', 'log level (default: info)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .addOption(new Option('--log-format <format>', 'log lines: json, or pretty for people (default: pretty on a terminal, else json)').choices(['json', 'pretty']).env('WEFT_LOG_FORMAT'))
    .option('--no-tun', 'no VPN data plane: stay in the log without a TUN device (no root needed)')
    .option('--tun-name <name>', 'name of the TUN device (default: weft0)')
    .option('--direct-port <port|off>', 'TCP port of the VPN direct path between peers (default: 0, any free port; off: mesh streams only)')
    .option('--advertise <cidr>', 'a network reachable through this node (a LAN, a pod or service CIDR), repeatable', collect, [])
    .option('--path-include <iface|cidr>', 'use this interface (glob such as wg*) or CIDR for the mesh even if it looks like a tunnel, repeatable', collect, [])
    .option('--path-exclude <iface|cidr>', 'never listen on, announce or dial this interface (glob) or CIDR, repeatable', collect, [])
    .option('--dns <addr>', 'serve the network\'s DNS on ip:port or overlay:port, repeatable (default port 53)', collect, [])
    .option('--dns-upstream <ip[:port]>', 'resolver for other names, repeatable (none: REFUSED)', collect, [])
    .option('--dns-allow <cidr|any>', 'also answer DNS clients from this network (default: loopback, overlay, advertised networks), repeatable', collect, [])
    .option('--service-address <ip>', 'address pods reach this node at, for imported services\' EndpointSlices (default: overlay address, else POD_IP)')
    .option('--kubeconfig <path|in-cluster>', 'run the multi-cluster services (MCS) agent against this Kubernetes cluster')
    .option('--share-kube-api', 'let the members named by --allow reach this cluster\'s API server over the mesh')
    .option('--entangle', 'run the Entanglement and Manifests controllers (needs --kubeconfig and the CRDs of deploy/crds/)')
    .option('--entangle-webhook <ip:port>', 'serve the sidecar injection webhook here (TLS, the agent\'s own CA; needs --entangle)')
    .option('--sidecar-image <image>', 'image of injected weft sidecars (default: WEFT_IMAGE)')
    .option('--allow <peer-id|hostname>', 'a member allowed to use the shared API, repeatable', collect, [])
    .option('--k3s', 'run k3s as the roles projection decides, once the decision is stable')
    .option('--k3s-bin <path>', 'the k3s binary (default: k3s on PATH)')
    .option('--k3s-kubeconfig <path>', 'where a k3s server writes its admin kubeconfig (default: /etc/rancher/k3s/k3s.yaml)')
    .option('--k3s-arg <arg>', 'an extra k3s flag, repeatable, as --k3s-arg=--flag=value', collect, [])
    .option('--config <file.yaml>', 'YAML config: a weft: block with these settings, or a Kairos cloud-config kairos: block')
    .action(async (o: UpOpts) => {
      await run(async () => await runUp(o))
    })

  program.command('bridge').description('join from a workstation: a client-only member with an overlay address that can reach every node (no k3s role, no advertised routes)')
    .option('--token <token>', 'network token (or WEFT_TOKEN, or --token-file)')
    .option('--token-file <path>', 'read the network token from a file')
    .option('--data-dir <dir>', 'data directory of this bridge (default: as weft up\'s, so weft status finds it)')
    .option('--hostname <name>', 'name in the network (default: the machine hostname)')
    .option('--listen <multiaddr>', 'libp2p listen address, repeatable (default: /ip4/0.0.0.0/tcp/0, a random port)', collect, [])
    .option('--peer <multiaddr>', 'bootstrap peer address with /p2p/<peer id>, repeatable', collect, [])
    .option('--no-mdns', 'do not discover peers on the LAN with mDNS')
    .option('--bootstrap <multiaddr,...>', 'public libp2p nodes to find members through (or WEFT_BOOTSTRAP; default: the public libp2p bootstrap list), comma-separated or repeatable', collect, [])
    .option('--no-public-discovery', 'do not use the public DHT and relays: only mDNS, --peer and the peer book (air-gapped networks)')
    .option('--public-ranges <cidr,...>', 'address ranges to treat as public although libp2p calls them private (e.g. 100.64.0.0/10), comma-separated or repeatable', collect, [])
    .option('--api <host:port|path|off>', 'HTTP API address, or a unix socket path (default: 127.0.0.1:8080)')
    .option('--tun-name <name>', 'name of the TUN device (default: weft0)')
    .option('--dns <addr>', 'serve the network\'s DNS on ip:port or overlay:port for this workstation, repeatable', collect, [])
    .addOption(new Option('--log-level <level>', 'log level (default: info)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .addOption(new Option('--log-format <format>', 'log lines: json, or pretty for people (default: pretty on a terminal, else json)').choices(['json', 'pretty']).env('WEFT_LOG_FORMAT'))
    .option('--config <file.yaml>', 'YAML config (a weft: block); role, advertise and tun are fixed for a bridge')
    .action(async (o: UpOpts) => {
      await run(async () => await runUp({
        ...o,
        listen: o.listen.length > 0 ? o.listen : ['/ip4/0.0.0.0/tcp/0'],
        role: 'client',
        tun: true,
        advertise: [],
        dnsUpstream: [],
        allow: []
      }, true))
    })
}

/** `prepare` adjusts the resolved config before the daemon starts (`weft sidecar`). */
export async function runUp (o: UpOpts, bridge = false, prepare?: (config: import('../node/config.js').UpConfig) => Promise<void>): Promise<number> {
  const { resolveUpConfig } = await import('../node/config.js')
  const config = await resolveUpConfig({
    token: o.token,
    tokenFile: o.tokenFile,
    dataDir: o.dataDir,
    cluster: o.cluster,
    role: o.role,
    hostname: o.hostname,
    listen: o.listen,
    peer: o.peer,
    // Commander sets mdns: true unless --no-mdns is given; only an explicit false overrides the file.
    mdns: o.mdns === false ? false : undefined,
    bootstrap: o.bootstrap,
    publicDiscovery: o.publicDiscovery === false ? false : undefined,
    publicRanges: o.publicRanges,
    api: o.api,
    syncInterval: o.syncInterval,
    joinWait: o.joinWait,
    logLevel: o.logLevel,
    config: o.config,
    tun: o.tun === false ? false : undefined,
    tunName: o.tunName,
    directPort: o.directPort,
    advertise: o.advertise,
    pathInclude: o.pathInclude,
    pathExclude: o.pathExclude,
    dns: o.dns,
    dnsUpstream: o.dnsUpstream,
    dnsAllow: o.dnsAllow,
    serviceAddress: o.serviceAddress,
    kubeconfig: o.kubeconfig,
    shareKubeApi: o.shareKubeApi === true ? true : undefined,
    entangle: o.entangle === true ? true : undefined,
    entangleWebhook: o.entangleWebhook,
    sidecarImage: o.sidecarImage,
    allow: o.allow,
    k3s: o.k3s === true ? true : undefined,
    k3sBin: o.k3sBin,
    k3sKubeconfig: o.k3sKubeconfig,
    k3sArgs: o.k3sArg
  }, process.env)
  if (bridge) {
    // A bridge is a client: whatever a shared config file says, it takes no k3s role, routes no
    // network and needs its data plane.
    config.role = 'client'
    config.advertise = []
    config.tun = true
    config.k3s = false
  }
  await prepare?.(config)
  // Before anything is opened or joined: an address in use is one clean line, not a stack trace
  // after the node has synced.
  const { bindConflicts } = await import('../adapters/bind-probe.js')
  const { CliError } = await import('./errors.js')
  const conflicts = await bindConflicts(config.listen, config.api)
  for (const c of conflicts.slice(0, -1)) process.stderr.write(`weft: ${c}\n`)
  if (conflicts.length > 0) throw new CliError(conflicts[conflicts.length - 1] as string)
  const { pino } = await import('pino')
  const { defaultLogFormat, prettyDestination } = await import('./log-format.js')
  const format = o.logFormat ?? defaultLogFormat(process.stderr.isTTY)
  const log = pino({ level: config.logLevel, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    format === 'pretty' ? prettyDestination(process.stderr.isTTY) : pino.destination({ fd: 2, sync: true }))
  // Before the log is read: a node without a VPN gives freed native memory back (a flood's).
  const { loadMallocTrim, returnFreedMemory, returnMemoryEarly, wantsReturnMemory } = await import('../adapters/allocator.js')
  const wanted = wantsReturnMemory({ vpn: config.tun }, process.env)
  const allocator = wanted.applied ? returnMemoryEarly() : wanted
  log.debug({ allocator }, allocator.applied ? 'malloc returns freed memory early (no VPN)' : 'malloc left at its defaults')
  if (allocator.applied) {
    const calls = loadMallocTrim()
    if (typeof calls === 'string') log.debug({ reason: calls }, 'freed memory is not trimmed')
    else returnFreedMemory(calls, { onTrim: (ms, info) => { log.debug({ ms: Math.round(ms * 100) / 100, freeMb: Math.round(info.free / 2 ** 20) }, 'gave freed memory back (malloc_trim)') } })
  }
  // Before the store opens: LevelDB reads the choice when its first database opens.
  const { readTablesWithoutMmap } = await import('../adapters/level-db.js')
  const tables = readTablesWithoutMmap()
  log.debug({ tables }, tables.mapped ? 'LevelDB maps its table files' : 'LevelDB reads its table files with pread (not mapped)')
  const { Daemon } = await import('../node/daemon.js')
  const { removeApiEndpointSync } = await import('../adapters/api-token.js')
  // Signals are handled from before the start: one arriving meanwhile stops the daemon once it
  // is up (api.json is written during the start), a second one exits at once.
  let daemon: import('../node/daemon.js').Daemon | undefined
  let stopping = false
  const stopDeadline = stopDeadlineMs(process.env.WEFT_STOP_DEADLINE_MS)
  let done: () => void = () => {}
  const stopped = new Promise<void>((resolve) => { done = resolve })
  const stop = (signal: string): void => {
    if (stopping) {
      // The endpoint file goes even so: a stale api.json points the CLI at a dead daemon.
      removeApiEndpointSync(config.dataDir, process.pid)
      log.warn({ signal }, 'second signal: exiting without a clean stop')
      process.exit(130)
    }
    stopping = true
    log.info({ signal }, 'stopping')
    // A clean stop that hangs (seen once with 30 nodes on 2 cores, >10 min) must not keep the
    // process, its port and its store lock: after STOP_DEADLINE_MS it exits anyway, as a second
    // signal would. Acknowledged events are on disk already (every batch is synced).
    setTimeout(() => {
      removeApiEndpointSync(config.dataDir, process.pid)
      log.warn({ signal, deadlineMs: stopDeadline }, 'the clean stop did not finish in time: exiting without it')
      process.exit(1)
    }, stopDeadline).unref()
    if (daemon !== undefined) void daemon.stop().finally(done)
  }
  process.on('SIGINT', () => { stop('SIGINT') })
  process.on('SIGTERM', () => { stop('SIGTERM') })
  daemon = await Daemon.start({ config, log, onLeft: () => { stop('left the network') } })
  if (stopping) void daemon.stop().finally(done)
  await stopped
  return 0
}

/** How long a clean stop may take before the process exits anyway (WEFT_STOP_DEADLINE_MS, default 20 s). */
export const STOP_DEADLINE_MS = 20_000

function stopDeadlineMs (text: string | undefined): number {
  const n = text === undefined ? Number.NaN : Number(text)
  return Number.isInteger(n) && n > 0 ? n : STOP_DEADLINE_MS
}
