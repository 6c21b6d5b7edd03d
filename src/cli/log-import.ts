import { describeForkProof } from '../crdt/fork-proof.js'
import { fromHex, toHex } from '../log/bytes.js'
import { isWeftError } from '../log/errors.js'
import { openEnvelope, openTrusted, type SignedEvent } from '../log/event.js'
import { Ed25519Verifier } from '../log/identity.js'
import { hasStore, heldByDaemon, openReplica, type OpenReplica } from './data-dir.js'
import { CliError, EXIT_CHECK_FAILED, EXIT_OK } from './errors.js'
import { decodeBase64, readInput } from './input.js'
import { out, plural, printJson, progress, shortId } from './output.js'

interface Invalid { line: number, code: string, message: string }
interface Parked { line: number, id: string, missing: string[] }
interface Parsed { line: number, envelope: Uint8Array, id?: string }

const BATCH = 1000

/**
 * `weft log import <file>`: each JSON line must parse and carry an `envelope` (base64) that
 * opens with full validation; an `id`, if given, must equal the computed id. Other fields are
 * informational and ignored. Valid events go through `Replica.ingest` (chain, lamport, forks)
 * and are stored; events whose parents are neither stored nor in the file are parked, reported
 * and not stored. A missing store is created with `--net`, or else with the network of the
 * first line whose envelope verifies under the network id it names.
 */
export async function logImport (file: string, o: { dataDir: string, json: boolean, net?: string }): Promise<number> {
  const wantNet = o.net === undefined ? undefined : parseNet(o.net)
  const text = await readInput(file)
  const invalid: Invalid[] = []
  const parsed: Parsed[] = []
  let lines = 0
  text.split('\n').forEach((raw, i) => {
    if (raw.trim() === '') return
    lines++
    const line = i + 1
    const r = parseLine(raw)
    if ('code' in r) invalid.push({ line, ...r })
    else parsed.push({ line, ...r })
  })

  let created: { network: string, from: string } | undefined
  let net: Uint8Array | undefined
  if (hasStore(o.dataDir)) {
    // Network checked against the store below, once it is open.
  } else if (wantNet !== undefined) {
    net = wantNet
    created = { network: toHex(net), from: '--net' }
  } else {
    const verifier = new Ed25519Verifier()
    for (const p of parsed) {
      const candidate = peekNet(p.envelope)
      if (candidate === undefined) continue
      try {
        openEnvelope(p.envelope, candidate, verifier)
      } catch {
        continue
      }
      net = candidate
      created = { network: toHex(net), from: `line ${p.line}` }
      break
    }
  }

  if (!hasStore(o.dataDir) && net === undefined) {
    // Nothing verifies: there is no network to create a store for. Report every line.
    const verifier = new Ed25519Verifier()
    for (const p of parsed) {
      try {
        openEnvelope(p.envelope, peekNet(p.envelope) ?? new Uint8Array(8), verifier)
        invalid.push({ line: p.line, code: 'ERR_BAD_INPUT', message: 'no network for this line' })
      } catch (err) {
        invalid.push({ line: p.line, ...errorOf(err) })
      }
    }
    return report(o, { lines, stored: 0, duplicates: 0, invalid, parked: [], forks: [], created: undefined, note: `no store created in ${o.dataDir}: no line holds a valid event (give --net to create an empty store)` })
  }

  let r: OpenReplica
  try {
    r = await openReplica(o.dataDir, { create: net, maxPending: Number.MAX_SAFE_INTEGER, viaDaemon: false })
  } catch (err) {
    // A running daemon holds the store: send the events to it instead.
    if (heldByDaemon(o.dataDir, err)) return await importThroughDaemon(o, wantNet, lines, parsed, invalid)
    throw err
  }
  try {
    if (wantNet !== undefined && toHex(wantNet) !== r.netHex) {
      throw new CliError(`${o.dataDir} holds network ${r.netHex}, not ${toHex(wantNet)} (--net)`)
    }
    const verifier = new Ed25519Verifier()
    const valid: SignedEvent[] = []
    const lineOf = new Map<string, number>()
    const byId = new Map<string, SignedEvent>()
    for (const p of parsed) {
      let e: SignedEvent
      try {
        e = openEnvelope(p.envelope, r.net, verifier)
      } catch (err) {
        invalid.push({ line: p.line, ...errorOf(err) })
        continue
      }
      if (p.id !== undefined && p.id !== e.idHex) {
        invalid.push({ line: p.line, code: 'ERR_BAD_ID', message: `the line says id ${shortId(p.id)} but the envelope hashes to ${shortId(e.idHex)}` })
        continue
      }
      if (!lineOf.has(e.idHex)) { lineOf.set(e.idHex, p.line); byId.set(e.idHex, e) }
      valid.push(e)
    }

    const prog = progress('importing')
    let stored = 0
    let duplicates = 0
    const forks: string[] = []
    const rejectedIds = new Set<string>()
    for (let i = 0; i < valid.length; i += BATCH) {
      const batch = valid.slice(i, i + BATCH)
      const res = await r.replica.ingest(batch)
      stored += res.added.length
      duplicates += res.duplicates
      for (const f of res.forks) forks.push(describeForkProof(f))
      for (const rej of res.rejected) {
        const id = rej.id ?? batch[rej.index]?.idHex
        if (id !== undefined) rejectedIds.add(id)
        const line = (id === undefined ? undefined : lineOf.get(id)) ?? 0
        invalid.push({ line, code: rej.code, message: rej.message })
      }
      prog.tick(Math.min(i + BATCH, valid.length), valid.length)
    }
    prog.done()

    const parked: Parked[] = []
    const log = r.replica.log
    for (const [id, line] of lineOf) {
      if (log.has(id) || rejectedIds.has(id)) continue
      const e = byId.get(id) as SignedEvent
      const missing = [e.fields.prev, ...e.fields.deps].filter((x): x is Uint8Array => x !== null).map(toHex).filter((x) => !log.has(x))
      parked.push({ line, id, missing })
    }
    invalid.sort((a, b) => a.line - b.line)
    parked.sort((a, b) => a.line - b.line)
    return report(o, { lines, stored, duplicates, invalid, parked, forks, created, note: undefined })
  } finally {
    await r.close()
  }
}

