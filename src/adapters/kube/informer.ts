import {
  isKubeError,
  objectKey,
  type KubeClient,
  type KubeObject,
  type ResourceRef,
  type WatchEventType
} from './client.js'

/**
 * A list-then-watch loop over one resource that keeps a local cache, as client-go's reflector and
 * informer do:
 *
 * - list, replace the cache (reporting what the list changed), then watch from the list's
 *   resourceVersion, with bookmarks;
 * - a watch the server ends, or whose connection drops, is resumed from the last resourceVersion
 *   seen (an event's or a bookmark's), without a relist; connection errors back off first;
 * - 410 Gone (the version is older than the server keeps) relists at once;
 * - any other error (403, 500 on list, a bad answer), and a watch that ends within minWatchMs
 *   with no event, back off and relist;
 * - the AbortSignal stops it.
 *
 * Unlike client-go, a relist reports only the objects whose resourceVersion changed, and there
 * is no periodic resync. Cached objects are shared with onChange: do not mutate them.
 */

export type InformerChangeType = 'ADDED' | 'MODIFIED' | 'DELETED'

export interface InformerChange<T> {
  type: InformerChangeType
  /** The new state; for DELETED, the last state. */
  object: T
  /** The cached state before this change (MODIFIED and DELETED). */
  old?: T
  /** DELETED inferred by a relist: the object is the last state this informer saw, not the final one. */
  inferred?: boolean
}

export interface BackoffOptions {
  /** First delay, ms. Default 800 (client-go's). */
  initialMs?: number
  /** Cap, ms. Default 30,000. */
  maxMs?: number
  factor?: number
  /** Each delay is scaled by a random factor in [1 - jitter, 1 + jitter]. Default 0.2. */
  jitter?: number
}

export interface InformerOptions<T extends KubeObject> {
  client: KubeClient
  resource: ResourceRef
  /** One namespace; all when undefined (or for cluster-scoped resources). */
  namespace?: string
  labelSelector?: string
  signal: AbortSignal
  /** Called for every change of the cache, in order. Throwing does not stop the informer (see onError). */
  onChange?: (change: InformerChange<T>) => void
  /** Called after each list has been applied to the cache (the first one: `synced` resolves). */
  onSynced?: () => void
  /** Errors the informer recovers from by itself, for logging. */
  onError?: (err: unknown, phase: 'list' | 'watch' | 'handler') => void
  backoff?: BackoffOptions
  /**
   * The server is asked to end each watch after a random time in [min, 2·min) seconds
   * (client-go: 5 to 10 minutes), which also catches connections that died silently. Default 300.
   */
  watchTimeoutSeconds?: number
  /** A watch that ends cleanly sooner than this with no event is a failure (backoff, relist). Default 1000 ms. */
  minWatchMs?: number
  random?: () => number
}

export interface InformerStats {
  /** Lists made (the first and every relist). */
  lists: number
  /** Watch requests made. */
  watches: number
  /** Relists caused by 410 Gone. */
  gone: number
  /** Watches resumed after the previous one ended or dropped. */
  resumes: number
  /** Errors recovered from (list and watch). */
  errors: number
}

export class Informer<T extends KubeObject = KubeObject> {
  readonly #opts: InformerOptions<T>
  readonly #cache = new Map<string, T>()
  #resourceVersion = ''
  #synced = false
  #running: Promise<void> | undefined
  #resolveSynced!: () => void
  #backoffMs = 0
  readonly #random: () => number
  /** Resolves once the first list is in the cache. */
  readonly synced: Promise<void>
  readonly stats: InformerStats = { lists: 0, watches: 0, gone: 0, resumes: 0, errors: 0 }

  constructor(opts: InformerOptions<T>) {
    this.#opts = opts
    this.#random = opts.random ?? Math.random
    this.synced = new Promise((resolve) => {
      this.#resolveSynced = resolve
    })
  }

  /** Starts the loop (once); the promise resolves when the signal aborts. */
  run(): Promise<void> {
    this.#running ??= this.#loop()
    return this.#running
  }

  get hasSynced(): boolean {
    return this.#synced
  }

  /** The last resourceVersion seen (list, event or bookmark). */
  get resourceVersion(): string {
    return this.#resourceVersion
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.#cache.get(namespace === undefined || namespace === '' ? name : `${namespace}/${name}`)
  }

