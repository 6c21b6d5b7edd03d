import { afterEach, describe, expect, test } from 'vitest'
import { RESOURCES, type KubeObject } from '../../src/adapters/kube/client.js'
import { startInformer, type Informer, type InformerChange, type InformerOptions } from '../../src/adapters/kube/informer.js'
import type { Service } from '../../src/adapters/kube/types.js'
import { eventually, startFakeKube, type FakeKube, type FakeKubeOptions } from '../support/fake-kube.js'

const svc = (name: string, port = 80, namespace = 'default', labels: Record<string, string> = {}): Service => ({
  metadata: { name, namespace, labels },
  spec: { ports: [{ port }] }
})

const fast = { initialMs: 20, maxMs: 200, jitter: 0 }

let fake: FakeKube | undefined
let stop: AbortController | undefined
afterEach(async () => {
  stop?.abort()
  await fake?.close()
  fake = undefined
  stop = undefined
})

interface Rig {
  fake: FakeKube
  informer: Informer<Service>
  changes: InformerChange<Service>[]
  errors: unknown[]
}

async function rig(fakeOpts: FakeKubeOptions = {}, opts: Partial<InformerOptions<Service>> = {}, seed: (f: FakeKube) => void = () => {}): Promise<Rig> {
  fake = await startFakeKube(fakeOpts)
  seed(fake)
  stop = new AbortController()
  const changes: InformerChange<Service>[] = []
  const errors: unknown[] = []
  const informer = startInformer<Service>({
    client: fake.client(),
    resource: RESOURCES.services,
    signal: stop.signal,
    backoff: fast,
    onChange: (c) => changes.push(c),
    onError: (e) => errors.push(e),
    ...opts
  })
  return { fake, informer, changes, errors }
}

/** The informer's cache as name → port, to compare with the fake's store. */
const view = (objs: KubeObject[]): Record<string, number | undefined> =>
  Object.fromEntries(objs.map((o) => [`${o.metadata.namespace}/${o.metadata.name}`, (o as Service).spec?.ports?.[0]?.port]))

