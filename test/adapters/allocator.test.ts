import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { assertBuilt } from '../cli/helpers.js'
import { FreedMemoryWatch, loadMallocTrim, loadMallopt, RETURN_MEMORY_SETTINGS, returnFreedMemory, returnMemoryEarly, TRIM_AFTER_FREED_BYTES, TRIM_EVERY_MS, wantsReturnMemory, type MallocInfo } from '../../src/adapters/allocator.js'

const run = promisify(execFile)
// Only glibc has the thresholds the third test reads; elsewhere it says why it skips.
const found = loadMallopt()
const noMallopt = typeof found === 'string' ? `no glibc mallopt here (${found})` : undefined
if (noMallopt !== undefined) console.warn(`skipping the glibc allocator test: ${noMallopt}`)
const DIST_MODULE = new URL('../../dist/adapters/allocator.js', import.meta.url).href

describe('the allocator of a node without a VPN', () => {
  it('is tuned only without a VPN, and never over the operator\'s own settings', () => {
    expect(wantsReturnMemory({ vpn: false }, {})).toEqual({ applied: true })
    expect(wantsReturnMemory({ vpn: true }, {})).toMatchObject({ applied: false, reason: expect.stringContaining('VPN') })
    expect(wantsReturnMemory({ vpn: false }, { WEFT_MALLOC: 'default' })).toEqual({ applied: false, reason: 'WEFT_MALLOC=default' })
    expect(wantsReturnMemory({ vpn: false }, { MALLOC_ARENA_MAX: '4' })).toEqual({ applied: false, reason: 'MALLOC_ARENA_MAX is set in the environment' })
    expect(wantsReturnMemory({ vpn: false }, { GLIBC_TUNABLES: 'glibc.malloc.arena_max=1' })).toMatchObject({ applied: false })
  })

  it('sets at most 2 arenas and 1 MB thresholds, and says why when it cannot', () => {
    const calls: Array<[number, number]> = []
    expect(returnMemoryEarly(() => (p, v) => { calls.push([p, v]); return 1 })).toEqual({ applied: true })
    expect(calls).toEqual([[-8, 2], [-3, 1 << 20], [-1, 1 << 20]])
    expect(calls).toEqual(RETURN_MEMORY_SETTINGS.map(([p, v]) => [p, v]))
    expect(returnMemoryEarly(() => 'not glibc')).toEqual({ applied: false, reason: 'not glibc' })
    expect(returnMemoryEarly(() => () => 0)).toEqual({ applied: false, reason: 'mallopt(-8, 2) failed' })
  })

  it.skipIf(noMallopt !== undefined)(`fixes glibc's threshold for mapping a block alone at 1 MB, where it grows with each burst by default${noMallopt !== undefined ? ` (skipped: ${noMallopt})` : ''}`, async () => {
    assertBuilt()
    // In a child process: the thresholds are process-wide. mallinfo2().hblks counts blocks mapped alone.
    const script = `
      import { createRequire } from 'node:module'
      const require = createRequire(${JSON.stringify(import.meta.url)})
      const koffi = require('koffi')
      const lib = koffi.load(null)
      const info = lib.func('mallinfo2', koffi.struct({ arena: 'size_t', ordblks: 'size_t', smblks: 'size_t', hblks: 'size_t', hblkhd: 'size_t', usmblks: 'size_t', fsmblks: 'size_t', uordblks: 'size_t', fordblks: 'size_t', keepcost: 'size_t' }), [])
      const malloc = lib.func('malloc', 'void *', ['size_t'])
      const free = lib.func('free', 'void', ['void *'])
      const mapped = (kb) => { const before = Number(info().hblks); const p = malloc(kb * 1024); const n = Number(info().hblks) - before; free(p); return n }
      const sizes = () => [mapped(512), mapped(1536)]
      const out = { before: sizes() }
      if (process.argv.includes('tune')) {
        const { returnMemoryEarly } = await import(${JSON.stringify(DIST_MODULE)})
        out.tuning = returnMemoryEarly()
      }
      out.after = sizes()
      process.stdout.write(JSON.stringify(out))`
    // Plain node (tsx's own allocations would move glibc's dynamic threshold), the built module.
    const probe = async (mode: string): Promise<unknown> =>
      JSON.parse((await run(process.execPath, ['--input-type=module', '-e', script, mode])).stdout)
    // glibc's default threshold starts at 128 KB, so both blocks are mapped alone, and freeing
    // the 1.5 MB one raises it to 1.5 MB: from then on neither is (what makes a burst's memory
    // stay in the heap).
    expect(await probe('keep')).toEqual({ before: [1, 1], after: [0, 0] })
    // Tuned: 1 MB, fixed, so the 512 KB block comes from the heap, the 1.5 MB one is mapped.
    expect(await probe('tune')).toEqual({ before: [1, 1], tuning: { applied: true }, after: [0, 1] })
  })
})

