import { RESOURCES, type KubeClient, type KubeObject } from '../../adapters/kube/client.js'
import type { KubeEvent } from '../../adapters/kube/types.js'
import type { MeshLogger } from '../../net/mesh-logger.js'
import { warningEvent } from '../../adapters/kube/events.js'
import { ObjectFailures } from '../mcs/failures.js'

/**
 * The loop under the entangle controllers: passes never overlap, a change during a pass
 * (`update()`) causes one more, each object is reconciled on its own (one that throws is
 * recorded, reported as a Warning Event once per new message, and retried on its own backoff
 * from `retryMs`, doubling to 30 s, while the others go on), and a full pass runs at least every
 * `resyncMs`. The controller supplies `pass()`, which calls `each()` per object.
 */
export interface ReconcileLoopOptions {
  kube: KubeClient
  log: MeshLogger
  now: () => number
  /** `source.component` of the Events written. */
  component: string
  resyncMs?: number
  retryMs?: number
}

export class ReconcileLoop {
  readonly failures: ObjectFailures
  #running: Promise<void> | undefined
  #dirty = false
  #stopped = false
  #ready = false
  #timer: NodeJS.Timeout | undefined
  passes = 0
  lastError: string | undefined

  constructor (private readonly o: ReconcileLoopOptions, private readonly pass: () => Promise<void>) {
    this.failures = new ObjectFailures({ firstMs: o.retryMs ?? 1000, maxMs: 30_000 })
  }

  /** The informers have listed: passes may run (updates before this are dropped). */
  ready (): void {
    this.#ready = true
    this.update()
  }

  get synced (): boolean { return this.#ready }

  update (): void {
    if (this.#stopped || !this.#ready) return
    this.#dirty = true
    this.#running ??= this.#loop()
  }

  async idle (): Promise<void> {
    while (this.#running !== undefined) await this.#running
  }

  async stop (): Promise<void> {
    this.#stopped = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    await this.#running?.catch(() => undefined)
  }

  get stopped (): boolean { return this.#stopped }

  /**
   * Reconcile one object unless it is backing off; a throw is recorded (and reported on `obj`).
   * Returns false when it failed or was skipped.
   */
  async each (key: string, obj: KubeObject, run: () => Promise<void>): Promise<boolean> {
    const now = this.o.now()
    if (this.failures.waiting(key, now)) return false
    try {
      await run()
      this.failures.ok(key)
      return true
    } catch (err) {
      const message = (err as Error).message
      if (this.failures.fail(key, obj.metadata.namespace ?? '', obj.metadata.name ?? '', message, now)) {
        this.o.log.warn({ object: key, err: message }, `${this.o.component}: an object failed; the others go on, it is retried with backoff`)
        await recordEvent(this.o.kube, obj, 'ReconcileFailed', message, this.o.component, now)
      }
      return false
    }
  }

  async #loop (): Promise<void> {
    try {
      while (this.#dirty && !this.#stopped) {
        this.#dirty = false
        if (this.#timer !== undefined) clearTimeout(this.#timer)
        let next = this.o.resyncMs ?? 60_000
        try {
          await this.pass()
          this.lastError = undefined
        } catch (err) {
          if (this.#stopped) break
          this.lastError = (err as Error).message
          next = this.o.retryMs ?? 1000
          this.o.log.warn({ err: this.lastError }, `${this.o.component}: pass failed, retrying`)
        }
        this.passes++
        const retry = this.failures.nextRetry()
        if (retry !== undefined) next = Math.min(next, Math.max(10, retry - this.o.now()))
        if (!this.#stopped) {
          this.#timer = setTimeout(() => { this.update() }, next)
          this.#timer.unref()
        }
      }
    } finally {
      this.#running = undefined
    }
  }
}

/** A Warning Event on `obj` (best effort: one that cannot be written is dropped). */
export async function recordEvent (kube: KubeClient, obj: KubeObject, reason: string, message: string, component: string, now: number): Promise<void> {
  const ev = warningEvent(obj, reason, message, { component, reportingComponent: `weft.io/${component}` }, new Date(now))
  await kube.create<KubeEvent>(RESOURCES.events, obj.metadata.namespace, ev).catch(() => undefined)
}

/** Resolves when every informer has listed, or at once when `signal` aborts (stop during start). */
export async function syncedOrAborted (synced: ReadonlyArray<Promise<void>>, signal: AbortSignal): Promise<void> {
  await Promise.race([
    Promise.all(synced),
    new Promise<void>((resolve) => {
      if (signal.aborted) resolve()
      signal.addEventListener('abort', () => { resolve() }, { once: true })
    })
  ])
}
