/**
 * Mesh bench (`npm run bench -- mesh`): the network figures of DESIGN.md "Numbers to reach".
 *   - agreement_10_netns: 10 token-only `weft up` processes in network namespaces agree on
 *     roles, IPs and DNS names (target < 5 s from the last start; needs root, else skipped).
 *   - gossip_30: event propagation p50/p99 across 30 in-process nodes (target p99 < 1 s).
 *   - anti_entropy_10k: one sync session between a node with 10,000 events and one missing 10,
 *     the in-sync check (1 round trip, < 100 bytes per author), and a raw-stream baseline.
 * Each part is also a bench of its own: mesh-netns, mesh-gossip, mesh-sync.
 */
import { progress } from './_lib.js'
import { run as netns } from './mesh-netns.js'
import { run as gossip } from './mesh-gossip.js'
import { run as sync } from './mesh-sync.js'

export async function run (): Promise<void> {
  const t = Date.now()
  await netns()
  await gossip()
  await sync()
  progress(`mesh bench: ${Math.round((Date.now() - t) / 1000)} s`)
}
