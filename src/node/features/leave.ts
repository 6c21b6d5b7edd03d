import { API_PREFIX, LeaveRequestSchema, type LeaveResponse } from '../../adapters/api-types.js'
import { formatZodIssues } from '../../log/event.js'
import type { ApiRoute, Feature, FeatureContext } from '../feature.js'

/** How long a leaving node waits for its peers to take its node.leave before it stops. */
const LEAVE_PUSH_MS = 5_000

const apiError = (status: number, code: string, message: string): Error => Object.assign(new Error(message), { status, code })

/**
 * POST /node/leave (`weft node leave`): this node leaves the network for good (node.leave: the
 * others drop its membership, address, name and vote), pushes that to its peers, then the
 * daemon stops (`left`). Started again on the same data dir, it joins again.
 */
export class LeaveFeature implements Feature {
  readonly name = 'leave'
  private leaving = false

  /** `stopAgent`: no join again from the node agent; `left`: stop the daemon. */
  constructor (private readonly ctx: FeatureContext, private readonly stopAgent: () => void, private readonly left: () => void) {}

  routes (): ApiRoute[] {
    return [[`${API_PREFIX}/node/leave`, { POST: async (body) => await this.leave(body) }]]
  }

  async leave (body: unknown): Promise<LeaveResponse> {
    const { ctx } = this
    const req = LeaveRequestSchema.safeParse(body ?? {})
    if (!req.success) throw apiError(400, 'bad_request', formatZodIssues(req.error))
    if (!ctx.state().members.active.has(ctx.identity.authorHex)) {
      throw apiError(409, 'not_member', 'this node is not a member of the network (it has not joined, or has left already)')
    }
    if (this.leaving) throw apiError(409, 'conflict', 'this node is already leaving')
    this.leaving = true
    this.stopAgent()
    const ev = await ctx.append('node.leave', req.data.reason !== undefined ? { reason: req.data.reason } : {})
    ctx.log.info({ event: ev.idHex.slice(0, 16), reason: req.data.reason }, 'this node left the network')
    // Gossip already carries it; a sync round with every connected peer makes sure they have it.
    const peers = ctx.mesh.host.getPeers().length
    await Promise.race([ctx.mesh.syncAll().catch(() => {}), new Promise((resolve) => setTimeout(resolve, LEAVE_PUSH_MS).unref())])
    setImmediate(this.left)
    return { event: ev.idHex, pushedTo: peers }
  }

  async stop (): Promise<void> {}
}
