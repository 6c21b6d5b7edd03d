/**
 * Per-object failures of the MCS agent. One object that the API server refuses (or that fails
 * for any reason) never stops the rest of a pass: its failure is recorded here, the object is
 * retried after a backoff of its own (doubling from `firstMs` to `maxMs`), and the agent reports
 * it on the ServiceExport's conditions and as a Kubernetes Event. Bounded: at most `max`
 * entries (the oldest goes first), one per service and side.
 */

export interface ObjectFailure {
  /** `export:<ns>/<name>` or `import:<ns>/<name>`. */
  key: string
  namespace: string
  name: string
  message: string
  attempts: number
  /** When the object may be tried again (ms, the agent's clock). */
  nextAt: number
}

export class ObjectFailures {
  readonly #items = new Map<string, ObjectFailure>()

  constructor (private readonly opts: { firstMs: number, maxMs: number, max?: number }) {}

  /** Record a failure; true when it is news (first failure, or a new message): worth an Event. */
  fail (key: string, namespace: string, name: string, message: string, now: number): boolean {
    const prior = this.#items.get(key)
    const attempts = (prior?.attempts ?? 0) + 1
    const delay = Math.min(this.opts.maxMs, this.opts.firstMs * 2 ** Math.min(attempts - 1, 20))
    this.#items.delete(key)
    this.#items.set(key, { key, namespace, name, message, attempts, nextAt: now + delay })
    const max = this.opts.max ?? 1024
    while (this.#items.size > max) this.#items.delete(this.#items.keys().next().value as string)
    return prior === undefined || prior.message !== message
  }

  /** The object worked: forget its failure. True if there was one. */
  ok (key: string): boolean {
    return this.#items.delete(key)
  }

  /** Whether the object is backing off now (skip it this pass). */
  waiting (key: string, now: number): boolean {
    const f = this.#items.get(key)
    return f !== undefined && f.nextAt > now
  }

  get (key: string): ObjectFailure | undefined {
    return this.#items.get(key)
  }

  /** The earliest retry time, if any object is failing. */
  nextRetry (): number | undefined {
    let next: number | undefined
    for (const f of this.#items.values()) if (next === undefined || f.nextAt < next) next = f.nextAt
    return next
  }

  list (): ObjectFailure[] {
    return [...this.#items.values()]
  }
}
