import type { KubeClient } from '../../adapters/kube/client.js'
import { leaseOf } from '../../projections/ipam.js'
import { parseServiceAddress, type UpConfig } from '../config.js'
import type { McsAgent } from '../mcs/agent.js'
import type { LocalServices } from '../local-services.js'
import type { Feature, FeatureContext } from '../feature.js'

/**
 * The address pods reach this node at (EndpointSlice endpoints of imported services):
 * --service-address, else the overlay address, else POD_IP (deploy/agent.yaml; a host-network
 * pod's is the node's). Never loopback: the API server refuses it.
 */
export function serviceHost (config: UpConfig, overlay: string | undefined): string | undefined {
  if (config.serviceAddress !== undefined) return config.serviceAddress
  if (overlay !== undefined) return overlay
  const pod = process.env.POD_IP
  if (pod === undefined || pod === '') return undefined
  try {
    return parseServiceAddress(pod)
  } catch {
    return undefined
  }
}

/** The multi-cluster services agent (--kubeconfig) as a feature of the daemon. */
export class McsFeature implements Feature {
  readonly name = 'mcs'

  private constructor (readonly agent: McsAgent) {}

  /** `vpn`: whether this node has a VPN device (then its overlay address is the pods' way in). */
  static async start (ctx: FeatureContext, kube: KubeClient, services: LocalServices, vpn: boolean): Promise<McsFeature> {
    const { config, identity, log } = ctx
    if (!config.tun && serviceHost(config, undefined) === undefined) {
      // Said once, here: exports work, imports get their ServiceImport and Service but no
      // endpoints (never a loopback one, which the API server refuses).
      log.error('the MCS agent has no address pods reach this node at: imported services get no endpoints here. Without the TUN device there is no overlay address; give --service-address <ip>, or set POD_IP (the downward API, as in deploy/agent.yaml). Loopback cannot be used: the API server refuses it in an EndpointSlice.')
    }
    const { McsAgent } = await import('../mcs/agent.js')
    return new McsFeature(new McsAgent({
      kube,
      cluster: config.cluster,
      self: identity.authorHex,
      append: async (type, body) => await ctx.append(type, body),
      state: ctx.state,
      // Pods reach the node at --service-address, its overlay address (k3s --node-ip) or POD_IP.
      tunnels: {
        listen: async (svc, port) => {
          const host = serviceHost(config, vpn ? leaseOf(ctx.state().ipam, identity.authorHex, 4)?.addr : undefined)
          return host === undefined ? undefined : await services.importListener(svc, port, host)
        },
        close: async (svc, port) => { await services.closeImportListener(svc, port) }
      },
      log,
      now: ctx.now
    }))
  }

  async started (): Promise<void> { await this.agent.start() }
  onState (): void { this.agent.update() }
  status (): { mcs: Record<string, unknown> } { return { mcs: { ...this.agent.status() } } }
  async stop (): Promise<void> { await this.agent.stop() }
}

/**
 * With a Kubernetes cluster (--kubeconfig) and no --cluster, the cluster is named as MCS
 * (KEP-2149) says: its cluster.clusterset.k8s.io ClusterProperty, else the kube-system
 * namespace's uid. Returns the client and the configuration with that name.
 */
export async function connectKube (config: UpConfig, log: FeatureContext['log']): Promise<{ kube: KubeClient | undefined, config: UpConfig }> {
  if (config.kubeconfig === undefined) return { kube: undefined, config }
  const { createHttpKubeClient, loadKubeConfig } = await import('../../adapters/kube/http-client.js')
  const { clusterId } = await import('../../adapters/kube/client.js')
  const { ClusterName } = await import('../../log/bodies.js')
  const { WeftError } = await import('../../log/errors.js')
  const kube = createHttpKubeClient(loadKubeConfig(config.kubeconfig === 'in-cluster' ? {} : { kubeconfig: config.kubeconfig }))
  const id = await clusterId(kube)
  if (!config.clusterGiven) {
    if (!ClusterName.safeParse(id).success) {
      throw new WeftError('ERR_BAD_CONFIG', `the cluster id ${JSON.stringify(id)} (from the cluster.clusterset.k8s.io ClusterProperty) is not a DNS label; give --cluster <name>`)
    }
    return { kube, config: { ...config, cluster: id } }
  }
  if (id !== config.cluster && !/^[0-9a-f-]{36}$/.test(id)) {
    log.warn({ cluster: config.cluster, clusterProperty: id }, 'the cluster.clusterset.k8s.io ClusterProperty names this cluster differently from --cluster; Weft uses --cluster')
  }
  return { kube, config }
}
