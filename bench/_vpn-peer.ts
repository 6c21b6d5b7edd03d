/**
 * Helper process of the VPN bench (`bench/vpn.ts`), run inside a network namespace with
 * `node --import tsx bench/_vpn-peer.ts …`. It is a libp2p host built exactly like a weft node's
 * (`createHost` from src/net/host.ts: tcp, the transport protection from the token, noise, yamux, and the same
 * services), but with no log and no VPN: the baselines the overlay is compared with.
 *
 *   server <token> <port> <seed>
 *     listens on /ip4/0.0.0.0/tcp/<port>, prints `ready <peerId>` and serves:
 *       RAW:   one stream; counts what arrives until the writer closes, then answers
 *              {"bytes","ms","cpuMs"} (from the first byte to the end; cpuMs is this
 *              process's CPU time meanwhile) and closes.
 *       EDGE:  one stream per message (edgevpn-style); counts bytes and streams.
 *       STATS: answers the EDGE counters {"bytes","messages","ms"} and resets them.
 *   client <token> <multiaddr> raw <seconds>
 *     one stream, 64 KiB writes for <seconds> s, waiting for 'drain' whenever send() says so.
 *   client <token> <multiaddr> edge <seconds> <concurrency> <size>
 *     <concurrency> loops, each opening a new stream per <size>-byte message (optimistic
 *     protocol negotiation: the protocol name travels with the data, as go-libp2p's lazy
 *     multistream does), writing it and closing, for <seconds> s; then asks STATS.
 * Clients print one JSON line on stdout.
 */
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { createHost } from '../src/net/host.js'
import { identityFromSeed } from '../src/log/identity.js'
import { networkIdBytes, parseToken } from '../src/log/token.js'

export const RAW = '/weft-bench/raw/1.0.0'
export const EDGE = '/weft-bench/edge/1.0.0'
export const STATS = '/weft-bench/stats/1.0.0'

const streamLimits = { maxInboundStreams: 4096, maxOutboundStreams: 4096 }

function seed (n: number): Uint8Array {
  const s = new Uint8Array(32).fill(0x5a)
  s[0] = n & 255
  return s
}

function chunkOf (evt: { data: Uint8Array | { subarray: () => Uint8Array } }): Uint8Array {
  return evt.data instanceof Uint8Array ? evt.data : evt.data.subarray()
}

/** Resolves with the peer's one-line JSON answer (events may have fired before we listen: a line ends it). */
async function answer (stream: Stream): Promise<string> {
  return await new Promise((resolve, reject) => {
    setTimeout(() => { reject(new Error('no answer within 20 s')) }, 20_000).unref()
    let text = ''
    stream.addEventListener('message', (evt) => {
      text += Buffer.from(chunkOf(evt)).toString('utf8')
      if (text.includes('\n')) resolve(text.trim())
    })
    stream.addEventListener('close', (evt) => { reject(evt.error ?? new Error('stream closed without an answer')) }, { once: true })
  })
}

async function drain (stream: Stream): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onClose = (): void => { reject(new Error('stream closed while waiting for drain')) }
    stream.addEventListener('drain', () => { stream.removeEventListener('close', onClose); resolve() }, { once: true })
    stream.addEventListener('close', onClose, { once: true })
  })
}

