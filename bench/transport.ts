/**
 * Transport bench (`npm run bench -- transport`): the raw throughput of one libp2p stream over
 * loopback TCP, before and after issue 11 replaced @libp2p/pnet, in ONE run:
 *   - plain_tcp: one TCP connection, no libp2p (the ceiling);
 *   - libp2p_unprotected: tcp + noise + yamux, no connection protector (what protection adds to);
 *   - libp2p_pnet: tcp + @libp2p/pnet (xsalsa20 WASM) + noise + yamux (before);
 *   - libp2p_weft: tcp + Weft's transport protector (node:crypto AES-256-GCM) + noise + yamux (after);
 * then the ratios weft/pnet, weft/unprotected, pnet/unprotected and each/plain_tcp.
 * Both ends run in this process (one JS thread), so a figure is the rate at which one core does
 * both the sending and the receiving work: what matters is the ratios, measured in the same run.
 * Configurations alternate over ROUNDS rounds (5) of SECONDS each (2 s; both can be set with
 * TRANSPORT_BENCH_ROUNDS / TRANSPORT_BENCH_SECONDS); each figure is the median round. CPU ms per MB
 * (this process, both ends) is reported too: on a shared machine it swings less than MB/s.
 * 64 KiB writes that wait for 'drain', as bench/vpn.ts's raw_libp2p.
 */
import '../src/net/polyfill.js'
import net from 'node:net'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { preSharedKey } from '@libp2p/pnet'
import type { ConnectionProtector, Stream } from '@libp2p/interface'
import { pnetSwarmKey } from '../src/log/token.js'
import { tokenTransportKeys } from '../src/net/transport-keys.js'
import { transportProtector } from '../src/net/transport-protector.js'
import { TEST_TOKEN } from '../test/support/fixtures.js'
import { cpuMs, now, progress, round } from './_lib.js'

const SECONDS = Number(process.env.TRANSPORT_BENCH_SECONDS ?? 2)
const ROUNDS = Number(process.env.TRANSPORT_BENCH_ROUNDS ?? 5)
const CHUNK = 64 * 1024
const PROTOCOL = '/weft-bench/transport/1.0.0'

function figure (metric: string, value: number, unit: string, extra: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ bench: 'transport', metric, value: round(value), unit, target: null, ...extra }) + '\n')
}

interface Sample { mbps: number, cpuMsPerMB: number }
type Transfer = () => Promise<Sample>

function sample (bytes: number, ms: number, cpu: number): Sample {
  const mb = bytes / 1e6
  return { mbps: mb / (ms / 1000), cpuMsPerMB: cpu / mb }
}

async function plainTcp (): Promise<{ transfer: Transfer, stop: () => Promise<void> }> {
  let onDone: (bytes: number) => void = () => {}
  const server = net.createServer((socket) => {
    let bytes = 0
    socket.on('data', (d) => { bytes += d.byteLength })
    socket.on('end', () => { onDone(bytes); socket.end() })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  const chunk = Buffer.alloc(CHUNK, 7)
  const transfer: Transfer = async () => {
    const socket = net.connect(port, '127.0.0.1')
    await new Promise<void>((resolve) => socket.once('connect', resolve))
    const received = new Promise<number>((resolve) => { onDone = resolve })
    const t0 = now()
    const c0 = cpuMs()
    const deadline = t0 + SECONDS * 1000
    while (now() < deadline) {
      if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve))
    }
    socket.end()
    const bytes = await received
    return sample(bytes, now() - t0, cpuMs() - c0)
  }
  return { transfer, stop: async () => { await new Promise((resolve) => server.close(resolve)) } }
}

async function node (protector: (() => ConnectionProtector) | undefined): Promise<Libp2p> {
  return await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    ...(protector !== undefined ? { connectionProtector: protector } : {}),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
}

function bytesOf (data: Uint8Array | { byteLength: number }): number {
  return data.byteLength
}

