import { afterEach, describe, expect, test } from 'vitest'
import { KubeError, RESOURCES, type KubeClient, type KubeObject, type WatchEventType } from '../../src/adapters/kube/client.js'
import type { Service } from '../../src/adapters/kube/types.js'
import { eventually, startFakeKube, type FakeKube, type FakeKubeOptions } from '../support/fake-kube.js'

const svc = (name: string, labels: Record<string, string> = {}, port = 80): Service => ({
  metadata: { name, labels },
  spec: { ports: [{ port }] }
})

interface Seen {
  type: WatchEventType
  name: string
  rv: number
  labels?: Record<string, string>
}

let fake: FakeKube | undefined
afterEach(async () => {
  await fake?.close()
  fake = undefined
})

async function setup(opts: FakeKubeOptions = {}): Promise<{ fake: FakeKube; client: KubeClient }> {
  fake = await startFakeKube(opts)
  return { fake, client: fake.client() }
}

function watchInto(client: KubeClient, rv: string, seen: Seen[], opts: { namespace?: string; labelSelector?: string; signal?: AbortSignal } = {}): { done: Promise<void>; ac: AbortController } {
  const ac = new AbortController()
  const done = client.watch<KubeObject>(RESOURCES.services, opts.namespace ?? 'default', {
    resourceVersion: rv,
    signal: opts.signal ?? ac.signal,
    ...(opts.labelSelector === undefined ? {} : { labelSelector: opts.labelSelector })
  }, (type, obj) => {
    seen.push({ type, name: obj.metadata.name ?? '', rv: Number(obj.metadata.resourceVersion), ...(obj.metadata.labels === undefined ? {} : { labels: obj.metadata.labels }) })
  })
  return { done, ac }
}

