import { arch, platform } from 'node:os'
import type { Logger } from 'pino'
import type { Replica } from '../adapters/replica.js'
import type { NodeIdentity } from '../log/identity.js'
import type { Mesh } from '../net/mesh.js'
import { planAgent, type DesiredNode } from '../projections/agent-plan.js'
import type { ReplicaReducers } from '../projections/reducers.js'
import type { UpConfig } from './config.js'
import { weftVersion } from './version.js'

export interface NodeAgentOptions {
  config: UpConfig
  identity: NodeIdentity
  replica: Replica<ReplicaReducers>
  mesh: Mesh
  log: Logger
  now: () => number
  startedAt: number
  /** Capabilities of the running features (see Feature.caps). */
  caps: () => string[]
  /** This node's X25519 seal key (network.rotate). */
  seal: Uint8Array
}

/**
 * The node agent: after every change it appends the events that bring the log to what this node
 * wants (its join, role, routes, addresses: projections/agent-plan.ts), one run at a time.
 */
export class NodeAgent {
  private planning = false
  private replan = false
  private lastBlocked: string | undefined
  /** First start: the join waits for a first sync (see holdJoin); open once it may go. */
  private joinGateOpen = false
  private joinTimer: NodeJS.Timeout | undefined
  private stopped = false

  constructor (private readonly opts: NodeAgentOptions) {}

  desired (): DesiredNode {
    const { config } = this.opts
    return {
      hostname: config.hostname,
      cluster: config.cluster,
      role: config.role,
      os: platform(),
      arch: arch(),
      version: weftVersion(),
      addrs: advertisedAddrs(this.opts.mesh.listenAddrs()).slice(0, 16),
      caps: this.opts.caps(),
      advertise: config.advertise,
      seal: this.opts.seal
    }
  }

  /** Run the agent after a change; one run at a time, and once more if changes came meanwhile. */
  schedule (): void {
    if (this.stopped) return
    if (this.planning) { this.replan = true; return }
    this.planning = true
    setImmediate(() => {
      void this.run().finally(() => {
        this.planning = false
        if (this.replan) { this.replan = false; this.schedule() }
      })
    })
  }

  stop (): void {
    this.stopped = true
    if (this.joinTimer !== undefined) clearTimeout(this.joinTimer)
  }

  private async run (): Promise<void> {
    const { replica, identity, log, now } = this.opts
    // A handful of steps at most; the bound guards against a plan that never settles.
    for (let i = 0; i < 8 && !this.stopped; i++) {
      const plan = planAgent(replica.states().network, identity.authorHex, this.desired())
      if (plan.blocked !== undefined && plan.blocked !== this.lastBlocked) log.warn({ reason: plan.blocked }, 'node agent is waiting')
      this.lastBlocked = plan.blocked
      if (plan.steps.length === 0) return
      if (plan.steps[0]?.type === 'node.join' && this.holdJoin()) return
      try {
        for (const step of plan.steps) {
          const ev = await replica.append(step.type, step.body as never, now())
          log.info({ type: step.type, event: ev.idHex.slice(0, 16), why: step.why, ...('addr' in step.body ? { addr: step.body.addr } : {}), ...('cidr' in step.body ? { cidr: step.body.cidr } : {}) }, 'node agent appended an event')
        }
      } catch (err) {
        log.error({ err: (err as Error).message }, 'node agent could not append')
        return
      }
    }
  }

  /**
   * A node that is not a member yet and may reach peers (configured, mDNS, or authors already in
   * its log) writes its join only after a first completed sync, so the join follows what exists
   * (its lamport is above the network's, and it sees the decisions already made). After
   * `--join-wait` without one, it joins alone and says so. Checked again every 200 ms meanwhile:
   * a sync that brings nothing new changes no state, so nothing else would wake the agent.
   */
  private holdJoin (): boolean {
    if (this.joinGateOpen) return false
    const { config: c, replica, identity, mesh, log } = this.opts
    const reachable = c.peers.length > 0 || c.mdns || replica.log.authors().some((a) => a !== identity.authorHex)
    const synced = mesh.sync.stats.lastRoundAt !== undefined
    const waited = this.opts.now() - this.opts.startedAt
    if (!reachable || synced || waited >= c.joinWaitMs) {
      this.joinGateOpen = true
      if (synced) log.info({ waitedMs: waited }, 'first sync with a peer done: joining the network')
      else log.warn({ waitedMs: waited, peers: c.peers.length, mdns: c.mdns }, reachable ? 'no peer synced with this node within --join-wait: joining the network alone' : 'no peer to reach (no --peer, mDNS off, none known): joining the network alone')
      return false
    }
    if (this.joinTimer === undefined) {
      this.joinTimer = setTimeout(() => { this.joinTimer = undefined; this.schedule() }, Math.min(200, c.joinWaitMs - waited))
      this.joinTimer.unref()
    }
    return true
  }
}

/** Loopback addresses are useless to other machines; keep them only when there is nothing else (tests). */
export function advertisedAddrs (addrs: string[]): string[] {
  const outside = addrs.filter((a) => !a.startsWith('/ip4/127.') && !a.startsWith('/ip6/::1/'))
  return outside.length > 0 ? outside : addrs
}