async function libp2pPair (protector: () => (() => ConnectionProtector) | undefined): Promise<{ transfer: Transfer, stop: () => Promise<void> }> {
  const a = await node(protector())
  const b = await node(protector())
  let onDone: (bytes: number) => void = () => {}
  await b.handle(PROTOCOL, (stream: Stream) => {
    let bytes = 0
    stream.addEventListener('message', (evt) => { bytes += bytesOf(evt.data) })
    stream.addEventListener('end', () => { onDone(bytes); void stream.close().catch(() => {}) }, { once: true })
  })
  const conn = await a.dial(b.getMultiaddrs()[0] as never)
  const chunk = new Uint8Array(CHUNK).fill(7)
  const transfer: Transfer = async () => {
    const stream = await conn.newStream(PROTOCOL)
    const received = new Promise<number>((resolve) => { onDone = resolve })
    const t0 = now()
    const c0 = cpuMs()
    const deadline = t0 + SECONDS * 1000
    while (now() < deadline) {
      if (!stream.send(chunk)) await drained(stream)
    }
    await stream.close()
    const bytes = await received
    return sample(bytes, now() - t0, cpuMs() - c0)
  }
  return { transfer, stop: async () => { await a.stop(); await b.stop() } }
}

/**
 * Wait for 'drain' after send() said no. Not `stream.onDrain()`: in this libp2p version its
 * promise stays resolved after the first drain, so a writer awaiting it never waits again (it
 * queued ~700 MB in 200 ms here).
 */
async function drained (stream: Stream): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onClose = (): void => { reject(new Error('stream closed while waiting for drain')) }
    stream.addEventListener('drain', () => { stream.removeEventListener('close', onClose); resolve() }, { once: true })
    stream.addEventListener('close', onClose, { once: true })
  })
}

const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number

export async function run (): Promise<void> {
  const configs: Record<string, () => Promise<{ transfer: Transfer, stop: () => Promise<void> }>> = {
    plain_tcp: plainTcp,
    libp2p_unprotected: async () => await libp2pPair(() => undefined),
    libp2p_pnet: async () => await libp2pPair(() => preSharedKey({ psk: pnetSwarmKey(TEST_TOKEN) })),
    libp2p_weft: async () => await libp2pPair(() => transportProtector({ keys: tokenTransportKeys(TEST_TOKEN) }))
  }
  const runs: Record<string, { transfer: Transfer, stop: () => Promise<void> }> = {}
  for (const [name, start] of Object.entries(configs)) runs[name] = await start()
  const samples: Record<string, Sample[]> = Object.fromEntries(Object.keys(configs).map((n) => [n, []]))
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, c] of Object.entries(runs)) {
      progress(`round ${r + 1}/${ROUNDS}: ${name}`)
      const s = await c.transfer()
      samples[name]?.push(s)
      progress(`  ${s.mbps.toFixed(0)} MB/s, ${s.cpuMsPerMB.toFixed(2)} CPU ms/MB`)
    }
  }
  for (const c of Object.values(runs)) await c.stop()
  const mbps: Record<string, number> = {}
  const cpu: Record<string, number> = {}
  for (const [name, ss] of Object.entries(samples)) {
    mbps[name] = median(ss.map((s) => s.mbps))
    cpu[name] = median(ss.map((s) => s.cpuMsPerMB))
    figure(`${name}_mbps`, mbps[name], 'MB/s', { rounds: ss.map((s) => round(s.mbps)), seconds: SECONDS })
    figure(`${name}_cpu_ms_per_mb`, cpu[name], 'CPU ms/MB', { rounds: ss.map((s) => round(s.cpuMsPerMB)), note: 'both ends; steadier than MB/s on a shared machine' })
  }
  // Throughput ratios (higher is better) and CPU-cost ratios (lower is better), same run. The
  // value is the median of per-round ratios: within a round the configurations run back to back,
  // so a ratio pairs figures taken under the same load from other processes.
  const paired = (a: string, b: string, f: (s: Sample) => number): number => {
    const xs = samples[a] as Sample[]
    const ys = samples[b] as Sample[]
    return median(xs.map((x, i) => f(x) / f(ys[i] as Sample)))
  }
  const ratio = (a: string, b: string, note: string): void => {
    figure(`${a}_over_${b}`, paired(a, b, (s) => s.mbps), 'ratio', {
      note,
      cpuCostRatio: round(paired(a, b, (s) => s.cpuMsPerMB)),
      ratioOfMedians: round((mbps[a] as number) / (mbps[b] as number))
    })
  }
  ratio('libp2p_weft', 'libp2p_pnet', 'after / before issue 11')
  ratio('libp2p_weft', 'libp2p_unprotected', 'what the Weft protector keeps of the unprotected stack')
  ratio('libp2p_pnet', 'libp2p_unprotected', 'what pnet kept of the unprotected stack')
  ratio('libp2p_weft', 'plain_tcp', 'the whole libp2p stack with the Weft protector vs plain TCP')
  ratio('libp2p_pnet', 'plain_tcp', 'the whole libp2p stack with pnet vs plain TCP')
}
