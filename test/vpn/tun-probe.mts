/**
 * Runs inside a network namespace (`ip netns exec <ns> node --import tsx test/vpn/tun-probe.mts
 * <mode>`), opens a real TUN device there and prints one JSON line with what it saw. Driven by
 * tun-device.test.ts; a child process is the simplest way to put a whole Node process (its
 * sockets, the `ping` it spawns, the device) into the namespace, and it leaves the test runner's
 * own namespace untouched.
 *
 * Modes:
 *   echo     10.99.0.1/24 on the device; `ping -c1 -W2 10.99.0.2` answered by writing an echo
 *            reply to the device, and a UDP round trip answered the same way
 *   drops    writes the kernel refuses, or made after close, return false and are counted
 *   close    close() deletes the interface
 *   rate     packets/s read (a flood from a child process) and written, for `seconds` each
 *   open     just try to open the device (for the non-root and missing-device checks)
 *   busy     open the device twice: the second open must fail (EBUSY)
 *   deleted  the interface is deleted under a reading device (it is reopened); a handler that throws
 *   faults   the readiness watch fails, a read fails, the interface is deleted: each time traffic resumes
 *   readnow  a UDP datagram to a closed port of 10.99.0.1 is written to the device; readNow()
 *            hands the kernel's ICMP port-unreachable to the handler before it returns; and the
 *            handler runs inside the readiness callback, with its promise jobs run right after it
 */
import { spawn } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { once } from 'node:events'
import { injectTunFault, openTun, type TunDevice } from '../../src/adapters/tun-device.js'
import { addressReplace, linkDelete, linkDown, linkShow, linkUp } from '../../src/adapters/ip-command.js'
import { echoReplyTo, internetChecksum, IPPROTO_UDP, parseIcmpEcho, parseIpHeader, sourceText, destinationText } from '../../src/net/ip-header.js'
import { parseIp } from '../../src/projections/ip.js'

const [mode = 'echo', name = 'weft0', arg = ''] = process.argv.slice(2)

function out (result: unknown): void {
  process.stdout.write(JSON.stringify(result) + '\n')
}

async function withTun (fn: (tun: TunDevice) => Promise<unknown>): Promise<unknown> {
  const tun = await openTun({ name, mtu: 1420, onError: (err) => { process.stderr.write(`tun error: ${err.message}\n`) } })
  try {
    await addressReplace(tun.name, '10.99.0.1/24')
    await linkUp(tun.name)
    return await fn(tun)
  } finally {
    await tun.close()
  }
}

/** A minimal IPv4 UDP packet (UDP checksum 0: "none", which IPv4 allows). */
function udp4 (src: string, dst: string, sport: number, dport: number, payload: Uint8Array): Uint8Array {
  const total = 28 + payload.length
  const p = new Uint8Array(total)
  const v = new DataView(p.buffer)
  p[0] = 0x45
  v.setUint16(2, total)
  p[8] = 64
  p[9] = IPPROTO_UDP
  v.setUint32(12, Number(parseIp(src).value))
  v.setUint32(16, Number(parseIp(dst).value))
  v.setUint16(10, internetChecksum(p, 0, 20))
  v.setUint16(20, sport)
  v.setUint16(22, dport)
  v.setUint16(24, 8 + payload.length)
  p.set(payload, 28)
  return p
}

