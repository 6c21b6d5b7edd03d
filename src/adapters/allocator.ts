/**
 * glibc's malloc, told to give freed memory back to the system (docs/operations.md, "Memory
 * of an idle node"). Applied at the start of a node without a VPN, before its log is read.
 *
 * Why: after a flood of 100,000 events a node held 266 MB of RSS a minute later, with V8's heap
 * at ~100 MB and glibc holding ~90 MB of freed native memory (LevelDB's and Node's buffers) in
 * per-thread arenas and above a return threshold that grows with the burst. With at most two
 * arenas and fixed 1 MB thresholds the same flood left 197–208 MB. Not for a node with a VPN: its
 * packet thread and the main thread then share arenas, and one TCP stream through the VPN ran
 * at 347–469 MB/s against 484–597 MB/s without (measured with the same settings given as
 * environment variables).
 *
 * `mallopt(3)` at run time does what MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_ and
 * MALLOC_TRIM_THRESHOLD_ do at exec, for arenas created from then on. Reached through koffi,
 * loaded only here (~3 MB).
 */
import { createRequire } from 'node:module'

const M_TRIM_THRESHOLD = -1
const M_MMAP_THRESHOLD = -3
const M_ARENA_MAX = -8

/** What is set: at most 2 arenas, blocks of 1 MB or more mapped alone, the top of a heap returned past 1 MB. */
export const RETURN_MEMORY_SETTINGS: ReadonlyArray<readonly [param: number, value: number]> = [
  [M_ARENA_MAX, 2],
  [M_MMAP_THRESHOLD, 1 << 20],
  [M_TRIM_THRESHOLD, 1 << 20]
]

/** The environment variables that set the same by hand; any of them set means the operator chose. */
const OPERATOR_VARS = ['MALLOC_ARENA_MAX', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_TOP_PAD_', 'MALLOC_MMAP_MAX_', 'GLIBC_TUNABLES']

export type Mallopt = (param: number, value: number) => number

export type AllocatorTuning = { applied: true } | { applied: false, reason: string }

/** Whether a node should tune the allocator: no VPN, and neither the operator nor WEFT_MALLOC=default chose otherwise. */
export function wantsReturnMemory (opts: { vpn: boolean }, env: NodeJS.ProcessEnv): AllocatorTuning {
  if (opts.vpn) return { applied: false, reason: 'the node runs a VPN (shared arenas slow its packet thread)' }
  if (env.WEFT_MALLOC === 'default') return { applied: false, reason: 'WEFT_MALLOC=default' }
  const set = OPERATOR_VARS.find((v) => env[v] !== undefined)
  if (set !== undefined) return { applied: false, reason: `${set} is set in the environment` }
  return { applied: true }
}

type Library = ReturnType<typeof import('koffi')['load']>

/** This process's C library through koffi, if it is glibc; otherwise why not (not Linux, not glibc, no koffi). */
function glibc (): Library | string {
  if (process.platform !== 'linux') return 'not Linux'
  let lib: Library
  try {
    lib = (createRequire(import.meta.url)('koffi') as typeof import('koffi')).load(null)
  } catch (err) {
    return `koffi does not load (${(err as Error).message})`
  }
  // musl and others have a mallopt that ignores these parameters; only glibc has this symbol.
  try { lib.func('gnu_get_libc_version', 'const char *', []) } catch { return 'not glibc' }
  return lib
}

/** glibc's mallopt in this process, or why there is none. */
export function loadMallopt (): Mallopt | string {
  const lib = glibc()
  return typeof lib === 'string' ? lib : lib.func('mallopt', 'int', ['int', 'int']) as Mallopt
}

/** Applies RETURN_MEMORY_SETTINGS; mallopt returns 1 on success, 0 on error. */
export function returnMemoryEarly (load: () => Mallopt | string = loadMallopt): AllocatorTuning {
  const mallopt = load()
  if (typeof mallopt === 'string') return { applied: false, reason: mallopt }
  for (const [param, value] of RETURN_MEMORY_SETTINGS) {
    if (mallopt(param, value) !== 1) return { applied: false, reason: `mallopt(${param}, ${value}) failed` }
  }
  return { applied: true }
}

/**
 * What glibc says of its heaps (`mallinfo2(3)`), the fields used here: bytes in free chunks,
 * and bytes held by all arenas.
 */
export interface MallocInfo { readonly free: number, readonly arena: number }

/** glibc's `mallinfo2` and `malloc_trim(0)`, as the trim below calls them. */
export interface MallocTrimCalls { info: () => MallocInfo, trim: () => void }

/** glibc's mallinfo2 and malloc_trim in this process (glibc ≥ 2.33 for mallinfo2), or why not. */
export function loadMallocTrim (): MallocTrimCalls | string {
  const lib = glibc()
  if (typeof lib === 'string') return lib
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi')
    const fields = ['arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost']
    const struct = koffi.struct(Object.fromEntries(fields.map((f) => [f, 'size_t'])))
    const mallinfo2 = lib.func('mallinfo2', struct, []) as () => Record<string, number | bigint>
    const trim = lib.func('malloc_trim', 'int', ['size_t']) as (pad: number) => number
    return {
      info: () => { const m = mallinfo2(); return { free: Number(m.fordblks), arena: Number(m.arena) } },
      trim: () => { trim(0) }
    }
  } catch (err) {
    return `mallinfo2 or malloc_trim is missing (${(err as Error).message})`
  }
}

