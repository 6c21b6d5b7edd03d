/** Shared helpers for benches: one JSON line per figure, timers, a seeded PRNG. */
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'

export interface Figure {
  bench: string
  metric: string
  value: number
  unit: string
  /** The target from DESIGN.md "Numbers to reach", e.g. ">= 5000", or null when there is none. */
  target: string | null
}

export function emitter (bench: string): (metric: string, value: number, unit: string, target?: string) => void {
  return (metric, value, unit, target) => {
    const f: Figure = { bench, metric, value: round(value), unit, target: target ?? null }
    process.stdout.write(JSON.stringify(f) + '\n')
  }
}

export function progress (msg: string): void {
  process.stderr.write(`# ${msg}\n`)
}

export function round (v: number): number {
  if (!Number.isFinite(v)) return v
  const a = Math.abs(v)
  const digits = a >= 100 ? 0 : a >= 1 ? 2 : 4
  return Number(v.toFixed(digits))
}

export const now = (): number => performance.now()

/** Milliseconds of `fn`, median of `runs` runs (after one warm-up when `warm`). */
export async function medianMs (runs: number, fn: () => unknown, warm = true): Promise<number> {
  if (warm) await fn()
  const times: number[] = []
  for (let i = 0; i < runs; i++) {
    const t = now()
    await fn()
    times.push(now() - t)
  }
  times.sort((a, b) => a - b)
  return times[Math.floor(times.length / 2)] as number
}

/** The tests' deterministic PRNG (mulberry32), so every run benches the same log. */
export { rng as prng } from '../test/support/random.js'

/** CPU time of this process (all its threads), in ms. */
export function cpuMs (): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/**
 * Wall and CPU milliseconds of `fn`. On a shared machine the wall figure swings with other
 * processes; the CPU figure is what this process spent (GC threads included), so a rate per
 * CPU-second is the steadier figure, and a conservative one for "one core".
 */
export async function measure (fn: () => unknown): Promise<{ wallMs: number, cpuMs: number }> {
  const c = cpuMs()
  const t = now()
  await fn()
  return { wallMs: now() - t, cpuMs: cpuMs() - c }
}

/** Median wall and CPU milliseconds of `runs` runs of `fn`, after one warm-up run. */
export async function medianMeasure (runs: number, fn: () => unknown): Promise<{ wallMs: number, cpuMs: number }> {
  await fn()
  const wall: number[] = []
  const cpu: number[] = []
  for (let i = 0; i < runs; i++) {
    const m = await measure(fn)
    wall.push(m.wallMs)
    cpu.push(m.cpuMs)
  }
  const mid = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
  return { wallMs: mid(wall), cpuMs: mid(cpu) }
}

/** A process's RSS, or one part of it, in MB (/proc/<pid>/status): anonymous (heaps) or file pages (the binary). */
export function rssMb (pid: number, field: 'VmRSS' | 'RssAnon' | 'RssFile' = 'VmRSS'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? Number.NaN : Number(m[1]) / 1024
}

/** CPU seconds (user + system) a process has used: steadier than wall time on a loaded machine. */
export function cpuSeconds (pid: number): number {
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(process.env.FOOTPRINT_CLK_TCK ?? 100)
  return (Number(f[11]) + Number(f[12])) / ticks
}

export const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