/**
 * `import` while the daemon runs: the lines are checked here as for a store (JSON, base64,
 * signature, id), then POSTed to the daemon, which applies the causal rules and stores them.
 * Parked events wait in the daemon for their parents (it pulls them from peers).
 */
async function importThroughDaemon (o: { dataDir: string, json: boolean }, wantNet: Uint8Array | undefined, lines: number, parsed: Parsed[], invalid: Invalid[]): Promise<number> {
  const { ApiClient } = await import('./api-client.js')
  const client = await ApiClient.fromDataDir(o.dataDir)
  const status = await client.status()
  if (wantNet !== undefined && toHex(wantNet) !== status.networkId) {
    throw new CliError(`${o.dataDir} holds network ${status.networkId}, not ${toHex(wantNet)} (--net)`)
  }
  const net = fromHex(status.networkId)
  const verifier = new Ed25519Verifier()
  const valid: Array<{ line: number, e: SignedEvent }> = []
  for (const p of parsed) {
    let e: SignedEvent
    try {
      e = openEnvelope(p.envelope, net, verifier)
    } catch (err) {
      invalid.push({ line: p.line, ...errorOf(err) })
      continue
    }
    if (p.id !== undefined && p.id !== e.idHex) {
      invalid.push({ line: p.line, code: 'ERR_BAD_ID', message: `the line says id ${shortId(p.id)} but the envelope hashes to ${shortId(e.idHex)}` })
      continue
    }
    valid.push({ line: p.line, e })
  }
  const prog = progress('importing')
  const res = await client.importEnvelopes(valid.map((v) => v.e.envelope), (done) => { prog.tick(done, valid.length) })
  prog.done()
  const lineAt = (index: number): number => valid[index]?.line ?? 0
  for (const rej of res.rejected) invalid.push({ line: lineAt(rej.index), code: rej.code, message: rej.message })
  const parked: Parked[] = res.parkedEvents.map((p) => ({ line: lineAt(p.index), id: p.id, missing: p.missing }))
  invalid.sort((a, b) => a.line - b.line)
  parked.sort((a, b) => a.line - b.line)
  return report(o, {
    lines,
    stored: res.added,
    duplicates: res.duplicates,
    invalid,
    parked,
    forks: res.forks,
    created: undefined,
    note: `the store is in use by the running daemon: events were sent to it through its API at ${client.url}`
  })
}

