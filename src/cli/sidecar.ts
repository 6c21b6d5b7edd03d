import { join } from 'node:path'
import { Option, type Command } from 'commander'
import { run } from './errors.js'
import { runUp, type UpOpts } from './up.js'

interface SidecarOpts {
  token?: string
  tokenFile?: string
  dataDir?: string
  cluster?: string
  hostname?: string
  listen: string[]
  peer: string[]
  api?: string
  logLevel?: string
  direction: 'expose' | 'consume'
  service: string
  port: string
  address?: string
}

const collect = (value: string, previous: string[]): string[] => [...previous, value]

/**
 * `weft sidecar`: the container the injection webhook adds to a labelled pod (docs/entangle.md).
 * A node with no TUN device (no root, no capabilities), no mDNS, a client role and no API by
 * default, that carries one service: `--direction expose` serves the pod's own
 * 127.0.0.1:<port> on the network as `<namespace>/<name>`; `--direction consume` listens on the
 * pod's 127.0.0.1:<port> for it. The service is written into the node's services file before
 * it starts, so the daemon's ordinary restore path (docs/services.md) sets it up.
 */
export function registerSidecar (program: Command): void {
  program.command('sidecar').description('run as a pod\'s weft sidecar: expose the pod\'s port, or reach a network service on its localhost (no TUN, not root)')
    .option('--token <token>', 'network token (or WEFT_TOKEN, or --token-file)')
    .option('--token-file <path>', 'read the network token from a file')
    .option('--data-dir <dir>', 'data directory (default: WEFT_DATA_DIR or ./.weft-sidecar)')
    .option('--cluster <name>', 'the Weft cluster to join (the agent\'s)')
    .option('--hostname <name>', 'name in the network (default: the machine hostname)')
    .option('--listen <multiaddr>', 'libp2p listen address, repeatable (default: /ip4/0.0.0.0/tcp/0)', collect, [])
    .option('--peer <multiaddr>', 'bootstrap peer (the agent) with /p2p/<peer id>, repeatable', collect, [])
    .option('--api <host:port|path|off>', 'HTTP API address (default: off)')
    .addOption(new Option('--log-level <level>', 'log level (default: info)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .addOption(new Option('--direction <direction>', 'expose the pod\'s port, or consume the network service').choices(['expose', 'consume']).makeOptionMandatory())
    .requiredOption('--service <namespace/name>', 'the network service')
    .requiredOption('--port <port>', 'the service port (and the pod\'s port)')
    .option('--address <ip:port>', 'expose: where the pod serves; consume: where to listen (default 127.0.0.1:<port>)')
    .action(async (o: SidecarOpts) => {
      await run(async () => {
        const { checkLabel, parseListen, parseTarget } = await import('../node/service-registry.js')
        const { WeftError } = await import('../log/errors.js')
        const [namespace, name, extra] = o.service.split('/')
        if (namespace === undefined || name === undefined || extra !== undefined) throw new WeftError('ERR_BAD_INPUT', `--service ${o.service}: expected <namespace>/<name>`)
        checkLabel('namespace', namespace)
        checkLabel('name', name)
        if (!/^\d{1,5}$/.test(o.port) || Number(o.port) < 1 || Number(o.port) > 65535) throw new WeftError('ERR_BAD_INPUT', `--port ${o.port}: a port 1-65535`)
        const port = Number(o.port)
        const address = o.address ?? `127.0.0.1:${port}`
        // Checked now, so a bad flag is a usage error rather than a dropped saved service.
        if (o.direction === 'expose') parseTarget(address)
        else parseListen(address)
        const up: UpOpts = {
          token: o.token,
          tokenFile: o.tokenFile,
          dataDir: o.dataDir ?? (process.env.WEFT_DATA_DIR !== undefined && process.env.WEFT_DATA_DIR !== '' ? undefined : './.weft-sidecar'),
          cluster: o.cluster,
          role: 'client',
          hostname: o.hostname,
          listen: o.listen.length > 0 ? o.listen : ['/ip4/0.0.0.0/tcp/0'],
          peer: o.peer,
          // A pod's sidecar reaches the mesh through the peers it is given (the agent): no
          // public DHT traffic from every pod.
          bootstrap: [],
          publicDiscovery: false,
          publicRanges: [],
          mdns: false,
          api: o.api ?? 'off',
          logLevel: o.logLevel,
          tun: false,
          advertise: [],
          dns: [],
          dnsUpstream: [],
          allow: []
        }
        return await runUp(up, false, async (config) => {
          const { servicesFileStore } = await import('../node/local-services.js')
          const store = servicesFileStore(join(config.dataDir, 'services.json'))
          await store.save({
            v: 1,
            exposes: o.direction === 'expose' ? [{ namespace, name, target: address, port }] : [],
            connects: o.direction === 'consume' ? [{ namespace, name, listen: address, port }] : []
          })
        })
      })
    })
}
