import { MemoryLevel } from 'memory-level'
import { identityFromSeed, type NodeIdentity } from '../../src/log/identity.js'
import { networkIdBytes, type NetworkToken } from '../../src/log/token.js'
import type { EventDb } from '../../src/log/store.js'
import { Replica } from '../../src/adapters/replica.js'
import { members } from '../../src/projections/members.js'
import type { BodyOf } from '../../src/log/bodies.js'

/** The network owner of the test token (seed 32 × 0x0f): tests cosign administrative events with it. */
export const TEST_OWNER: NodeIdentity = identityFromSeed(new Uint8Array(32).fill(0x0f))
export const TEST_TOKEN: NetworkToken = { secret: new Uint8Array(32).fill(7), owner: TEST_OWNER.publicKey, epoch: 0 }
export const NET = networkIdBytes(TEST_TOKEN)

export function identity (n: number): NodeIdentity {
  return identityFromSeed(new Uint8Array(32).fill(n + 1))
}

export function memoryDb (): EventDb {
  return new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as EventDb
}

export const reducers = { members }

export async function memoryReplica (n: number, db: EventDb = memoryDb()): Promise<Replica<typeof reducers>> {
  return await Replica.open({ db, net: NET, reducers, signer: identity(n), sync: false })
}

export function joinBody (hostname: string, cluster = 'default', role: BodyOf<'node.join'>['role'] = 'auto'): BodyOf<'node.join'> {
  return { hostname, cluster, os: 'linux', arch: 'amd64', version: '0.1.0', addrs: [], caps: [], role }
}
