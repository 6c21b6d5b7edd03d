import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { RESOURCES, type KubeClient, type KubeObject } from '../../src/adapters/kube/client.js'
import { corednsSetup, findBlock, weftBlock, withBlock, withoutBlock, WEFT_BEGIN, WEFT_END } from '../../src/node/kube-dns-setup.js'
import { startFakeKube, type FakeKube } from '../support/fake-kube.js'

type CM = KubeObject & { data?: Record<string, string> }

/** A kubeadm-style Corefile, with odd spacing and no final newline on purpose. */
const USER_COREFILE = `.:53 {
    errors
    health {
       lameduck 5s
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf   
    cache 30
    reload
}
# my own comment\t
example.org:53 {
    forward . 1.1.1.1
}
`

describe('weft kube dns-setup against the fake API server', () => {
  let fake: FakeKube
  let client: KubeClient
  beforeEach(async () => {
    fake = await startFakeKube()
    client = fake.client()
  })
  afterEach(async () => { await fake.close() })

  const corefile = (name = 'coredns', key = 'Corefile'): string | undefined => fake.get<CM>(RESOURCES.configMaps, 'kube-system', name)?.data?.[key]
  const rv = (name = 'coredns'): string | undefined => fake.get<CM>(RESOURCES.configMaps, 'kube-system', name)?.metadata.resourceVersion
  const putCoredns = (text: string): void => {
    fake.put<CM>(RESOURCES.configMaps, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'coredns', namespace: 'kube-system' }, data: { Corefile: text, other: 'kept' } })
  }

  it('adds the marked block, re-running changes nothing, a new server address updates it, --remove restores the Corefile byte for byte', async () => {
    putCoredns(USER_COREFILE)
    const r1 = await corednsSetup({ client, servers: ['10.1.0.1'] })
    expect(r1).toMatchObject({ action: 'added', configMap: 'coredns', key: 'Corefile', retried: false })
    const after1 = corefile() as string
    expect(after1.startsWith(USER_COREFILE)).toBe(true)
    const added = after1.slice(USER_COREFILE.length)
    expect(added.startsWith(WEFT_BEGIN)).toBe(true)
    expect(added.trimEnd().endsWith(WEFT_END)).toBe(true)
    expect(added).toContain('clusterset.local:53 {')
    expect(added).toContain('weft.internal:53 {')
    expect(added).toContain('forward . 10.1.0.1:53')
    expect(fake.get<CM>(RESOURCES.configMaps, 'kube-system', 'coredns')?.data?.other).toBe('kept')

    const rvBefore = rv()
    const r2 = await corednsSetup({ client, servers: ['10.1.0.1'] })
    expect(r2).toMatchObject({ action: 'unchanged', resourceVersion: rvBefore })
    expect(rv()).toBe(rvBefore)
    expect(fake.count('update', 'configmaps')).toBe(1)

    const r3 = await corednsSetup({ client, servers: ['10.1.0.2:5353'] })
    expect(r3.action).toBe('updated')
    const after3 = corefile() as string
    expect(after3.startsWith(USER_COREFILE)).toBe(true)
    expect(after3).toContain('forward . 10.1.0.2:5353')
    expect(after3).not.toContain('10.1.0.1')
    expect(after3.split(WEFT_BEGIN).length).toBe(2)

    const r4 = await corednsSetup({ client, remove: true })
    expect(r4.action).toBe('removed')
    expect(corefile()).toBe(USER_COREFILE)
    const r5 = await corednsSetup({ client, remove: true })
    expect(r5.action).toBe('absent')
    expect(fake.count('update', 'configmaps')).toBe(3)
  })

  it('a Corefile without a final newline, and user lines after the block, survive byte for byte', async () => {
    const noNewline = USER_COREFILE.trimEnd()
    putCoredns(noNewline)
    await corednsSetup({ client, servers: ['10.1.0.1'], zone: 'corp.example' })
    expect(corefile()).toContain('corp.example:53 {')
    // The user appends after our block: an update keeps their line where it is.
    const withTail = `${corefile() as string}# added later by hand\n`
    putCoredns(withTail)
    await corednsSetup({ client, servers: ['10.9.9.9'], zone: 'corp.example' })
    expect(corefile()?.endsWith('# weft: end\n# added later by hand\n')).toBe(true)
    await corednsSetup({ client, remove: true })
    expect(corefile()).toBe(`${noNewline}# added later by hand\n`)
  })

  it('a 409 from a concurrent edit is retried once on a fresh read, keeping that edit', async () => {
    putCoredns(USER_COREFILE)
    let raced = false
    const racing: KubeClient = {
      ...client,
      get: client.get.bind(client),
      list: client.list.bind(client),
      watch: client.watch.bind(client),
      create: client.create.bind(client),
      replaceStatus: client.replaceStatus.bind(client),
      delete: client.delete.bind(client),
      replace: async (res, ns, obj) => {
        if (!raced) {
          raced = true
          // Someone edits the Corefile between our read and our write.
          putCoredns(`${USER_COREFILE}# concurrent edit\n`)
        }
        return await client.replace(res, ns, obj)
      }
    }
    const r = await corednsSetup({ client: racing, servers: ['10.1.0.1'] })
    expect(r).toMatchObject({ action: 'added', retried: true })
    const text = corefile() as string
    expect(text.startsWith(`${USER_COREFILE}# concurrent edit\n${WEFT_BEGIN}`)).toBe(true)
    expect(fake.count('update', 'configmaps')).toBe(2)
  })

  it('a second conflict is an error (no endless retry)', async () => {
    putCoredns(USER_COREFILE)
    fake.failNext({ verb: 'update', resource: 'configmaps' }, 409, { reason: 'Conflict', times: 2 })
    await expect(corednsSetup({ client, servers: ['10.1.0.1'] })).rejects.toMatchObject({ code: 'Conflict' })
    expect(corefile()).toBe(USER_COREFILE)
  })

  it('k3s: --configmap coredns-custom is created with weft.server, updated in place, and its key removed', async () => {
    const r1 = await corednsSetup({ client, servers: ['10.1.0.1'], configMap: 'coredns-custom' })
    expect(r1).toMatchObject({ action: 'added', key: 'weft.server' })
    expect(corefile('coredns-custom', 'weft.server')).toContain('clusterset.local:53')
    const v = rv('coredns-custom')
    expect((await corednsSetup({ client, servers: ['10.1.0.1'], configMap: 'coredns-custom' })).action).toBe('unchanged')
    expect(rv('coredns-custom')).toBe(v)
    // A user key beside ours is kept.
    const cm = fake.get<CM>(RESOURCES.configMaps, 'kube-system', 'coredns-custom') as CM
    fake.put<CM>(RESOURCES.configMaps, { ...cm, data: { ...cm.data, 'mine.server': 'a:53 {\n}\n' } })
    expect((await corednsSetup({ client, remove: true, configMap: 'coredns-custom' })).action).toBe('removed')
    expect(fake.get<CM>(RESOURCES.configMaps, 'kube-system', 'coredns-custom')?.data).toEqual({ 'mine.server': 'a:53 {\n}\n' })
  })

  it('refusals: no coredns ConfigMap, no --server, broken markers', async () => {
    await expect(corednsSetup({ client, servers: ['10.1.0.1'] })).rejects.toThrow(/no ConfigMap kube-system\/coredns/)
    putCoredns(USER_COREFILE)
    await expect(corednsSetup({ client, servers: [] })).rejects.toThrow(/--server/)
    putCoredns(`${USER_COREFILE}${WEFT_BEGIN}\nfoo\n`)
    await expect(corednsSetup({ client, servers: ['10.1.0.1'] })).rejects.toThrow(/expected one of each/)
  })
})

describe('the marked block, as text', () => {
  it('withBlock then withoutBlock is the identity; replacing keeps the position', () => {
    const block = weftBlock(['10.1.0.1'])
    for (const t of ['', 'a', 'a\n', 'a\r\nb\r\n', USER_COREFILE]) {
      const w = withBlock(t, block)
      expect(findBlock(w)?.text.includes('10.1.0.1')).toBe(true)
      expect(withoutBlock(w)).toBe(t)
      expect(withBlock(w, block)).toBe(w)
      const other = withBlock(w, weftBlock(['10.2.0.2']))
      expect(withoutBlock(other)).toBe(t)
    }
  })
})
