import type { NetworkState } from './network.js'
import { deriveRoles, type ClusterRolesView } from './roles.js'
import { leaseOf } from './ipam.js'

/** The port every k3s server's supervisor and API server listen on. */
export const K3S_API_PORT = 6443

export type K3sRunRole = 'init' | 'server' | 'agent'

/** What this node's k3s should run: a pure function of the log (see `planK3s`). */
export interface K3sPlan {
  readonly role: K3sRunRole
  readonly cluster: string
  /** The exact argv after the k3s binary. Never holds the token: that is in the config file. */
  readonly args: readonly string[]
  /**
   * `https://<overlay address>:6443` of the server this node joins: an online member of the
   * cluster's control plane, the init master first; absent for the init master itself.
   */
  readonly serverUrl?: string
  /** This node's overlay IPv4 address (`--node-ip`, `--tls-san`). */
  readonly nodeIp: string
  /** The init master's author hex. */
  readonly master: string
}

/** Nothing to run (yet), and why; `role` is what the log says so far, when it says anything. */
export interface K3sWait {
  readonly wait: string
  readonly cluster?: string
  readonly role?: K3sRunRole | 'none'
}

export interface K3sPlanOptions {
  /** The overlay device flannel uses (`--flannel-iface`), `weft0` by default in the daemon. */
  tunName: string
  /** Extra flags appended as given (`--k3s-arg`, repeatable). */
  extraArgs?: readonly string[]
  /** Path of the k3s config file the adapter writes (holds the token): `<data dir>/k3s/config.yaml`. */
  configPath: string
  /**
   * Whether a member is online right now (presence, which is not in the log); absent = every
   * member counts as online. Only picks which server a joining node is pointed at.
   */
  online?: (author: string) => boolean
}

export function isK3sWait (p: K3sPlan | K3sWait): p is K3sWait {
  return 'wait' in p
}

export function k3sServerUrl (addr: string): string {
  return `https://${addr.includes(':') ? `[${addr}]` : addr}:${K3S_API_PORT}`
}

/**
 * This node's k3s command line, derived from the log. Only a *stable* decision for this node's
 * cluster counts: while the cluster's decision or this node's own role is tentative, or an
 * address it needs is missing, the answer is a wait with the reason. The init master runs
 * `server --cluster-init`, extra servers `server --server https://<master>:6443`, agents
 * `agent --server …`; every one with its overlay address as `--node-ip` and flannel on the
 * overlay device; servers also put the overlay address in their certificate (`--tls-san`; k3s
 * agents have no such flag). Pure: no I/O, no clock.
 */
export function planK3s (s: NetworkState, self: string, opts: K3sPlanOptions): K3sPlan | K3sWait {
  const me = s.members.active.get(self)
  if (me === undefined) return { wait: 'this node is not a member of the network yet' }
  const cluster = me.cluster
  const view: ClusterRolesView | undefined = deriveRoles(s.roles, s.members, s.settings.values).find((c) => c.cluster === cluster)
  const mine = view?.members.find((m) => m.author === self)
  if (view === undefined || mine === undefined) return { wait: `cluster ${cluster} has no roles yet`, cluster }
  if (mine.role === 'none') {
    return { wait: view.status === 'waiting' ? `no k3s master yet: ${view.reason ?? 'waiting'}` : 'this node takes no k3s role (it is a client)', cluster, role: 'none' }
  }
  if (view.status === 'master-gone') return { wait: `the init master of cluster ${cluster} left: ${view.reason ?? ''}`.trim(), cluster, role: mine.role }
  if (view.status !== 'stable' || view.master === undefined) {
    return { wait: `the k3s roles of cluster ${cluster} are ${view.status}: acting only on a stable decision`, cluster, role: mine.role }
  }
  if (!mine.stable) return { wait: `this node's role (${mine.role}) is tentative until it has acknowledged the stable decision of cluster ${cluster}`, cluster, role: mine.role }
  const nodeIp = leaseOf(s.ipam, self, 4)?.addr
  if (nodeIp === undefined) return { wait: 'this node has no overlay address yet', cluster, role: mine.role }
  const master = view.master.author
  const role = mine.role
  const common = ['--config', opts.configPath]
  const node = ['--node-ip', nodeIp, '--flannel-iface', opts.tunName]
  const extra = [...(opts.extraArgs ?? [])]
  if (role === 'init') {
    return { role, cluster, nodeIp, master, args: ['server', ...common, '--cluster-init', ...node, '--tls-san', nodeIp, ...extra] }
  }
  const join = joinTarget(s, view, self, opts.online)
  if (join === undefined) return { wait: `the init master ${master.slice(0, 12)} has no overlay address yet`, cluster, role }
  const serverUrl = k3sServerUrl(join)
  const args = role === 'server'
    ? ['server', ...common, '--server', serverUrl, ...node, '--tls-san', nodeIp, ...extra]
    : ['agent', ...common, '--server', serverUrl, ...node, ...extra]
  return { role, cluster, nodeIp, master, serverUrl, args }
}

/**
 * The overlay address of the k3s server a joining agent or server is pointed at: a member of
 * the decided control plane (init master, then the other servers) with an address, online ones
 * first, the init master first among equals. A stopped node is never chosen while another
 * server is up; when none is known to be up, the init master (k3s retries until it answers).
 */
function joinTarget (s: NetworkState, view: ClusterRolesView, self: string, online: ((author: string) => boolean) | undefined): string | undefined {
  const plane = view.members.filter((m) => m.author !== self && (m.role === 'init' || m.role === 'server'))
    .sort((a, b) => (a.role === 'init' ? 0 : 1) - (b.role === 'init' ? 0 : 1))
    .map((m) => ({ m, addr: leaseOf(s.ipam, m.author, 4)?.addr }))
    .filter((x): x is { m: typeof x.m, addr: string } => x.addr !== undefined)
  const up = online === undefined ? plane : plane.filter((x) => online(x.m.author))
  const pick = up[0] ?? plane[0]
  return pick?.addr
}