  list(): T[] {
    return [...this.#cache.values()]
  }

  get size(): number {
    return this.#cache.size
  }

  async #loop(): Promise<void> {
    const { client, resource, signal } = this.#opts
    const namespace = resource.namespaced ? this.#opts.namespace : undefined
    const selector = this.#opts.labelSelector
    const minWatchMs = this.#opts.minWatchMs ?? 1000
    const timeoutBase = this.#opts.watchTimeoutSeconds ?? 300

    while (!signal.aborted) {
      // ---- list ----
      try {
        this.stats.lists++
        const listed = await client.list<T>(resource, namespace, selector === undefined ? {} : { labelSelector: selector })
        if (signal.aborted) break
        this.#replace(listed.items)
        this.#resourceVersion = listed.resourceVersion
        this.#resetBackoff()
        this.#notifySynced()
      } catch (err) {
        if (signal.aborted) break
        this.stats.errors++
        this.#report(err, 'list')
        await this.#sleep(this.#nextBackoff())
        continue
      }

      // ---- watch, resumed from the last version seen, until it must relist ----
      let first = true
      while (!signal.aborted) {
        if (!first) this.stats.resumes++
        first = false
        const started = Date.now()
        let events = 0
        try {
          this.stats.watches++
          await client.watch<T>(resource, namespace, {
            resourceVersion: this.#resourceVersion,
            signal,
            allowWatchBookmarks: true,
            timeoutSeconds: Math.floor(timeoutBase * (1 + this.#random())),
            ...(selector === undefined ? {} : { labelSelector: selector })
          }, (type, obj) => {
            events++
            this.#apply(type, obj)
          })
          if (signal.aborted) break
          if (events === 0 && Date.now() - started < minWatchMs) {
            // As client-go: a watch that closes at once with nothing in it is a failure, and the
            // cure is a relist (it may also be a 410 whose ERROR line was lost with the stream).
            this.stats.errors++
            this.#report(new Error(`very short watch of ${resource.plural}: closed after ${Date.now() - started} ms with no event`), 'watch')
            await this.#sleep(this.#nextBackoff())
            break
          }
          this.#resetBackoff()
        } catch (err) {
          if (signal.aborted) break
          if (isKubeError(err, 'Gone')) {
            this.stats.gone++
            break // relist now
          }
          this.stats.errors++
          this.#report(err, 'watch')
          if (events > 0) this.#resetBackoff()
          await this.#sleep(this.#nextBackoff())
          if (isKubeError(err, 'Unavailable')) continue // the connection failed: resume the watch
          break // anything else: relist
        }
      }
    }
  }

  #apply(type: WatchEventType, obj: T): void {
    const rv = obj.metadata?.resourceVersion
    if (type === 'BOOKMARK') {
      if (rv !== undefined && rv !== '') this.#resourceVersion = rv
      return
    }
    if (obj.metadata?.name === undefined) return
    const key = objectKey(obj)
    const old = this.#cache.get(key)
    if (type === 'DELETED') {
      this.#cache.delete(key)
      if (old !== undefined) this.#emit({ type: 'DELETED', object: obj, old })
    } else {
      this.#cache.set(key, obj)
      this.#emit(old === undefined ? { type: 'ADDED', object: obj } : { type: 'MODIFIED', object: obj, old })
    }
    if (rv !== undefined && rv !== '') this.#resourceVersion = rv
  }

  #replace(items: T[]): void {
    const fresh = new Map<string, T>()
    for (const item of items) fresh.set(objectKey(item), item)
    const changes: InformerChange<T>[] = []
    for (const [key, old] of this.#cache) {
      if (!fresh.has(key)) changes.push({ type: 'DELETED', object: old, old, inferred: true })
    }
    for (const [key, obj] of fresh) {
      const old = this.#cache.get(key)
      if (old === undefined) changes.push({ type: 'ADDED', object: obj })
      else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion) changes.push({ type: 'MODIFIED', object: obj, old })
    }
    this.#cache.clear()
    for (const [key, obj] of fresh) this.#cache.set(key, obj)
    for (const c of changes) this.#emit(c)
  }

  #emit(change: InformerChange<T>): void {
    const cb = this.#opts.onChange
    if (cb === undefined) return
    try {
      cb(change)
    } catch (err) {
      this.#report(err, 'handler')
    }
  }

  #notifySynced(): void {
    if (!this.#synced) {
      this.#synced = true
      this.#resolveSynced()
    }
    try {
      this.#opts.onSynced?.()
    } catch (err) {
      this.#report(err, 'handler')
    }
  }

  #report(err: unknown, phase: 'list' | 'watch' | 'handler'): void {
    try {
      this.#opts.onError?.(err, phase)
    } catch {
      // A logger that throws must not stop the informer.
    }
  }

  #nextBackoff(): number {
    const b = this.#opts.backoff ?? {}
    const initial = b.initialMs ?? 800
    const max = b.maxMs ?? 30_000
    this.#backoffMs = this.#backoffMs === 0 ? initial : Math.min(max, this.#backoffMs * (b.factor ?? 2))
    const jitter = b.jitter ?? 0.2
    return Math.round(this.#backoffMs * (1 - jitter + 2 * jitter * this.#random()))
  }

  #resetBackoff(): void {
    this.#backoffMs = 0
  }

  #sleep(ms: number): Promise<void> {
    const signal = this.#opts.signal
    return new Promise((resolve) => {
      if (signal.aborted) {
        resolve()
        return
      }
      const done = (): void => {
        clearTimeout(timer)
        signal.removeEventListener('abort', done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      signal.addEventListener('abort', done, { once: true })
    })
  }
}

/** Creates an informer and starts its loop; `await informer.synced` for the first list. */
export function startInformer<T extends KubeObject = KubeObject>(opts: InformerOptions<T>): Informer<T> {
  const informer = new Informer<T>(opts)
  void informer.run()
  return informer
}