async function server (tokenText: string, port: string, seedN: string): Promise<void> {
  const token = parseToken(tokenText)
  const host = await createHost({ token, net: networkIdBytes(token), identity: identityFromSeed(seed(Number(seedN))), listen: [`/ip4/0.0.0.0/tcp/${port}`], mdns: false, relay: false })
  let edge = { bytes: 0, messages: 0, first: 0, last: 0 }
  await host.handle(RAW, (stream) => {
    let bytes = 0
    let t0 = 0
    let cpu0 = process.cpuUsage()
    stream.addEventListener('message', (evt) => {
      if (bytes === 0) { t0 = performance.now(); cpu0 = process.cpuUsage() }
      bytes += chunkOf(evt).byteLength
    })
    stream.addEventListener('remoteCloseWrite', () => {
      const ms = performance.now() - t0
      const cpu = process.cpuUsage(cpu0)
      stream.send(Buffer.from(JSON.stringify({ bytes, ms, cpuMs: (cpu.user + cpu.system) / 1000 }) + '\n'))
      void stream.close().catch(() => {})
    }, { once: true })
  }, streamLimits)
  await host.handle(EDGE, (stream) => {
    stream.addEventListener('message', (evt) => {
      const t = performance.now()
      if (edge.messages === 0 && edge.bytes === 0) edge.first = t
      edge.last = t
      edge.bytes += chunkOf(evt).byteLength
    })
    stream.addEventListener('remoteCloseWrite', () => {
      edge.messages++
      void stream.close().catch(() => {})
    }, { once: true })
  }, streamLimits)
  await host.handle(STATS, (stream) => {
    stream.send(Buffer.from(JSON.stringify({ bytes: edge.bytes, messages: edge.messages, ms: edge.last - edge.first }) + '\n'))
    edge = { bytes: 0, messages: 0, first: 0, last: 0 }
    void stream.close().catch(() => {})
  }, streamLimits)
  process.stdout.write(`ready ${host.peerId.toString()}\n`)
  const stop = (): void => { void Promise.resolve(host.stop()).finally(() => process.exit(0)) }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

async function client (tokenText: string, addr: string, mode: string, seconds: string, concurrency = '16', size = '1400'): Promise<void> {
  const token = parseToken(tokenText)
  const host = await createHost({ token, net: networkIdBytes(token), identity: identityFromSeed(seed(200)), listen: [], mdns: false, relay: false })
  const ma = multiaddr(addr)
  const conn = await host.dial(ma)
  await host.handle([EDGE, RAW, STATS], () => {}, streamLimits) // raises this side's outbound stream limits
  const deadline = performance.now() + Number(seconds) * 1000
  if (mode === 'raw') {
    const stream = await conn.newStream(RAW, { signal: AbortSignal.timeout(10_000) })
    const reply = answer(stream)
    const chunk = new Uint8Array(64 * 1024).fill(7)
    let sent = 0
    const t0 = performance.now()
    const cpu0 = process.cpuUsage()
    while (performance.now() < deadline) {
      sent += chunk.byteLength
      if (!stream.send(chunk)) await drain(stream)
    }
    await stream.close()
    const r = JSON.parse(await reply) as { bytes: number, ms: number, cpuMs: number }
    const cpu = process.cpuUsage(cpu0)
    process.stdout.write(JSON.stringify({ mode, sent, senderMs: performance.now() - t0, senderCpuMs: (cpu.user + cpu.system) / 1000, bytes: r.bytes, ms: r.ms, receiverCpuMs: r.cpuMs }) + '\n')
  } else if (mode === 'edge') {
    const msg = new Uint8Array(Number(size)).fill(9)
    let sent = 0
    let failed = 0
    const worker = async (): Promise<void> => {
      while (performance.now() < deadline) {
        try {
          const s = await conn.newStream(EDGE, { negotiateFully: false, signal: AbortSignal.timeout(10_000) })
          s.send(msg)
          await s.close()
          sent++
        } catch {
          failed++
        }
      }
    }
    const t0 = performance.now()
    await Promise.all(Array.from({ length: Number(concurrency) }, worker))
    const senderMs = performance.now() - t0
    const stats = await conn.newStream(STATS, { signal: AbortSignal.timeout(10_000) })
    const r = JSON.parse(await answer(stats)) as { bytes: number, messages: number, ms: number }
    process.stdout.write(JSON.stringify({ mode, sentMessages: sent, failed, senderMs, concurrency: Number(concurrency), size: Number(size), ...r }) + '\n')
  } else {
    throw new Error(`unknown client mode ${mode}`)
  }
  await host.stop()
  process.exit(0)
}

const [role, ...args] = process.argv.slice(2)
if (role === 'server') await server(args[0] as string, args[1] as string, args[2] ?? '1')
else if (role === 'client') await client(...(args as [string, string, string, string, string?, string?]))
else {
  process.stderr.write('usage: _vpn-peer.ts server <token> <port> <seed> | client <token> <multiaddr> raw|edge <seconds> [concurrency] [size]\n')
  process.exit(2)
}
