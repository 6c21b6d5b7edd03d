import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { readFile, writeFile } from 'node:fs/promises'
import { fromHex, toHex } from '../../src/log/bytes.js'
import { openTrusted, signEvent, type EventFields, type SignedEvent } from '../../src/log/event.js'
import { identityFromPem } from '../../src/log/identity.js'
import { formatToken, newToken, networkIdBytes, parseToken } from '../../src/log/token.js'
import { TEST_OWNER } from '../support/fixtures.js'
import { weft } from '../cli/helpers.js'
import { startDaemon, tempDir, waitFor, type DaemonProc } from './daemons.js'

/**
 * Authority through real `weft up` processes on loopback: an ordinary member's attempts to
 * evict, renumber, route 8.0.0.0/8 or revoke are refused with clear errors (and a crafted event
 * doing it changes nothing anywhere); the owner, whose key lives outside every node, revokes a
 * member through the CLI; the revoked member is cut off, and the others go on.
 */
describe('authority on a network with an owner (processes on loopback)', () => {
  const rootToken = newToken(TEST_OWNER.publicKey)
  const token = formatToken(rootToken)
  const net = networkIdBytes(rootToken)
  let root: { dir: string, cleanup: () => Promise<void> }
  let ownerKey: string
  const nodes: DaemonProc[] = []
  const others: DaemonProc[] = []

  const api = (d: DaemonProc): string[] => ['--data-dir', d.dataDir]
  const members = async (d: DaemonProc): Promise<string[]> =>
    ((await d.get('/api/v1/state')).view.members as Array<{ hostname: string }>).map((m) => m.hostname).sort()

  beforeAll(async () => {
    root = await tempDir('weft-authority-')
    ownerKey = join(root.dir, 'owner.key')
    await writeFile(ownerKey, TEST_OWNER.exportPem(), { mode: 0o600 })
    nodes.push(await startDaemon({ token, dataDir: join(root.dir, 'n0'), name: 'n0' }))
    for (const i of [1, 2, 3]) nodes.push(await startDaemon({ token, dataDir: join(root.dir, `n${i}`), name: `n${i}`, peers: [nodes[0]!.listen[0] as string] }))
    await waitFor(async () => (await Promise.all(nodes.map(members))).every((m) => m.length === 4), '4 members everywhere', 60_000)
  }, 120_000)
  afterAll(async () => {
    await Promise.all([...nodes, ...others].map(async (d) => await d.stop()))
    await root?.cleanup()
  }, 180_000)

  it('an ordinary member cannot evict, renumber, revoke or grant: clear errors, nothing appended', async () => {
    const n1 = nodes[1] as DaemonProc
    const evict = await weft(['node', 'evict', 'n2', ...api(n1), '--owner-key', join(root.dir, 'nope.key')])
    expect(evict.code).toBe(2)
    expect(evict.stderr).toMatch(/node\.evict needs the network owner's signature, and there is no owner key at .*nope\.key/)
    const settings = await weft(['settings', 'set', 'overlayCidr', '172.31.0.0/30', ...api(n1), '--owner-key', join(root.dir, 'nope.key')])
    expect(settings.code).toBe(2)
    const put = await fetch(`${n1.url}/api/v1/settings/overlayCidr`, { method: 'PUT', headers: { authorization: `Bearer ${n1.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ value: '172.31.0.0/30' }) })
    expect(put.status).toBe(403)
    expect(((await put.json()) as { error: { message: string } }).error.message).toMatch(/owner's signature/)
    // A key that is not the owner's is named as such.
    const wrongKey = join(root.dir, 'wrong.key')
    await writeFile(wrongKey, (await readFile(join(n1.dataDir, 'identity.key'), 'utf8')), { mode: 0o600 })
    const wrong = await weft(['admin', 'grant', 'n1', ...api(n1), '--owner-key', wrongKey])
    expect(wrong.code).toBe(2)
    expect(wrong.stderr).toMatch(/is not this network's owner key/)
    expect((await nodes[0]!.get('/api/v1/state')).view.authority.refusedTotal).toBe(0)
  }, 180_000)

  it('a crafted evict and an 8.0.0.0/8 route by a member are refused by every replica (ERR_UNAUTHORISED) and change nothing', async () => {
    const n1 = nodes[1] as DaemonProc
    const key = identityFromPem(await readFile(join(n1.dataDir, 'identity.key'), 'utf8'))
    const page = await n1.get('/api/v1/events?limit=1000')
    const mine = (page.events as Array<{ envelope: string }>).map((e) => openTrusted(Buffer.from(e.envelope, 'base64'), net))
      .filter((e) => e.authorHex === key.authorHex).sort((a, b) => b.fields.seq - a.fields.seq)
    const head = mine[0] as SignedEvent
    const craft = (prev: SignedEvent, type: string, body: unknown): SignedEvent => signEvent({
      v: 1, net, author: key.publicKey, seq: prev.fields.seq + 1, prev: prev.id, deps: [], lamport: prev.fields.lamport + 1, time: 0, type, body
    } as unknown as EventFields, key)
    const n2 = (await n1.get('/api/v1/state')).view.members.find((m: { hostname: string }) => m.hostname === 'n2') as { author: string }
    const evict = craft(head, 'node.evict', { peer: fromHex(n2.author), reason: 'takeover' })
    const route = craft(evict, 'route.advertise', { cidr: '8.0.0.0/8' })
    const res = await fetch(`${n1.url}/api/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${n1.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ envelopes: [evict, route].map((e) => Buffer.from(e.envelope).toString('base64')) })
    })
    expect(res.status).toBe(200)
    await waitFor(async () => (await Promise.all(nodes.map(async (d) => (await d.get('/api/v1/state')).view.authority.refusedTotal as number))).every((n) => n === 2), 'every replica to refuse both events', 30_000)
    for (const d of nodes) {
      const v = (await d.get('/api/v1/state')).view
      expect(v.members.map((m: { hostname: string }) => m.hostname).sort()).toEqual(['n0', 'n1', 'n2', 'n3'])
      expect(v.routes.routes.filter((r: { kind: string }) => r.kind === 'advertised')).toEqual([])
      expect(v.authority.refused.map((r: { type: string, code: string }) => `${r.type} ${r.code}`)).toEqual(['node.evict ERR_UNAUTHORISED', 'route.advertise ERR_UNAUTHORISED'])
    }
  }, 180_000)

  it('the owner changes a setting through any node, with its key outside the nodes', async () => {
    const r = await weft(['settings', 'set', 'mtu', '1380', ...api(nodes[2] as DaemonProc), '--owner-key', ownerKey])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    await waitFor(async () => (await Promise.all(nodes.map(async (d) => (await d.get('/api/v1/settings')).values.mtu as number))).every((v) => v === 1380), 'mtu 1380 everywhere', 30_000)
  }, 180_000)

  it('the owner revokes a member: it leaves every view, its address is free, the transport key rotates; the rest go on', async () => {
    const victim = nodes[3] as DaemonProc
    const r = await weft(['node', 'revoke', 'n3', '--reason', 'stolen', ...api(nodes[0] as DaemonProc), '--owner-key', ownerKey, '--json'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout) as { revoked: { type: string }, rotated: { type: string } }
    expect(out.revoked.type).toBe('node.revoke')
    expect(out.rotated.type).toBe('network.rotate')
    const rest = nodes.slice(0, 3)
    await waitFor(async () => (await Promise.all(rest.map(members))).every((m) => m.join() === 'n0,n1,n2'), 'n3 gone from every view', 30_000)
    for (const d of rest) {
      const v = (await d.get('/api/v1/state')).view
      expect(v.authority.revoked.map((x: { author: string }) => x.author)).toEqual([toHex(identityFromPem(await readFile(join(victim.dataDir, 'identity.key'), 'utf8')).publicKey)])
      expect(v.ipam.leases.map((l: { author: string }) => l.author)).not.toContain(v.authority.revoked[0].author)
    }
    // Every remaining member opens the sealed key and hands out the new token.
    await waitFor(async () => (await Promise.all(rest.map(async (d) => (await d.get('/api/v1/token')).epoch as number))).every((e) => e === 1), 'epoch 1 on every remaining member', 30_000)
    const shown = await weft(['token', 'show', ...api(nodes[1] as DaemonProc)])
    expect(shown.code).toBe(0)
    const next = parseToken(shown.stdout.trim())
    expect(next.epoch).toBe(1)
    expect(toHex(next.owner as Uint8Array)).toBe(TEST_OWNER.authorHex)
    // The revoked node is cut off from every member (it may not even learn of its revocation).
    await waitFor(async () => (await victim.get('/api/v1/status')).peers.connected === 0, 'the revoked node to lose every connection', 30_000)
    // The others still agree on new events.
    const set = await weft(['settings', 'set', 'mtu', '1360', ...api(nodes[1] as DaemonProc), '--owner-key', ownerKey])
    expect(set.code).toBe(0)
    await waitFor(async () => (await Promise.all(rest.map(async (d) => (await d.get('/api/v1/settings')).values.mtu as number))).every((v) => v === 1360), 'mtu 1360 on the remaining members', 30_000)
    // A machine with the new token joins.
    const late = await startDaemon({ token: shown.stdout.trim(), dataDir: join(root.dir, 'late'), name: 'late', peers: [nodes[0]!.listen[0] as string] })
    others.push(late)
    await waitFor(async () => (await members(nodes[0] as DaemonProc)).includes('late'), 'a node with the new token to join', 30_000)
  }, 240_000)
})