async function echo (tun: TunDevice): Promise<unknown> {
  const seen: Array<{ src: string, dst: string, protocol: number, icmp?: unknown }> = []
  let repliesWritten = 0
  tun.onPacket((pkt) => {
    const h = parseIpHeader(pkt)
    if (h === undefined) return
    seen.push({ src: sourceText(h), dst: destinationText(h), protocol: h.protocol })
    const reply = echoReplyTo(pkt)
    if (reply !== undefined) {
      const req = parseIcmpEcho(pkt)!
      seen[seen.length - 1]!.icmp = { type: req.type, id: req.id, seq: req.seq, bytes: req.payload.length }
      if (tun.write(reply)) repliesWritten++
      return
    }
    if (h.family === 4 && h.protocol === IPPROTO_UDP && pkt.length >= h.headerLength + 8) {
      const dv = new DataView(pkt.buffer, pkt.byteOffset + h.headerLength)
      const payload = pkt.slice(h.headerLength + 8, h.totalLength)
      const answer = new TextEncoder().encode('pong:' + new TextDecoder().decode(payload))
      tun.write(udp4(destinationText(h), sourceText(h), dv.getUint16(2), dv.getUint16(0), answer))
    }
  })

  // ping, when installed (iputils-ping)
  let ping: { exitCode: number | null, stdout: string } | { missing: string }
  try {
    const child = spawn('ping', ['-c1', '-W2', '10.99.0.2'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stdout += d.toString() })
    const [code] = await Promise.race([
      once(child, 'exit') as Promise<[number | null]>,
      once(child, 'error').then(([err]) => { throw err as Error })
    ])
    ping = { exitCode: code, stdout }
  } catch (err) {
    ping = { missing: (err as Error).message }
  }

  // UDP round trip through the device
  const sock = createSocket('udp4')
  await new Promise<void>((resolve) => sock.bind(0, '10.99.0.1', resolve))
  const got = once(sock, 'message') as Promise<[Buffer, { address: string, port: number }]>
  sock.send('hello', 7777, '10.99.0.2')
  let timer: NodeJS.Timeout | undefined
  const udp = await Promise.race([
    got.then(([msg, rinfo]) => ({ reply: msg.toString(), from: `${rinfo.address}:${rinfo.port}` })),
    new Promise<{ timeout: true }>((resolve) => { timer = setTimeout(() => resolve({ timeout: true }), 3000) })
  ])
  clearTimeout(timer)
  sock.close()
  return { ping, udp, seen, repliesWritten, stats: { ...tun.stats } }
}

async function drops (tun: TunDevice): Promise<unknown> {
  const good = udp4('10.99.0.2', '10.99.0.1', 40000, 9, new Uint8Array(16))
  const okWhileUp = tun.write(good)
  const garbage = new Uint8Array(40).fill(0) // version 0: the kernel refuses it (EINVAL)
  const garbageAccepted = tun.write(garbage)
  await linkDown(tun.name)
  const burst = Array.from({ length: 1000 }, () => tun.write(good))
  const afterDown = { accepted: burst.filter(Boolean).length, dropped: burst.filter((b) => !b).length }
  await linkUp(tun.name)
  const okAgain = tun.write(good)
  const statsBeforeClose = { ...tun.stats }
  await tun.close()
  const afterClose = tun.write(good)
  return { okWhileUp, garbageAccepted, afterDown, okAgain, afterClose, statsBeforeClose, stats: { ...tun.stats } }
}

async function close (): Promise<unknown> {
  const tun = await openTun({ name })
  const before = await linkShow(tun.name)
  tun.onPacket(() => {})
  const t = performance.now()
  await tun.close()
  const closeMs = performance.now() - t
  const after = await linkShow(tun.name)
  await tun.close() // twice is fine
  return { before: before !== undefined ? { name: before.name, mtu: before.mtu } : null, after: after ?? null, closeMs }
}