interface Report {
  lines: number
  stored: number
  duplicates: number
  invalid: Invalid[]
  parked: Parked[]
  forks: string[]
  created: { network: string, from: string } | undefined
  note: string | undefined
}

function report (o: { dataDir: string, json: boolean }, r: Report): number {
  const code = r.invalid.length > 0 ? EXIT_CHECK_FAILED : EXIT_OK
  if (o.json) {
    printJson({ ok: code === EXIT_OK, ...r, parked: r.parked, created: r.created ?? null, note: r.note ?? null })
    return code
  }
  if (r.created !== undefined) out(`created a new store in ${o.dataDir} for network ${r.created.network} (from ${r.created.from})`)
  if (r.note !== undefined) out(r.note)
  const rows: Array<{ line: number, text: string }> = [
    ...r.invalid.map((x) => ({ line: x.line, text: `line ${x.line}: ${x.code} ${x.message}` })),
    ...r.parked.map((x) => ({ line: x.line, text: `line ${x.line}: parked, not stored: missing parent ${x.missing.map(shortId).join(', ')}` }))
  ].sort((a, b) => a.line - b.line)
  for (const row of rows) out(row.text)
  for (const f of r.forks) out(`fork: ${f}`)
  out(`import: ${plural(r.lines, 'line')}, ${r.stored} stored, ${r.duplicates} already present, ${r.parked.length} parked, ${r.invalid.length} invalid`)
  return code
}

function parseNet (text: string): Uint8Array {
  if (!/^[0-9a-fA-F]{16}$/.test(text)) throw new CliError(`--net must be a network id: 16 hex digits (see "weft token inspect"), got "${text}"`)
  return fromHex(text.toLowerCase())
}

function parseLine (raw: string): { envelope: Uint8Array, id?: string } | { code: string, message: string } {
  let v: unknown
  try {
    v = JSON.parse(raw)
  } catch (err) {
    return { code: 'ERR_BAD_INPUT', message: `not JSON: ${(err as Error).message}` }
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return { code: 'ERR_BAD_INPUT', message: 'a line must be a JSON object' }
  const { envelope, id } = v as { envelope?: unknown, id?: unknown }
  if (typeof envelope !== 'string') return { code: 'ERR_BAD_INPUT', message: 'no "envelope" string' }
  if (id !== undefined && (typeof id !== 'string' || !/^[0-9a-f]{64}$/.test(id))) return { code: 'ERR_BAD_INPUT', message: '"id" must be 64 lowercase hex digits' }
  const bytes = decodeBase64(envelope)
  if (bytes === undefined) return { code: 'ERR_BAD_INPUT', message: '"envelope" is not valid base64' }
  return id === undefined ? { envelope: bytes } : { envelope: bytes, id }
}

/** The network id an envelope claims, unverified, or undefined if it does not decode. */
function peekNet (envelope: Uint8Array): Uint8Array | undefined {
  try {
    const net = (openTrusted(envelope, new Uint8Array(8)).fields as { net?: unknown }).net
    return net instanceof Uint8Array && net.byteLength === 8 ? net : undefined
  } catch {
    return undefined
  }
}

function errorOf (err: unknown): { code: string, message: string } {
  return isWeftError(err) ? { code: err.code, message: err.message } : { code: 'ERR_BAD_ENVELOPE', message: (err as Error).message }
}
