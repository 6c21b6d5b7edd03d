/**
 * The VPN's direct path (src/net/direct-path.ts) against members and strangers that break its
 * rules on purpose: unknown, replayed and expired sessions, tampered frames, floods of silent
 * connections. Real TCP sockets on loopback.
 */
import { connect, createServer, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { DIRECT_LIMITS, DirectListener, decodeOffer, dialDirect, encodeOffer, type DirectOffer } from '../../src/net/direct-path.js'
import { encodeFrames } from '../../src/net/packet-frames.js'
import { FrameSealer } from '../../src/net/transport-frames.js'
import { waitFor } from './support.js'

const silent = { debug () {}, info () {}, warn () {}, error () {} }

/** Whether this host can listen on IPv6 at all (some CI containers cannot). */
const ipv6 = await new Promise<boolean>((resolve) => {
  const s = createServer()
  s.once('error', () => { resolve(false) })
  s.listen({ host: '::1', port: 0 }, () => { s.close(() => { resolve(true) }) })
})
if (!ipv6) console.log('[skip] direct path on an IPv6 wildcard: this host cannot listen on IPv6')

function frame (n: number): Uint8Array {
  const p = new Uint8Array(10 + 20 + n)
  p[10] = 0x45
  for (let i = 30; i < p.byteLength; i++) p[i] = i & 0xff
  return p
}

describe('direct path', () => {
  const listeners: DirectListener[] = []
  const sockets: Socket[] = []
  afterEach(async () => {
    for (const s of sockets) s.destroy()
    sockets.length = 0
    await Promise.all(listeners.map(async (l) => { await l.close() }))
    listeners.length = 0
  })

  async function listen (clock = { t: 0 }): Promise<{ l: DirectListener, got: Array<{ author: string, frames: Uint8Array[] }>, malformed: { n: number } }> {
    const got: Array<{ author: string, frames: Uint8Array[] }> = []
    const malformed = { n: 0 }
    const l = await DirectListener.listen({ hosts: ['127.0.0.1'], port: 0, log: silent, now: () => clock.t, deliver: (author, frames) => { got.push({ author, frames: frames.map((f) => f.slice()) }) }, malformed: () => { malformed.n++ } })
    listeners.push(l)
    return { l, got, malformed }
  }

  /** A raw connection that sends `bytes` and resolves when the listener closes it (or after `ms`). */
  async function raw (port: number, bytes: Uint8Array[]): Promise<'closed'> {
    const s = connect({ host: '127.0.0.1', port })
    sockets.push(s)
    s.on('error', () => {})
    await new Promise((resolve) => s.once('connect', resolve))
    for (const b of bytes) s.write(b)
    await new Promise((resolve) => s.once('close', resolve))
    return 'closed'
  }

  it('encodes and decodes offers, and refuses malformed ones', () => {
    const o: DirectOffer = { port: 40123, session: new Uint8Array(16).fill(7), key: new Uint8Array(32).fill(9) }
    expect(decodeOffer(encodeOffer(o))).toEqual(o)
    expect(() => decodeOffer(new Uint8Array(49))).toThrow(/50 bytes, got 49/)
    expect(() => decodeOffer(encodeOffer({ ...o, port: 0 }))).toThrow(/port 0/)
  })

  it('delivers the frames of a session to the member it was offered to, in order', async () => {
    const { l, got } = await listen()
    const ch = await dialDirect('127.0.0.1', l.offer('aa'.repeat(32)), AbortSignal.timeout(5_000))
    ch.send(encodeFrames([frame(100), frame(60_000)]))
    ch.send(encodeFrames([frame(5)]))
    await waitFor(() => got.reduce((n, g) => n + g.frames.length, 0) === 3, 'three frames')
    expect(got.every((g) => g.author === 'aa'.repeat(32))).toBe(true)
    expect(got.flatMap((g) => g.frames).map((f) => f.byteLength)).toEqual([130, 60_030, 35])
    expect(l.stats.connections).toBe(1)
    ch.close()
  })

  it('after its first frame a connection is read by descriptor (Linux): later frames, a tampered frame and the peer closing all still do what they should', async () => {
    const { l, got, malformed } = await listen()
    const offer = l.offer('ee'.repeat(32))
    const sealer = new FrameSealer(offer.key)
    const s = connect({ host: '127.0.0.1', port: l.port })
    sockets.push(s)
    s.on('error', () => {})
    await new Promise((resolve) => s.once('connect', resolve))
    s.write(offer.session)
    for (const f of sealer.seal(encodeFrames([frame(10)]))) s.write(f)
    await waitFor(() => got.length === 1, 'the first delivery')
    if (process.platform === 'linux' && process.env.WEFT_SOCKET_READ !== 'node') expect(l.stats.readByDescriptor).toBe(1)
    // Frames split across writes (a read may end anywhere in a frame) and a large one.
    const [big] = sealer.seal(encodeFrames([frame(60_000)]))
    s.write((big as Uint8Array).subarray(0, 7))
    s.write((big as Uint8Array).subarray(7))
    await waitFor(() => got.length === 2, 'the large frame')
    expect(got[1]?.frames[0]?.byteLength).toBe(60_030)
    const [f3] = sealer.seal(encodeFrames([frame(10)]))
    const bad = (f3 as Uint8Array).slice()
    bad[9] = (bad[9] as number) ^ 1
    s.write(bad)
    await new Promise((resolve) => s.once('close', resolve))
    expect(malformed.n).toBe(1)
    expect(got).toHaveLength(2)
    await waitFor(() => l.stats.connections === 0 && l.stats.readByDescriptor === 0, 'the connection accounted as gone')
    // A peer that just closes is accounted as gone too.
    const ch = await dialDirect('127.0.0.1', l.offer('ee'.repeat(32)), AbortSignal.timeout(5_000))
    ch.send(encodeFrames([frame(5)]))
    await waitFor(() => got.length === 3, 'a frame on the second connection')
    expect(l.stats.connections).toBe(1)
    ch.close()
    await waitFor(() => l.stats.connections === 0 && l.stats.readByDescriptor === 0, 'the closed connection accounted as gone')
  })

  it.skipIf(!ipv6)('listens on IPv4 and IPv6 wildcards together, on one port', async () => {
    const l = await DirectListener.listen({ hosts: ['0.0.0.0', '::'], port: 0, log: silent, now: () => 0, deliver: () => {}, malformed: () => {} })
    listeners.push(l)
    expect(l.port).toBeGreaterThan(0)
  })

  it('closes a connection that names an unknown session, without delivering anything', async () => {
    const { l, got } = await listen()
    l.offer('aa'.repeat(32))
    const sealer = new FrameSealer(new Uint8Array(32))
    expect(await raw(l.port, [new Uint8Array(16).fill(1), ...sealer.seal(encodeFrames([frame(10)]))])).toBe('closed')
    expect(got).toEqual([])
  })

  it('a session is used once: a replayed connection is closed and delivers nothing', async () => {
    const { l, got } = await listen()
    const offer = l.offer('bb'.repeat(32))
    const recorded = [offer.session, ...new FrameSealer(offer.key).seal(encodeFrames([frame(10)]))]
    const first = connect({ host: '127.0.0.1', port: l.port })
    sockets.push(first)
    await new Promise((resolve) => first.once('connect', resolve))
    for (const b of recorded) first.write(b)
    await waitFor(() => got.length === 1, 'the first delivery')
    expect(await raw(l.port, recorded)).toBe('closed')
    expect(got).toHaveLength(1)
  })

  it('an offer expires unused', async () => {
    const clock = { t: 0 }
    const { l, got } = await listen(clock)
    const offer = l.offer('cc'.repeat(32))
    clock.t += DIRECT_LIMITS.sessionTtlMs
    expect(await raw(l.port, [offer.session, ...new FrameSealer(offer.key).seal(encodeFrames([frame(10)]))])).toBe('closed')
    expect(got).toEqual([])
  })

  it('a tampered or wrongly keyed frame closes the connection and is counted as malformed', async () => {
    const { l, got, malformed } = await listen()
    const offer = l.offer('dd'.repeat(32))
    const [f] = new FrameSealer(offer.key).seal(encodeFrames([frame(10)]))
    const bad = (f as Uint8Array).slice()
    bad[8] = (bad[8] as number) ^ 1
    expect(await raw(l.port, [offer.session, bad])).toBe('closed')
    const offer2 = l.offer('dd'.repeat(32))
    expect(await raw(l.port, [offer2.session, ...new FrameSealer(new Uint8Array(32).fill(3)).seal(encodeFrames([frame(10)]))])).toBe('closed')
    expect(got).toEqual([])
    expect(malformed.n).toBe(2)
  })

  it('bounds unauthenticated connections and pending offers', async () => {
    const { l } = await listen()
    const silentOnes: Socket[] = []
    for (let i = 0; i < DIRECT_LIMITS.unauthenticated; i++) {
      const s = connect({ host: '127.0.0.1', port: l.port })
      s.on('error', () => {})
      sockets.push(s)
      silentOnes.push(s)
    }
    await Promise.all(silentOnes.map(async (s) => { await new Promise((resolve) => s.once('connect', resolve)) }))
    // One more, even with a valid session, is refused while the silent ones hold their slots.
    const offer = l.offer('ee'.repeat(32))
    await waitFor(() => (l as unknown as { unauthenticated: number }).unauthenticated === DIRECT_LIMITS.unauthenticated, 'the silent connections to be counted')
    expect(await raw(l.port, [offer.session])).toBe('closed')
    for (let i = 0; i < DIRECT_LIMITS.pendingSessions + 50; i++) l.offer('ff'.repeat(32))
    expect(l.stats.sessions).toBe(DIRECT_LIMITS.pendingSessions)
  })
})