/** How often the free memory in glibc's heaps is looked at, and how much newly freed memory makes a trim. */
export const TRIM_EVERY_MS = 10_000
export const TRIM_AFTER_FREED_BYTES = 8 * 1024 * 1024

/**
 * Whether to trim now. glibc's count of free bytes stays the same after a trim (the chunks stay
 * free, only their pages go back), so what matters is how much was freed since: the free bytes
 * now above the lowest count seen since the last trim. That lowest count falls when free chunks
 * are used again (their pages come back), so a burst that reuses them and frees them again is
 * seen too.
 */
export class FreedMemoryWatch {
  private low = Number.POSITIVE_INFINITY
  constructor (private readonly afterBytes = TRIM_AFTER_FREED_BYTES) {}

  /** A new count of free bytes; true when enough was freed since the last trim to trim now. */
  sample (free: number): boolean {
    if (free < this.low) this.low = free
    if (free - this.low < this.afterBytes) return false
    this.low = free
    return true
  }
}

export interface FreedMemoryReturn { readonly trims: number, readonly lastTrimMs: number | null, stop: () => void }

/**
 * Gives memory freed after a burst (a flood of events: LevelDB's and Node's buffers) back to the
 * system within ~TRIM_EVERY_MS: `malloc_trim(0)` returns the pages of free chunks anywhere in
 * the heaps, where the trim threshold only returns the top of a heap. After a flood of 100,000
 * events one trim took a node's anonymous memory from 133 to 102 MB; the event loop waits for
 * it (22–28 ms then, once per burst). A look that trims nothing walks glibc's free lists.
 */
export function returnFreedMemory (calls: MallocTrimCalls, opts: { everyMs?: number, afterBytes?: number, onTrim?: (took: number, info: MallocInfo) => void } = {}): FreedMemoryReturn {
  const watch = new FreedMemoryWatch(opts.afterBytes)
  let trims = 0
  let lastTrimMs: number | null = null
  watch.sample(calls.info().free)
  const timer = setInterval(() => {
    const info = calls.info()
    if (!watch.sample(info.free)) return
    const t0 = performance.now()
    calls.trim()
    lastTrimMs = performance.now() - t0
    trims++
    opts.onTrim?.(lastTrimMs, info)
  }, opts.everyMs ?? TRIM_EVERY_MS)
  timer.unref()
  return {
    get trims () { return trims },
    get lastTrimMs () { return lastTrimMs },
    stop: () => { clearInterval(timer) }
  }
}