const MB = 1024 * 1024

describe('freed memory given back after a burst (malloc_trim)', () => {
  afterEach(() => { vi.useRealTimers() })

  it('trims once per burst of freed memory, not at every look', () => {
    const w = new FreedMemoryWatch(8 * MB)
    expect(w.sample(10 * MB)).toBe(false)
    // 40 MB freed by a flood: trim.
    expect(w.sample(50 * MB)).toBe(true)
    // glibc still counts them free after the trim (their pages went back): no trim again.
    expect(w.sample(50 * MB)).toBe(false)
    expect(w.sample(52 * MB)).toBe(false)
    // 30 MB of the free chunks used again (their pages are back), then freed: trim again.
    expect(w.sample(22 * MB)).toBe(false)
    expect(w.sample(29 * MB)).toBe(false)
    expect(w.sample(52 * MB)).toBe(true)
    expect(w.sample(45 * MB)).toBe(false)
  })

  it('looks every 10 s and trims only after memory was freed', () => {
    vi.useFakeTimers()
    let free = 4 * MB
    let trimmed = 0
    const seen: MallocInfo[] = []
    const r = returnFreedMemory({ info: () => ({ free, arena: 64 * MB }), trim: () => { trimmed++ } }, { onTrim: (_ms, info) => { seen.push(info) } })
    vi.advanceTimersByTime(3 * TRIM_EVERY_MS)
    expect(trimmed).toBe(0)
    free += TRIM_AFTER_FREED_BYTES
    vi.advanceTimersByTime(TRIM_EVERY_MS)
    expect(trimmed).toBe(1)
    expect(r.trims).toBe(1)
    expect(r.lastTrimMs).not.toBeNull()
    expect(seen).toEqual([{ free, arena: 64 * MB }])
    vi.advanceTimersByTime(5 * TRIM_EVERY_MS)
    expect(trimmed).toBe(1)
    r.stop()
    free += 10 * TRIM_AFTER_FREED_BYTES
    vi.advanceTimersByTime(5 * TRIM_EVERY_MS)
    expect(trimmed).toBe(1)
  })

  const trimCalls = loadMallocTrim()
  const noTrim = typeof trimCalls === 'string' ? `no glibc malloc_trim here (${trimCalls})` : undefined
  if (noTrim !== undefined) console.warn(`skipping the malloc_trim test: ${noTrim}`)

  it.skipIf(noTrim !== undefined)(`gives the pages of freed chunks between live ones back to the system${noTrim !== undefined ? ` (skipped: ${noTrim})` : ''}`, async () => {
    assertBuilt()
    // In a child process, tuned as a node without a VPN is: 48 MB in 64 KB blocks, a small block
    // kept after every one of them (so nothing is at the top of the heap, where the trim
    // threshold alone would return it), then the big blocks freed.
    const script = `
      import { readFileSync } from 'node:fs'
      import { createRequire } from 'node:module'
      const require = createRequire(${JSON.stringify(import.meta.url)})
      const koffi = require('koffi')
      const lib = koffi.load(null)
      const malloc = lib.func('malloc', 'void *', ['size_t'])
      const memset = lib.func('memset', 'void *', ['void *', 'int', 'size_t'])
      const free = lib.func('free', 'void', ['void *'])
      const { loadMallocTrim, returnMemoryEarly } = await import(${JSON.stringify(DIST_MODULE)})
      returnMemoryEarly()
      const anon = () => Number(/RssAnon:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024
      const big = []
      const keep = []
      for (let i = 0; i < 768; i++) { const p = malloc(65536); memset(p, 1, 65536); big.push(p); keep.push(malloc(64)) }
      const full = anon()
      for (const p of big) free(p)
      const freed = anon()
      const calls = loadMallocTrim()
      const before = calls.info()
      calls.trim()
      process.stdout.write(JSON.stringify({ full, freed, trimmed: anon(), freeMb: before.free / 1048576 }))`
    const out = JSON.parse((await run(process.execPath, ['--input-type=module', '-e', script])).stdout) as { full: number, freed: number, trimmed: number, freeMb: number }
    // Freed but kept: glibc counts them free and the process still holds their pages.
    expect(out.freeMb).toBeGreaterThan(40)
    expect(out.full - out.freed).toBeLessThan(8)
    // Trimmed: the pages went back.
    expect(out.freed - out.trimmed).toBeGreaterThan(40)
  })
})