describe('watch', () => {
  test('list then watch: the changes after the list, in order, with increasing resourceVersions', async () => {
    const { fake, client } = await setup()
    await client.create(RESOURCES.services, 'default', svc('before'))
    const list = await client.list(RESOURCES.services, 'default')
    expect(list.items.map((o) => o.metadata.name)).toEqual(['before'])

    const seen: Seen[] = []
    const { done, ac } = watchInto(client, list.resourceVersion, seen)
    await eventually(() => fake.watchCount === 1, 5000, 'the watch to connect')
    const a = await client.create(RESOURCES.services, 'default', svc('a'))
    await client.replace(RESOURCES.services, 'default', { ...a, spec: { ports: [{ port: 81 }] } })
    await client.create(RESOURCES.services, 'default', svc('b'))
    await client.delete(RESOURCES.services, 'default', 'a')
    fake.put(RESOURCES.services, { ...svc('c'), metadata: { name: 'c', namespace: 'kube-public' } }) // another namespace: not seen
    await eventually(() => seen.length >= 4, 5000, 'four events')
    ac.abort()
    await done
    expect(seen.map((e) => [e.type, e.name])).toEqual([['ADDED', 'a'], ['MODIFIED', 'a'], ['ADDED', 'b'], ['DELETED', 'a']])
    const rvs = seen.map((e) => e.rv)
    expect([...rvs].sort((x, y) => x - y)).toEqual(rvs)
    expect(rvs[0]).toBeGreaterThan(Number(list.resourceVersion))
    // The DELETED event carries the deletion's resourceVersion.
    expect(rvs[3]).toBe(rvs[2]! + 1)
    await eventually(() => fake.watchCount === 0, 5000, 'the watch to close')
  })

  test('resuming from an older resourceVersion replays exactly the later events', async () => {
    const { client } = await setup()
    const start = (await client.list(RESOURCES.services, 'default')).resourceVersion
    for (const n of ['x', 'y', 'z']) await client.create(RESOURCES.services, 'default', svc(n))
    const seen: Seen[] = []
    const { done, ac } = watchInto(client, start, seen)
    await eventually(() => seen.length === 3, 5000, 'replay')
    const mid = String(seen[0]!.rv)
    ac.abort()
    await done
    const again: Seen[] = []
    const w2 = watchInto(client, mid, again)
    await eventually(() => again.length === 2, 5000, 'replay from the middle')
    w2.ac.abort()
    await w2.done
    expect(again.map((e) => e.name)).toEqual(['y', 'z'])
  })

  test('410 Gone after compaction, as an ERROR event (the real server) or an HTTP 410', async () => {
    for (const goneAs of ['event', 'status'] as const) {
      const { fake, client } = await setup({ goneAs })
      const old = (await client.list(RESOURCES.services, 'default')).resourceVersion
      await client.create(RESOURCES.services, 'default', svc('a'))
      fake.compact()
      const seen: Seen[] = []
      const err = await watchInto(client, old, seen).done.then(() => undefined, (e: unknown) => e)
      expect(err).toBeInstanceOf(KubeError)
      expect((err as KubeError).code).toBe('Gone')
      expect((err as KubeError).status).toBe(410)
      if (goneAs === 'event') expect((err as KubeError).message).toContain('too old resource version')
      expect(seen).toEqual([])
      // The current version is still fine.
      const ok = watchInto(client, fake.resourceVersion, seen)
      await eventually(() => fake.watchCount === 1, 5000, 'a watch from the current version')
      ok.ac.abort()
      await ok.done
      await fake.close()
    }
  })

  test('a bounded history: the oldest events fall out of the window', async () => {
    const { client } = await setup({ historyLimit: 3 })
    const old = (await client.list(RESOURCES.services, 'default')).resourceVersion
    for (const n of ['a', 'b', 'c', 'd']) await client.create(RESOURCES.services, 'default', svc(n))
    const err = await watchInto(client, old, []).done.then(() => undefined, (e: unknown) => e)
    expect((err as KubeError).code).toBe('Gone')
  })

  test('label selectors on a watch: leaving the selection is DELETED, entering it ADDED', async () => {
    const { fake, client } = await setup()
    const seen: Seen[] = []
    const { done, ac } = watchInto(client, fake.resourceVersion, seen, { labelSelector: 'app=web' })
    await eventually(() => fake.watchCount === 1)
    const s = await client.create(RESOURCES.services, 'default', svc('s', { app: 'web' }))
    await client.create(RESOURCES.services, 'default', svc('other', { app: 'db' }))
    const moved = await client.replace(RESOURCES.services, 'default', { ...s, metadata: { ...s.metadata, labels: { app: 'db' } } })
    await client.replace(RESOURCES.services, 'default', { ...moved, metadata: { ...moved.metadata, labels: { app: 'web' } } })
    await eventually(() => seen.length >= 3)
    ac.abort()
    await done
    expect(seen.map((e) => [e.type, e.name])).toEqual([['ADDED', 's'], ['DELETED', 's'], ['ADDED', 's']])
    // The DELETED one shows the last state that matched, at the version of the change.
    expect(seen[1]!.labels).toEqual({ app: 'web' })
    expect(seen[1]!.rv).toBe(Number(moved.metadata.resourceVersion))
  })

  test('bookmarks carry the current resourceVersion', async () => {
    const { fake, client } = await setup()
    const seen: Seen[] = []
    const { done, ac } = watchInto(client, fake.resourceVersion, seen)
    await eventually(() => fake.watchCount === 1)
    fake.put(RESOURCES.services, { ...svc('elsewhere'), metadata: { name: 'elsewhere', namespace: 'kube-system' } })
    fake.bookmark()
    await eventually(() => seen.length === 1)
    ac.abort()
    await done
    expect(seen[0]!.type).toBe('BOOKMARK')
    expect(String(seen[0]!.rv)).toBe(fake.resourceVersion)
  })

  test('a dropped connection ends the watch with Unavailable; an abort resolves it', async () => {
    const { fake, client } = await setup()
    const w = watchInto(client, fake.resourceVersion, [])
    await eventually(() => fake.watchCount === 1)
    expect(fake.dropWatches()).toBe(1)
    const err = await w.done.then(() => undefined, (e: unknown) => e)
    expect((err as KubeError).code).toBe('Unavailable')

    const w2 = watchInto(client, fake.resourceVersion, [])
    await eventually(() => fake.watchCount === 1)
    w2.ac.abort()
    await expect(w2.done).resolves.toBeUndefined()
    await eventually(() => fake.watchCount === 0, 5000, 'the server to see the connection close')
  })

  test('the server ending the watch (timeoutSeconds) resolves it', async () => {
    const { fake, client } = await setup()
    const ac = new AbortController()
    const t0 = Date.now()
    await client.watch(RESOURCES.services, 'default', { resourceVersion: fake.resourceVersion, signal: ac.signal, timeoutSeconds: 1 }, () => {})
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900)
    expect(fake.requests.at(-1)?.query.timeoutSeconds).toBe('1')
  })

  test('an onEvent that throws ends the watch with its error', async () => {
    const { fake, client } = await setup()
    const ac = new AbortController()
    const boom = new Error('handler failed')
    const p = client.watch(RESOURCES.services, 'default', { resourceVersion: fake.resourceVersion, signal: ac.signal }, () => {
      throw boom
    })
    await eventually(() => fake.watchCount === 1)
    await client.create(RESOURCES.services, 'default', svc('a'))
    await expect(p).rejects.toBe(boom)
    await eventually(() => fake.watchCount === 0, 5000, 'the connection to close')
  })

  test('a watch refused with an HTTP error rejects with its code', async () => {
    const { fake, client } = await setup()
    fake.failNext({ verb: 'watch' }, 403, { reason: 'Forbidden' })
    const err = await watchInto(client, fake.resourceVersion, []).done.then(() => undefined, (e: unknown) => e)
    expect((err as KubeError).code).toBe('Forbidden')
  })
})

test('a watch the server ends cleanly resolves', async () => {
  const { fake, client } = await setup()
  const w = watchInto(client, fake.resourceVersion, [])
  await eventually(() => fake.watchCount === 1)
  expect(fake.endWatches()).toBe(1)
  await expect(w.done).resolves.toBeUndefined()
})
