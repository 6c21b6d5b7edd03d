import { describe, expect, it } from 'vitest'
import { TopicValidatorResult, type GossipSub } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { encode } from 'cborg'
import { Ed25519Verifier } from '../../src/log/identity.js'
import { EventGossip, GOSSIP_RATE } from '../../src/net/event-gossip.js'
import { replicaPort } from '../../src/net/replica-port.js'
import { silentLogger } from '../../src/net/mesh-logger.js'
import { identity, joinBody, memoryReplica } from '../support/fixtures.js'

type Validator = (peer: PeerId, msg: { data: Uint8Array }) => Promise<TopicValidatorResult>

/** EventGossip over a stand-in pubsub that only records the validator: the verdicts without a network. */
async function setup (clock = { t: 0 }): Promise<{ validate: (data: Uint8Array) => Promise<TopicValidatorResult>, gossip: EventGossip, parked: PeerId[] }> {
  const validators = new Map<string, Validator>()
  const pubsub = { topicValidators: validators, subscribe () {}, unsubscribe () {}, publish: async () => ({ recipients: [] }) } as unknown as GossipSub
  const replica = await memoryReplica(5)
  const parked: PeerId[] = []
  const gossip = new EventGossip({ pubsub, topic: 't', replica: replicaPort(replica), verifier: new Ed25519Verifier(), log: silentLogger, onMissingParents: (p) => parked.push(p), now: () => clock.t })
  gossip.start()
  const peer = peerIdFromString(identity(9).peerId)
  const v = validators.get('t') as Validator
  return { validate: async (data) => await v(peer, { data }), gossip, parked }
}

describe('gossip validator verdicts', () => {
  it('accepts a new event, ignores its duplicate, rejects forgeries and garbage', async () => {
    const { validate, gossip } = await setup()
    const src = await memoryReplica(1)
    const e = await src.append('node.join', joinBody('a'), 1)
    expect(await validate(e.envelope)).toBe(TopicValidatorResult.Accept)
    expect(await validate(e.envelope)).toBe(TopicValidatorResult.Ignore)
    expect(await validate(encode([e.bytes, new Uint8Array(64)]))).toBe(TopicValidatorResult.Reject)
    expect(await validate(new Uint8Array([0xff, 0x00]))).toBe(TopicValidatorResult.Reject)
    expect(await validate(new Uint8Array(70 * 1024))).toBe(TopicValidatorResult.Reject)
    expect(gossip.stats).toMatchObject({ accepted: 1, ignored: 1, rejected: 3 })
    // The reasons, for GET /metrics: a forged signature, bytes that are no envelope, an oversized message.
    const outcomes = Object.fromEntries(gossip.outcomes)
    expect(outcomes).toMatchObject({ accepted: 1, 'ignored/duplicate': 1, 'rejected/too_large': 1 })
    expect(Object.keys(outcomes).filter((k) => k.startsWith('rejected/ERR_'))).toHaveLength(2)
  })

  it('ignores an event whose parent is missing and asks the sender for it', async () => {
    const { validate, parked, gossip } = await setup()
    const src = await memoryReplica(1)
    await src.append('node.join', joinBody('a'), 1)
    const child = await src.append('ip.claim', { addr: '10.1.0.5' }, 2)
    expect(await validate(child.envelope)).toBe(TopicValidatorResult.Ignore)
    expect(parked).toHaveLength(1)
    expect(Object.fromEntries(gossip.outcomes)).toEqual({ 'ignored/parked': 1 })
  })

  it('limits how many messages one peer gets validated, without penalty', async () => {
    const clock = { t: 0 }
    const { validate, gossip } = await setup(clock)
    const junk = new Uint8Array([1])
    for (let i = 0; i < GOSSIP_RATE.burst; i++) await validate(junk)
    expect(await validate(junk)).toBe(TopicValidatorResult.Ignore)
    expect(gossip.stats.rateLimited).toBe(1)
    expect(gossip.outcomes.get('ignored/rate_limited')).toBe(1)
    clock.t += 1000
    expect(await validate(junk)).toBe(TopicValidatorResult.Reject)
  })
})