async function deleted (): Promise<unknown> {
  const errors: string[] = []
  let reopened = 0
  const tun = await openTun({ name, onError: (err) => { errors.push(`${err.code}: ${err.message}`) }, onReopen: () => { reopened++ } })
  await addressReplace(tun.name, '10.99.0.1/24')
  await linkUp(tun.name)
  let n = 0
  tun.onPacket(() => { if (++n === 1) throw new Error('handler bug') })
  const sock = createSocket('udp4')
  await new Promise<void>((resolve) => sock.bind(0, '10.99.0.1', resolve))
  for (let i = 0; i < 3; i++) sock.send('x', 7777, '10.99.0.2')
  await until(() => n >= 3, 3000)
  sock.close()
  const afterThrow = { received: n, errors: [...errors] }
  await linkDelete(tun.name)
  await until(() => reopened > 0, 3000)
  const errorsAfterDelete = errors.slice(afterThrow.errors.length)
  const relinked = await linkShow(tun.name)
  const writeAfterReopen = tun.write(udp4('10.99.0.2', '10.99.0.1', 1, 9, new Uint8Array(4)))
  const stats = { ...tun.stats }
  await tun.close()

  // An aborted signal closes the device.
  const ac = new AbortController()
  const t2 = await openTun({ name, signal: ac.signal })
  t2.onPacket(() => {})
  ac.abort()
  let gone = false
  for (let i = 0; i < 100 && !gone; i++) {
    gone = (await linkShow(name)) === undefined
    if (!gone) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return { afterThrow, errorsAfterDelete, reopened, relinked: relinked !== undefined, writeAfterReopen, abortRemoved: gone, stats }
}

async function until (cond: () => boolean, ms: number): Promise<boolean> {
  const t = performance.now()
  while (!cond()) {
    if (performance.now() - t > ms) return false
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return true
}

/**
 * Faults of the device I/O, one after the other, with a UDP echo running: the readiness watch fails
 * by itself, a read fails, the interface is deleted. After each, a round trip through the device
 * must work again; the time from the fault to the first answered datagram is reported.
 */
async function faults (): Promise<unknown> {
  const errors: string[] = []
  const reconfigure = async (): Promise<void> => { await addressReplace(name, '10.99.0.1/24'); await linkUp(name) }
  let reconfigured: Promise<void> = Promise.resolve()
  const dev = await openTun({ name, onError: (err) => { errors.push(err.message) }, onReopen: () => { reconfigured = reconfigure() } })
  await reconfigure()
  dev.onPacket((pkt) => {
    const h = parseIpHeader(pkt)
    if (h === undefined || h.family !== 4 || h.protocol !== IPPROTO_UDP) return
    const dv = new DataView(pkt.buffer, pkt.byteOffset + h.headerLength)
    dev.write(udp4(destinationText(h), sourceText(h), dv.getUint16(2), dv.getUint16(0), pkt.slice(h.headerLength + 8, h.totalLength)))
  })
  const sock = createSocket('udp4')
  await new Promise<void>((resolve) => sock.bind(0, resolve))
  let answered = 0
  sock.on('message', () => { answered++ })
  // One datagram every 5 ms; the recovery time is when answers start again.
  const pinger = setInterval(() => { sock.send('x', 7777, '10.99.0.2') }, 5)
  const recovery = async (inject: () => Promise<void> | void): Promise<{ ms: number | null }> => {
    await until(() => answered > 0, 3000)
    await reconfigured
    await inject()
    const t = performance.now()
    const before = answered
    await new Promise((resolve) => setTimeout(resolve, 20)) // answers already in flight
    const base = Math.max(before, answered)
    const ok = await until(() => answered > base, 5000)
    return { ms: ok ? Math.round(performance.now() - t) : null }
  }
  const watchFail = await recovery(() => { injectTunFault(dev, 'watch') })
  const readFail = await recovery(() => { injectTunFault(dev, 'read') })
  const deletedIf = await recovery(async () => { await linkDelete(name) })
  clearInterval(pinger)
  sock.close()
  const stats = { ...dev.stats }
  await dev.close()
  return { watchFail, readFail, deleted: deletedIf, errors, stats }
}

async function rate (tun: TunDevice, seconds: number): Promise<unknown> {
  // Read: a child process floods UDP to 10.99.0.2 (routed into the device); we count packets read.
  let rx = 0
  let first = 0
  let last = 0
  tun.onPacket(() => { if (rx++ === 0) first = performance.now(); last = performance.now() })
  const flood = spawn(process.execPath, ['-e', `
    const s = require('node:dgram').createSocket('udp4'); const d = Buffer.alloc(64); let n = 0
    const end = Date.now() + ${seconds * 1000}
    const go = () => { for (let i = 0; i < 200; i++) { s.send(d, 9999, '10.99.0.2'); n++ } if (Date.now() < end) setImmediate(go); else s.close(() => { console.log(n); }) }
    s.bind(0, '10.99.0.1', go)`], { stdio: ['ignore', 'pipe', 'inherit'] })
  let sent = ''
  flood.stdout.on('data', (d: Buffer) => { sent += d.toString() })
  await once(flood, 'exit')
  await new Promise((resolve) => setTimeout(resolve, 100))
  const readPps = rx > 1 ? Math.round((rx - 1) / ((last - first) / 1000)) : 0
  const floodPps = Math.round(Number(sent.trim()) / seconds)

  // Write: UDP to 10.99.0.1:9 (nothing listens: the kernel takes each packet through IP and UDP input).
  const pkts = Array.from({ length: 64 }, (_, i) => udp4('10.99.0.2', '10.99.0.1', 40000 + i, 9, new Uint8Array(64)))
  const before = tun.stats.txPackets
  const t0 = performance.now()
  let i = 0
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      for (let k = 0; k < 256; k++) tun.write(pkts[i++ & 63]!)
      if (performance.now() - t0 < seconds * 1000) setImmediate(pump); else resolve()
    }
    pump()
  })
  const writePps = Math.round((tun.stats.txPackets - before) / ((performance.now() - t0) / 1000))
  return { readPps, floodPps, writePps, stats: { ...tun.stats }, threadpool: process.env.UV_THREADPOOL_SIZE ?? 'default' }
}

