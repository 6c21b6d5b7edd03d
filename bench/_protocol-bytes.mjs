/**
 * Bench-only preload (`node --import ./bench/_protocol-bytes.mjs dist/cli/main.js up …`): counts
 * the bytes a process sends per libp2p protocol, for bench/footprint.ts (FOOTPRINT_PROTOCOLS=1).
 *
 * Every libp2p stream and raw connection is an AbstractMessageStream of @libp2p/utils, and
 * everything written goes through its `send`: counted there by the stream's protocol (payload
 * bytes, before yamux, noise and the transport protection frame them). Raw connections (what goes
 * on the wire, all protocols together, with framing) are counted under `(wire) <class>`; a
 * stream's bytes written while its protocol is still being negotiated under `(negotiating)`.
 * Streams opened are counted per protocol too (the first send of each stream); kad-dht messages
 * also by message type (`<protocol> FIND_NODE`: bytes, and messages under `streams`).
 *
 * The counts are written as JSON to $PROTOCOL_BYTES_DIR/<pid>.json every second (a timer that
 * does not keep the process alive). Plain JS, so it runs without tsx in the daemon.
 */
import { writeFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'

const dir = process.env.PROTOCOL_BYTES_DIR
// Resolve @libp2p/utils as the daemon does (from its dist/, i.e. the package root's node_modules).
const root = process.env.PROTOCOL_BYTES_ROOT ?? process.cwd()
const require = createRequire(join(root, 'package.json'))
const utilsUrl = pathToFileURL(require.resolve('@libp2p/utils')).href
const { AbstractMessageStream, AbstractStream } = await import(utilsUrl)

/** protocol → { sent, streams } */
const counts = new Map()
const seen = new WeakSet()

function entry (key) {
  let e = counts.get(key)
  if (e === undefined) { e = { sent: 0, streams: 0 }; counts.set(key, e) }
  return e
}

const KAD_TYPES = ['PUT_VALUE', 'GET_VALUE', 'ADD_PROVIDER', 'GET_PROVIDERS', 'FIND_NODE', 'PING']

/**
 * A kad-dht message's type, when `data` starts one: a varint length, then field 1 (tag 0x08,
 * the type). Requests and responses carry the same type.
 */
function kadType (data) {
  const bytes = typeof data.subarray === 'function' ? data.subarray() : data
  let i = 0
  while (i < bytes.length && i < 5 && (bytes[i] & 0x80) !== 0) i++
  i++
  if (bytes[i] !== 0x08) return undefined
  return KAD_TYPES[bytes[i + 1]]
}

const send = AbstractMessageStream.prototype.send
AbstractMessageStream.prototype.send = function (data) {
  const isStream = this instanceof AbstractStream
  const key = isStream ? (this.protocol === '' || this.protocol === undefined ? '(negotiating)' : this.protocol) : `(wire) ${this.constructor.name}`
  const e = entry(key)
  e.sent += data.byteLength
  if (isStream && key.endsWith('/kad/1.0.0')) {
    const t = kadType(data)
    if (t !== undefined) {
      const k = entry(`${key} ${t}`)
      k.sent += data.byteLength
      k.streams++
    }
  }
  if (isStream && key !== '(negotiating)' && !seen.has(this)) { seen.add(this); e.streams++ }
  return send.call(this, data)
}

if (dir !== undefined) {
  const file = join(dir, `${process.pid}.json`)
  const flush = () => {
    try {
      writeFileSync(`${file}.tmp`, JSON.stringify(Object.fromEntries(counts)))
      renameSync(`${file}.tmp`, file)
    } catch {}
  }
  setInterval(flush, 1_000).unref()
}
