import type { Command } from 'commander'
import { DEFAULT_SETTINGS } from '../projections/settings-defaults.js'
import { CliError, EXIT_OK, run } from './errors.js'
import { jsonOption } from './options.js'
import { out, printJson } from './output.js'

/**
 * `weft kube dns-setup`: wire a cluster's CoreDNS to Weft DNS by patching its ConfigMap (a
 * marked block, idempotent, removable). Needs a kubeconfig allowed to get and update
 * ConfigMaps in kube-system (an admin one). See docs/kube-remote.md.
 */

interface DnsSetupOpts { kubeconfig?: string, context?: string, server: string[], zone: string, configmap: string, remove: boolean, json: boolean }

function collect (value: string, previous: string[]): string[] {
  return [...previous, ...value.split(',').map((s) => s.trim()).filter((s) => s !== '')]
}

export function registerKube (program: Command): void {
  const kube = program.command('kube').description('Kubernetes helpers that talk to a cluster\'s API server with a kubeconfig')

  jsonOption(kube.command('dns-setup')
    .description('add (or --remove) the CoreDNS server blocks forwarding clusterset.local and the network zone to Weft DNS, in the coredns ConfigMap (or k3s coredns-custom); re-running changes nothing')
    .option('--kubeconfig <file>', 'kubeconfig of the cluster (default: KUBECONFIG, ~/.kube/config, or the pod\'s service account)')
    .option('--context <name>', 'a context of the kubeconfig other than its current one')
    .option('--server <ip[:port]>', 'a Weft DNS server as CoreDNS pods reach it, e.g. a node\'s overlay address (port 53 when absent); repeatable or comma-separated; required unless --remove', collect, [])
    .option('--zone <zone>', 'the network\'s zone (its "zone" setting)', DEFAULT_SETTINGS.zone)
    .option('--configmap <name>', 'the ConfigMap in kube-system: coredns (key Corefile) or, on k3s, coredns-custom (key weft.server, created when missing)', 'coredns')
    .option('--remove', 'remove the block weft added (nothing else)', false), 'print {configMap, namespace, key, action, resourceVersion, retried, block}')
    .action(async (o: DnsSetupOpts) => {
      await run(async () => {
        if (!o.remove && o.server.length === 0) throw new CliError('give --server <ip[:port]>: the Weft DNS address CoreDNS pods can reach (a node\'s overlay address); 127.0.0.1 in a CoreDNS pod is CoreDNS itself')
        const { loadKubeConfig, createHttpKubeClient } = await import('../adapters/kube/http-client.js')
        const { corednsSetup, DnsSetupError } = await import('../node/kube-dns-setup.js')
        const { isKubeError } = await import('../adapters/kube/client.js')
        let client
        try {
          client = createHttpKubeClient(loadKubeConfig({ ...(o.kubeconfig !== undefined ? { kubeconfig: o.kubeconfig } : {}), ...(o.context !== undefined ? { context: o.context } : {}) }), { userAgent: 'weft-kube-dns-setup' })
        } catch (err) {
          throw new CliError(`--kubeconfig: ${(err as Error).message}`)
        }
        let r
        try {
          r = await corednsSetup({ client, servers: o.server, zone: o.zone, configMap: o.configmap, remove: o.remove })
        } catch (err) {
          if (err instanceof DnsSetupError) throw new CliError(err.message)
          if (isKubeError(err, 'Forbidden')) throw new CliError(`the kubeconfig may not read or update ConfigMaps in kube-system: ${err.message}`)
          if (isKubeError(err, 'Conflict')) throw new CliError(`${err.message}: the ConfigMap changed twice under this command; run it again`, 1)
          throw err
        }
        if (o.json) { printJson(r); return EXIT_OK }
        const where = `kube-system/${r.configMap} (${r.key})`
        const rv = r.resourceVersion !== undefined ? `, resourceVersion ${r.resourceVersion}` : ''
        const text: Record<typeof r.action, string> = {
          added: `added the weft block to ${where}${rv}`,
          updated: `updated the weft block in ${where}${rv}`,
          unchanged: `${where} already has this weft block; nothing changed${rv}`,
          removed: `removed the weft block from ${where}${rv}`,
          absent: `${where} has no weft block; nothing changed`
        }
        out(text[r.action] + (r.retried ? ' (after a concurrent edit, retried once)' : ''))
        if (r.action === 'added' || r.action === 'updated' || r.action === 'removed') {
          out(r.configMap === 'coredns'
            ? 'CoreDNS\'s reload plugin picks the change up within about a minute (the kubelet updates the mounted file first)'
            : 'k3s imports coredns-custom at start: run "kubectl -n kube-system rollout restart deploy/coredns" if it does not pick the change up within a minute')
        }
        return EXIT_OK
      })
    })
}