async function openOnly (): Promise<unknown> {
  try {
    const tun = await openTun({ name, ...(arg !== '' ? { devicePath: arg } : {}) })
    await tun.close()
    return { ok: true }
  } catch (err) {
    const e = err as { code?: string, message: string }
    return { ok: false, code: e.code, message: e.message }
  }
}

async function readNow (tun: TunDevice): Promise<unknown> {
  const seen: Array<{ src: string, dst: string, protocol: number }> = []
  const order: string[] = []
  tun.onPacket((pkt) => {
    const h = parseIpHeader(pkt)
    if (h === undefined) return
    seen.push({ src: sourceText(h), dst: destinationText(h), protocol: h.protocol })
    if (h.protocol === 17) {
      // From a `ping`-less source: a datagram this process sends through the device.
      order.push('handler')
      queueMicrotask(() => { order.push('microtask') })
      setImmediate(() => { order.push('immediate') })
    }
  })
  // Wait until the device is being read (its first packets are the kernel's own, if any).
  await new Promise((resolve) => setTimeout(resolve, 50))
  tun.write(udp4('10.99.0.2', '10.99.0.1', 40000, 9, new TextEncoder().encode('x')))
  const before = seen.length
  tun.readNow()
  const sync = seen.slice(before)
  // A datagram out through the device: the readiness callback runs the handler.
  const sock = createSocket('udp4')
  sock.send('y', 7777, '10.99.0.2')
  const deadline = Date.now() + 2000
  while (!order.includes('immediate') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
  sock.close()
  return { sync, order }
}

try {
  switch (mode) {
    case 'readnow': out(await withTun(readNow)); break
    case 'echo': out(await withTun(echo)); break
    case 'drops': {
      const tun = await openTun({ name })
      await addressReplace(tun.name, '10.99.0.1/24')
      await linkUp(tun.name)
      out(await drops(tun))
      break
    }
    case 'close': out(await close()); break
    case 'rate': out(await withTun(async (tun) => await rate(tun, Number(arg || '1')))); break
    case 'open': out(await openOnly()); break
    case 'deleted': out(await deleted()); break
    case 'faults': out(await faults()); break
    case 'busy': {
      const first = await openTun({ name })
      try { out(await openOnly()) } finally { await first.close() }
      break
    }
    default: throw new Error(`unknown mode ${mode}`)
  }
} catch (err) {
  out({ error: (err as Error).message, code: (err as { code?: string }).code })
  process.exitCode = 1
}