describe('informer', () => {
  test('lists, then follows changes in order; the cache equals the server', async () => {
    const { fake, informer, changes } = await rig({}, {}, (f) => {
      f.put(RESOURCES.services, svc('a', 1))
      f.put(RESOURCES.services, svc('b', 2))
    })
    await informer.synced
    expect(informer.hasSynced).toBe(true)
    expect(changes.map((c) => [c.type, c.object.metadata.name])).toEqual([['ADDED', 'a'], ['ADDED', 'b']])
    await eventually(() => fake.watchCount === 1)

    fake.put(RESOURCES.services, svc('a', 10))
    fake.put(RESOURCES.services, svc('c', 3))
    fake.remove(RESOURCES.services, 'default', 'b')
    await eventually(() => changes.length === 5)
    expect(changes.slice(2).map((c) => [c.type, c.object.metadata.name])).toEqual([['MODIFIED', 'a'], ['ADDED', 'c'], ['DELETED', 'b']])
    expect(changes[2]!.old?.spec?.ports?.[0]?.port).toBe(1)
    expect(changes[2]!.object.spec?.ports?.[0]?.port).toBe(10)
    expect(view(informer.list())).toEqual(view(fake.objects(RESOURCES.services)))
    expect(informer.get('default', 'a')?.spec?.ports?.[0]?.port).toBe(10)
    expect(informer.resourceVersion).toBe(fake.resourceVersion)
    expect(informer.stats.lists).toBe(1)
  })

  test('410 Gone after compaction: it relists and converges, reporting what it missed', async () => {
    const { fake, informer, changes } = await rig({}, {}, (f) => {
      f.put(RESOURCES.services, svc('keep', 1))
      f.put(RESOURCES.services, svc('gone', 2))
      f.put(RESOURCES.services, svc('changed', 3))
    })
    await informer.synced
    await eventually(() => fake.watchCount === 1)
    // Cut the watch, then (in the same tick: before it can resume) change things and compact.
    fake.dropWatches()
    fake.remove(RESOURCES.services, 'default', 'gone')
    fake.put(RESOURCES.services, svc('changed', 30))
    fake.put(RESOURCES.services, svc('new', 4))
    fake.compact()
    await eventually(() => informer.stats.gone >= 1, 5000, 'a 410')
    await eventually(() => informer.stats.lists === 2, 5000, 'the relist')
    await eventually(() => JSON.stringify(view(informer.list())) === JSON.stringify(view(fake.objects(RESOURCES.services))), 5000, 'convergence')
    const after = changes.slice(3)
    expect(after.map((c) => [c.type, c.object.metadata.name]).sort()).toEqual([['ADDED', 'new'], ['DELETED', 'gone'], ['MODIFIED', 'changed']])
    expect(after.find((c) => c.type === 'DELETED')?.inferred).toBe(true)
    // And it watches again from the new list: later changes arrive.
    await eventually(() => fake.watchCount === 1)
    fake.put(RESOURCES.services, svc('later', 5))
    await eventually(() => informer.get('default', 'later') !== undefined, 5000, 'a change after the relist')
  })

  test('a dropped watch connection is resumed from the last version, without a relist', async () => {
    const { fake, informer, changes } = await rig()
    await informer.synced
    await eventually(() => fake.watchCount === 1)
    fake.put(RESOURCES.services, svc('one', 1))
    await eventually(() => changes.length === 1)
    for (let i = 0; i < 3; i++) {
      expect(fake.dropWatches()).toBe(1)
      // Changes made while it is disconnected are not lost.
      fake.put(RESOURCES.services, svc(`during-${i}`, i))
      await eventually(() => fake.watchCount === 1, 5000, 'a reconnect')
    }
    fake.put(RESOURCES.services, svc('after', 9))
    await eventually(() => informer.size === 5, 5000, 'all five objects')
    expect(changes.map((c) => c.object.metadata.name)).toEqual(['one', 'during-0', 'during-1', 'during-2', 'after'])
    expect(informer.stats.lists).toBe(1)
    expect(informer.stats.resumes).toBeGreaterThanOrEqual(3)
    expect(fake.count('list', 'services')).toBe(1)
    // Each resumed watch asked for the version after the last event it had seen.
    const watches = fake.requests.filter((r) => r.verb === 'watch')
    expect(watches.length).toBeGreaterThanOrEqual(4)
    expect(watches.every((w) => w.query.allowWatchBookmarks === 'true')).toBe(true)
  })

  test('bookmarks move its resourceVersion: after a compaction it resumes without a 410', async () => {
    const { fake, informer } = await rig({}, { namespace: 'default' })
    await informer.synced
    await eventually(() => fake.watchCount === 1)
    // Writes elsewhere move the server's version past anything this informer saw.
    for (let i = 0; i < 5; i++) fake.put(RESOURCES.services, svc(`x${i}`, i, 'kube-system'))
    const listed = informer.resourceVersion
    fake.bookmark()
    await eventually(() => informer.resourceVersion === fake.resourceVersion, 5000, 'the bookmark')
    expect(Number(informer.resourceVersion)).toBeGreaterThan(Number(listed))
    fake.compact()
    fake.dropWatches()
    await eventually(() => fake.watchCount === 1, 5000, 'the resumed watch')
    fake.put(RESOURCES.services, svc('mine', 1))
    await eventually(() => informer.get('default', 'mine') !== undefined)
    expect(informer.stats.gone).toBe(0)
    expect(informer.stats.lists).toBe(1)
  })

  test('a failing list is retried with backoff until it succeeds', async () => {
    const { fake, informer, errors } = await rig({}, {}, (f) => {
      f.failNext({ verb: 'list' }, 503, { times: 3 })
      f.put(RESOURCES.services, svc('a'))
    })
    await informer.synced
    expect(informer.stats.lists).toBe(4)
    expect(errors.length).toBe(3)
    expect(informer.get('default', 'a')).toBeDefined()
    expect(fake.count('list')).toBe(4)
  })

  test('a watch refused with 403 backs off and relists', async () => {
    const { fake, informer } = await rig({}, {}, (f) => {
      f.failNext({ verb: 'watch' }, 403, { reason: 'Forbidden' })
    })
    await informer.synced
    await eventually(() => informer.stats.lists === 2, 5000, 'a relist after the 403')
    await eventually(() => fake.watchCount === 1)
    fake.put(RESOURCES.services, svc('a'))
    await eventually(() => informer.get('default', 'a') !== undefined)
  })

  test('a label selector and a namespace limit what it caches', async () => {
    const { fake, informer } = await rig({}, { namespace: 'default', labelSelector: 'app=web' }, (f) => {
      f.put(RESOURCES.services, svc('web1', 1, 'default', { app: 'web' }))
      f.put(RESOURCES.services, svc('db1', 2, 'default', { app: 'db' }))
      f.put(RESOURCES.services, svc('web-sys', 3, 'kube-system', { app: 'web' }))
    })
    await informer.synced
    expect(informer.list().map((o) => o.metadata.name)).toEqual(['web1'])
    await eventually(() => fake.watchCount === 1)
    // Relabelled out of the selection: it leaves the cache.
    fake.put(RESOURCES.services, svc('web1', 1, 'default', { app: 'db' }))
    fake.put(RESOURCES.services, svc('db1', 2, 'default', { app: 'web' }))
    await eventually(() => informer.get('default', 'db1') !== undefined && informer.get('default', 'web1') === undefined)
    expect(informer.size).toBe(1)
  })

  test('a throwing onChange is reported and does not stop it', async () => {
    const errors: unknown[] = []
    const { fake, informer } = await rig({}, {
      onChange: (c) => {
        if (c.object.metadata.name === 'bad') throw new Error('handler bug')
      },
      onError: (e, phase) => errors.push([phase, (e as Error).message])
    })
    await informer.synced
    await eventually(() => fake.watchCount === 1)
    fake.put(RESOURCES.services, svc('bad'))
    fake.put(RESOURCES.services, svc('good'))
    await eventually(() => informer.get('default', 'good') !== undefined)
    expect(errors).toEqual([['handler', 'handler bug']])
    expect(informer.stats.lists).toBe(1)
  })

  test('the AbortSignal stops it and closes its watch', async () => {
    const { fake, informer } = await rig()
    await informer.synced
    await eventually(() => fake.watchCount === 1)
    stop!.abort()
    await informer.run()
    await eventually(() => fake.watchCount === 0, 5000, 'the watch to close')
    const requests = fake.requests.length
    await new Promise((r) => setTimeout(r, 100))
    expect(fake.requests.length).toBe(requests)
  })

  test('it keeps working against a server that ends watches early (timeoutSeconds)', async () => {
    const { fake, informer } = await rig({}, { watchTimeoutSeconds: 1, minWatchMs: 0 })
    await informer.synced
    await eventually(() => informer.stats.resumes >= 1, 5000, 'the server to end a watch')
    fake.put(RESOURCES.services, svc('late'))
    await eventually(() => informer.get('default', 'late') !== undefined)
    expect(informer.stats.lists).toBe(1)
    expect(informer.stats.resumes).toBeGreaterThanOrEqual(1)
  })
})

describe('informer against a server that closes watches at once', () => {
  test('a very short, empty watch counts as a failure: backoff and relist (as client-go)', async () => {
    const { fake, informer, errors } = await rig({}, { minWatchMs: 5000 }, (f) => f.put(RESOURCES.services, svc('a')))
    await informer.synced
    await eventually(() => fake.watchCount === 1)
    // A clean end right away, with nothing delivered.
    expect(fake.endWatches()).toBe(1)
    await eventually(() => informer.stats.lists >= 2, 5000, 'a relist')
    expect(errors.some((e) => String(e).includes('very short watch'))).toBe(true)
    await eventually(() => fake.watchCount === 1)
    fake.put(RESOURCES.services, svc('b'))
    await eventually(() => informer.get('default', 'b') !== undefined)
  })
})
