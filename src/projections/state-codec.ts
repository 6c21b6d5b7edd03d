import { decode, encode } from 'cborg'
import type * as AM from '@automerge/automerge'
import { automerge, automergeIfLoaded } from './automerge.js'
import { Followers } from './followers.js'
import { WeftError } from '../log/errors.js'

/**
 * Projection state to bytes and back, for the fold checkpoint kept in the store (issue 16.2):
 * a restart loads the state instead of refolding the whole log. The state is plain data plus a
 * few kinds this codec knows: Map, Set, bigint, undefined, the Automerge settings document and
 * the classes listed in CLASSES. Anything else is refused when encoding (ERR_CHECKPOINT), so a
 * new kind of value in a projection fails loudly in the checkpoint tests instead of coming back
 * changed. Map and object key order are kept (nothing here sorts), so a restored state renders
 * exactly as the folded one.
 *
 * Shared references are not kept: an object reachable twice comes back as two equal copies.
 * The projections replace their records instead of mutating them, so this is not observable.
 */

/** Classes found in projection state, by a stable name (not the constructor's, which minifiers may change). */
const CLASSES: ReadonlyArray<{ name: string, proto: object }> = [
  { name: 'Followers', proto: Followers.prototype }
]

/** Marker keys of encoded special values; plain state objects never have a key starting with NUL. */
const MAP = '\u0000m'
const SET = '\u0000s'
const BIG = '\u0000b'
const UNDEF = '\u0000u'
const DOC = '\u0000a'
const OBJ = '\u0000c'

type Tree = null | boolean | number | string | Uint8Array | Tree[] | { [k: string]: Tree }

function toTree (v: unknown, path: string): Tree {
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return v
  if (v === undefined) return { [UNDEF]: 0 }
  if (typeof v === 'bigint') return { [BIG]: v.toString(16) }
  if (v instanceof Uint8Array) return v
  if (Array.isArray(v)) return v.map((x, i) => toTree(x, `${path}[${i}]`))
  if (v instanceof Map) return { [MAP]: [...v].map(([k, x]) => [toTree(k, `${path}.key`), toTree(x, `${path}.get(${String(k)})`)]) }
  if (v instanceof Set) return { [SET]: [...v].map((x) => toTree(x, `${path}.item`)) }
  if (typeof v === 'object') {
    const A = automergeIfLoaded()
    if (A?.isAutomerge(v) === true) return { [DOC]: A.save(v as AM.Doc<unknown>) }
    const proto = Object.getPrototypeOf(v) as object | null
    const cls = proto === Object.prototype || proto === null ? undefined : CLASSES.find((c) => c.proto === proto)
    if (proto !== Object.prototype && proto !== null && cls === undefined) {
      throw new WeftError('ERR_CHECKPOINT', `projection state at ${path} is a ${(v as { constructor?: { name?: string } }).constructor?.name ?? 'class'} the checkpoint codec does not know; add it to CLASSES in state-codec.ts`)
    }
    const out: Record<string, Tree> = {}
    for (const [k, x] of Object.entries(v)) {
      if (k.startsWith('\u0000')) throw new WeftError('ERR_CHECKPOINT', `projection state at ${path} has a key starting with NUL`)
      out[k] = toTree(x, `${path}.${k}`)
    }
    return cls === undefined ? out : { [OBJ]: [cls.name, out] }
  }
  throw new WeftError('ERR_CHECKPOINT', `projection state at ${path} is a ${typeof v}, which a checkpoint cannot hold`)
}

function fromTree (t: Tree): unknown {
  if (t === null || typeof t !== 'object' || t instanceof Uint8Array) return t
  if (Array.isArray(t)) return t.map(fromTree)
  const keys = Object.keys(t)
  if (keys.length === 1) {
    const k = keys[0] as string
    const x = t[k] as Tree
    if (k === UNDEF) return undefined
    if (k === BIG && typeof x === 'string') return BigInt(`0x${x}`)
    if (k === MAP && Array.isArray(x)) return new Map(x.map((p) => { const [a, b] = p as [Tree, Tree]; return [fromTree(a), fromTree(b)] }))
    if (k === SET && Array.isArray(x)) return new Set(x.map(fromTree))
    if (k === DOC && x instanceof Uint8Array) return automerge().load(x)
    if (k === OBJ && Array.isArray(x)) {
      const [name, fields] = x as [string, Tree]
      const cls = CLASSES.find((c) => c.name === name)
      if (cls === undefined) throw new WeftError('ERR_CHECKPOINT', `checkpoint names an unknown class "${name}"`)
      return Object.assign(Object.create(cls.proto) as object, fromTree(fields))
    }
    if (k.startsWith('\u0000')) throw new WeftError('ERR_CHECKPOINT', `checkpoint holds an unknown marker ${JSON.stringify(k)}`)
  }
  const out: Record<string, unknown> = {}
  for (const k of keys) out[k] = fromTree(t[k] as Tree)
  return out
}

/** CBOR of the state; no key sorting (Map and object order are part of what is restored). */
export function encodeState (state: unknown): Uint8Array {
  try {
    return encode(toTree(state, 'state'), { mapSorter: undefined } as never)
  } catch (err) {
    throw asCheckpointError(err, 'the projection state does not encode')
  }
}

/** Any failure here is a checkpoint that cannot be made or used, never a reason to stop a node. */
function asCheckpointError (err: unknown, what: string): WeftError {
  if (err instanceof WeftError && err.code === 'ERR_CHECKPOINT') return err
  return new WeftError('ERR_CHECKPOINT', `${what}: ${(err as Error).message}`, { cause: err })
}

/** The state `encodeState` was given (ERR_CHECKPOINT when the bytes are not one). */
export function decodeState (bytes: Uint8Array): unknown {
  try {
    // An Automerge document that does not load, a bad bigint: all refused alike.
    return fromTree(decode(bytes, { useMaps: false, allowUndefined: false, strict: false }) as Tree)
  } catch (err) {
    throw asCheckpointError(err, 'the fold checkpoint does not decode')
  }
}
