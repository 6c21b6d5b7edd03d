import type { Command } from 'commander'
import { EXIT_OK, run } from './errors.js'
import { dataDirOption, intParser } from './options.js'
import { out } from './output.js'
import type { GetKubeconfigOptions } from './get-kubeconfig.js'

const collect = (value: string, previous: string[]): string[] => [...previous, value]

/**
 * `weft get-kubeconfig`: the command's options here, its work (libp2p, a replica, the mesh) in
 * get-kubeconfig.ts, loaded when it runs: importing that eagerly made every `weft` command take
 * ~1.1 s longer to start.
 */
export function registerGetKubeconfig (program: Command): void {
  dataDirOption(program.command('get-kubeconfig')
    .description('print the admin kubeconfig of a cluster, fetched from its init master over the mesh (only members may fetch it)')
    .option('--token <token>', 'network token (or WEFT_TOKEN, or --token-file)')
    .option('--token-file <path>', 'read the network token from a file')
    .option('--cluster <name>', 'the cluster (default: the data dir node\'s cluster, else default)')
    .option('--peer <multiaddr>', 'a peer to sync the log from, with /p2p/<peer id>, repeatable', collect, [])
    .option('--no-mdns', 'do not look for peers on the LAN with mDNS')
    .option('--timeout <ms>', 'give up after this long', intParser(100), 30_000))
    .action(async (o: GetKubeconfigOptions) => {
      await run(async () => {
        const { getKubeconfig } = await import('./get-kubeconfig.js')
        const text = await getKubeconfig({ ...o, note: (line) => { process.stderr.write(`weft: ${line}\n`) } })
        out(text.endsWith('\n') ? text.slice(0, -1) : text)
        return EXIT_OK
      })
    })
}
