/**
 * A stand-in for a public libp2p node (an IPFS bootstrap node) in the simulated internet of
 * netns-reach.test.ts and bench/reach.ts: plain js-libp2p (tcp, noise, yamux), a DHT server on
 * the public `/ipfs/kad/1.0.0` protocol, a circuit-relay-v2 hop with the library's default limits
 * (2 min, 128 KiB per relayed connection), identify and ping. Knows nothing of Weft.
 *
 *   node --import tsx test/system/public-node.ts <seed byte> <listen multiaddr> <announce multiaddr> [bootstrap multiaddr ...]
 *
 * Prints `ready <peer id>` once listening. The lab's public segment is 198.18.0.0/15, which
 * libp2p calls private; real public nodes have real public addresses, so here that range is made
 * public (what `weft up --public-ranges` does).
 */
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { kadDHT, removePrivateAddressesMapper } from '@libp2p/kad-dht'
import { circuitRelayServer } from '@libp2p/circuit-relay-v2'
import { bootstrap } from '@libp2p/bootstrap'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import '../../src/net/polyfill.js'
import { treatAsPublic } from '../../src/net/public-ranges.js'

export function publicSeed (n: number): Uint8Array {
  return new Uint8Array(32).fill(0xa0 + n)
}

async function main (): Promise<void> {
  const [seedText, listen, announce, ...boot] = process.argv.slice(2)
  if (seedText === undefined || listen === undefined || announce === undefined) throw new Error('usage: public-node.ts <seed byte> <listen multiaddr> <announce multiaddr> [bootstrap ...]')
  treatAsPublic(['198.18.0.0/15'])
  const node = await createLibp2p({
    privateKey: await generateKeyPairFromSeed('Ed25519', publicSeed(Number(seedText))),
    // Announced as is: without AutoNAT (below) libp2p would never confirm it.
    addresses: { listen: [listen], appendAnnounce: [announce] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: boot.length > 0 ? [bootstrap({ list: boot, timeout: 0 })] : [],
    connectionManager: { inboundConnectionThreshold: 1_000 },
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({ protocol: '/ipfs/kad/1.0.0', clientMode: false, peerInfoMapper: removePrivateAddressesMapper }),
      relay: circuitRelayServer()
      // No AutoNAT: v1 closes the connection a dial-back reused, which cuts clients off
      // (docs/mesh.md); real bootstrap nodes have confirmed public addresses anyway.
    }
  })
  for (const b of boot) void node.dial((await import('@multiformats/multiaddr')).multiaddr(b)).catch(() => {})
  process.stdout.write(`ready ${node.peerId.toString()}\n`)
  const stop = (): void => { void Promise.resolve(node.stop()).finally(() => process.exit(0)) }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

if (process.argv[1]?.endsWith('public-node.ts') === true) void main()
