/**
 * System test of authority and revocation: four machines, each a network namespace on one bridge
 * running `weft up` (TUN on) with a token whose owner key lives outside every node. Checked:
 *   1. an ordinary member's evict, settings change and grant are refused with clear errors;
 *   2. the owner revokes one node through the CLI (revoke + transport key rotation);
 *   3. the revoked node is cut off: its old identity and a fresh identity minted on the same
 *      machine with the old token both stay without a connection to any member;
 *   4. the other three keep their VPN (ping over the overlay) without a restart, every event
 *      acknowledged before the revocation is still there, and they agree.
 * Needs root, `ip netns`, /dev/net/tun and `ping`; skipped with the reason printed otherwise.
 */
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { formatToken, newToken } from '../../src/log/token.js'
import { TEST_OWNER } from '../support/fixtures.js'
import {
  NetnsLab, disagreement, tunNetnsSupport, startWeft, stateOf, tail, waitApi, waitFor, weftApi,
  type LabHost, type StateSummary, type WeftNode
} from './netns.js'

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))

const sup = tunNetnsSupport()
if (!sup.ok) console.warn(`skipping test/system/netns-authority.test.ts: ${sup.reason}`)

interface Status { author: string, peers: { connected: number } }

describe.skipIf(!sup.ok)('authority and revocation between nodes in network namespaces', () => {
  let lab: NetnsLab | undefined
  const token = formatToken(newToken(TEST_OWNER.publicKey))
  const nodes: WeftNode[] = []
  const addr: string[] = []
  let ownerKey = ''
  const L = (): NetnsLab => lab as NetnsLab
  const node = (i: number): WeftNode => nodes[i] as WeftNode

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`)
    lab = await NetnsLab.create(4, { hostnamePrefix: 'auth', subnet: '10.78.0' })
    ownerKey = join(lab.dir, 'owner.key')
    await writeFile(ownerKey, TEST_OWNER.exportPem(), { mode: 0o600 })
  }, 60_000)
  afterAll(async () => { await lab?.destroy() }, 60_000)

  async function withLogs<T> (fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      const logs = await Promise.all(nodes.map(async (n) => `--- ${n.host.hostname} ---\n${await tail(n.proc.logFile, 15)}`))
      ;(err as Error).message += `\n${logs.join('\n')}`
      throw err
    }
  }
  const weft = async (i: number, args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> =>
    await L().exec(node(i).host, [process.execPath, CLI, ...args, '--data-dir', node(i).dataDir], 120_000)
  const ping = async (from: LabHost, to: string): Promise<boolean> => (await L().exec(from, ['ping', '-n', '-c', '1', '-W', '1', to], 10_000)).code === 0

  it('four token-only nodes agree and reach each other over the overlay', async () => {
    const l = L()
    await withLogs(async () => {
      for (const h of l.hosts) nodes.push(startWeft(l, h, CLI, token))
      await Promise.all(nodes.map(async (n) => { await waitApi(n, 60_000) }))
      let states: StateSummary[] = []
      await waitFor(async () => {
        states = await Promise.all(nodes.map(async (n) => await stateOf(l, n)))
        return disagreement(states, 4) === undefined
      }, () => `agreement of 4 nodes: ${disagreement(states, 4) ?? 'yes'}`, 60_000, 200)
      for (let i = 0; i < 4; i++) {
        const me = (await weftApi<Status>(l, node(i), 'GET', '/status')).author
        addr[i] = (states[0] as StateSummary).members.find((m) => m.author === me)?.address as string
      }
      await waitFor(async () => await ping(node(0).host, addr[1] as string), 'A to ping B over the overlay', 30_000, 200)
    })
  }, 120_000)

  it('an ordinary member cannot evict, change settings or grant', async () => {
    await withLogs(async () => {
      const evict = await weft(1, ['node', 'evict', 'auth-3', '--owner-key', '/nonexistent/owner.key'])
      expect(evict.code).toBe(2)
      expect(evict.stderr).toMatch(/needs the network owner's signature/)
      const set = await weft(1, ['settings', 'set', 'overlayCidr', '172.31.0.0/30', '--owner-key', '/nonexistent/owner.key'])
      expect(set.code).toBe(2)
      const grant = await weft(1, ['admin', 'grant', 'auth-2', '--owner-key', '/nonexistent/owner.key'])
      expect(grant.code).toBe(2)
      const s = await stateOf(L(), node(0))
      expect(s.members.map((m) => m.hostname).sort()).toEqual(['auth-1', 'auth-2', 'auth-3', 'auth-4'])
    })
  }, 240_000)

  it('the owner revokes a node: neither its old identity nor a fresh one with the old token gets back in; the rest keep their VPN', async () => {
    const l = L()
    await withLogs(async () => {
      const mtu = await weft(0, ['settings', 'set', 'mtu', '1380', '--owner-key', ownerKey])
      expect(mtu.code, mtu.stderr).toBe(0)
      await waitFor(async () => (await Promise.all(nodes.map(async (n) => (await stateOf(l, n)).settings.mtu))).every((v) => v === 1380), 'mtu 1380 on all four', 30_000, 200)
      const before = await Promise.all(nodes.slice(0, 3).map(async (n) => (await stateOf(l, n)).events))

      const r = await weft(0, ['node', 'revoke', 'auth-4', '--owner-key', ownerKey, '--reason', 'stolen'])
      expect(r.code, r.stderr).toBe(0)
      const rest = nodes.slice(0, 3)
      await waitFor(async () => (await Promise.all(rest.map(async (n) => (await stateOf(l, n)).members.map((m) => m.hostname).sort().join()))).every((m) => m === 'auth-1,auth-2,auth-3'), 'auth-4 gone from every view', 30_000, 200)
      await waitFor(async () => (await Promise.all(rest.map(async (n) => (await weftApi<{ epoch: number }>(l, n, 'GET', '/token')).epoch))).every((e) => e === 1), 'epoch 1 on the remaining members', 30_000, 200)
      // The revoked node is disconnected from everyone.
      await waitFor(async () => (await weftApi<Status>(l, node(3), 'GET', '/status')).peers.connected === 0, 'the revoked node to lose every connection', 30_000, 200)

      // Its machine restarts it, then mints a fresh identity with the old token: neither gets a
      // connection. Each is observed for a window long enough for mDNS discovery and several
      // dial rounds (members find each other within about a second in this lab).
      await l.stop(node(3).proc)
      const cutOff = async (n: WeftNode, what: string): Promise<void> => {
        await waitApi(n, 60_000)
        const until = Date.now() + 12_000
        while (Date.now() < until) {
          expect((await weftApi<Status>(l, n, 'GET', '/status')).peers.connected, what).toBe(0)
          await new Promise((resolve) => setTimeout(resolve, 500))
        }
        await l.stop(n.proc)
      }
      await cutOff(startWeft(l, node(3).host, CLI, token), 'the revoked identity, restarted, connected')
      const freshDir = join(l.dir, 'fresh-4')
      const fresh: WeftNode = {
        host: node(3).host,
        dataDir: freshDir,
        proc: l.spawn(node(3).host, [process.execPath, CLI, 'up', '--token', token, '--data-dir', freshDir, '--hostname', 'auth-4b'], { logFile: `${freshDir}.log`, env: { ...process.env, WEFT_TOKEN: '', WEFT_DATA_DIR: '' } }),
        spawnedAt: performance.now()
      }
      await cutOff(fresh, 'a fresh identity with the old token connected')
      // It was refused for the right reason: the old transport key from a non-member.
      const logs = await Promise.all(rest.map(async (n) => await tail(n.proc.logFile, 2000)))
      expect(logs.some((t) => t.includes('old transport key from a peer that is not a member')), 'a member logged the refusal of the old key').toBe(true)
      for (const n of rest) expect((await stateOf(l, n)).members.map((m) => m.hostname)).not.toContain('auth-4b')

      // The three go on: overlay pings, agreement, nothing acknowledged lost.
      await waitFor(async () => await ping(node(1).host, addr[2] as string), 'B to ping C over the overlay after the rotation', 30_000, 200)
      await waitFor(async () => await ping(node(2).host, addr[0] as string), 'C to ping A over the overlay after the rotation', 30_000, 200)
      const after = await Promise.all(rest.map(async (n) => await stateOf(l, n)))
      after.forEach((s, i) => { expect(s.events).toBeGreaterThanOrEqual(before[i] as number) })
      expect(disagreement(after, 3)).toBeUndefined()
    })
  }, 300_000)
})
