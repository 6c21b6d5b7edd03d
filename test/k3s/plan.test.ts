import { describe, expect, it } from 'vitest'
import { isK3sWait, planK3s, type K3sPlan, type K3sWait } from '../../src/projections/k3s-plan.js'
import { k3sClusterToken } from '../../src/log/token.js'
import type { NetworkState } from '../../src/projections/network.js'
import { LogBuilder, join } from '../projections/support.js'
import { TEST_TOKEN } from '../support/fixtures.js'

const CFG = '/var/lib/weft/k3s/config.yaml'
const opts = { tunName: 'weft0', configPath: CFG }

const ip = (i: number): string => `10.1.0.${i + 1}`

function plan (s: NetworkState, b: LogBuilder, a: number, extraArgs: string[] = []): K3sPlan | K3sWait {
  return planK3s(s, b.hex(a), { ...opts, extraArgs })
}

function run (s: NetworkState, b: LogBuilder, a: number, extraArgs: string[] = []): K3sPlan {
  const p = plan(s, b, a, extraArgs)
  if (isK3sWait(p)) throw new Error(`node ${a} waits: ${p.wait}`)
  return p
}

function waits (s: NetworkState, b: LogBuilder, a: number): string {
  const p = plan(s, b, a)
  if (!isK3sWait(p)) throw new Error(`node ${a} runs ${p.args.join(' ')}`)
  return p.wait
}

/** Every author learns everything and acknowledges the master its replica shows (its agent's vote), then all sync. */
function everyoneCatchesUp (b: LogBuilder, authors: readonly number[]): void {
  for (const a of authors) b.ack(a, 'default', { seesAll: true })
  b.syncAll()
}

describe('planK3s', () => {
  it('4 nodes with serverCount=3: one init master, two servers, one agent, with exact command lines', () => {
    const b = new LogBuilder(4)
    b.setting(0, 'serverCount', 3)
    for (let a = 0; a < 4; a++) {
      b.append(a, 'node.join', join(`n${a}`), { seesAll: true })
      b.append(a, 'ip.claim', { addr: ip(a) })
    }
    everyoneCatchesUp(b, [0, 1, 2, 3])
    const s = b.stateOf(0)
    const url = 'https://10.1.0.1:6443'
    expect(run(s, b, 0)).toEqual({
      role: 'init',
      cluster: 'default',
      nodeIp: '10.1.0.1',
      master: b.hex(0),
      args: ['server', '--config', CFG, '--cluster-init', '--node-ip', '10.1.0.1', '--flannel-iface', 'weft0', '--tls-san', '10.1.0.1']
    })
    expect(run(s, b, 1)).toEqual({
      role: 'server',
      cluster: 'default',
      nodeIp: '10.1.0.2',
      master: b.hex(0),
      serverUrl: url,
      args: ['server', '--config', CFG, '--server', url, '--node-ip', '10.1.0.2', '--flannel-iface', 'weft0', '--tls-san', '10.1.0.2']
    })
    expect(run(s, b, 2).args).toEqual(['server', '--config', CFG, '--server', url, '--node-ip', '10.1.0.3', '--flannel-iface', 'weft0', '--tls-san', '10.1.0.3'])
    // k3s agents have no --tls-san flag.
    expect(run(s, b, 3)).toEqual({
      role: 'agent',
      cluster: 'default',
      nodeIp: '10.1.0.4',
      master: b.hex(0),
      serverUrl: url,
      args: ['agent', '--config', CFG, '--server', url, '--node-ip', '10.1.0.4', '--flannel-iface', 'weft0']
    })
    // Every replica that has seen the same log plans the same.
    for (let a = 1; a < 4; a++) expect(run(b.stateOf(a), b, 3)).toEqual(run(s, b, 3))
  })

  it('appends --k3s-arg flags as given, and never puts the cluster token on the command line', () => {
    const b = new LogBuilder(2)
    b.append(0, 'node.join', join('n0'))
    b.append(0, 'ip.claim', { addr: ip(0) })
    b.append(1, 'node.join', join('n1'), { seesAll: true })
    b.append(1, 'ip.claim', { addr: ip(1) })
    everyoneCatchesUp(b, [0, 1])
    const s = b.stateOf(1)
    expect(run(s, b, 0, ['--disable', 'traefik', '--node-label=zone=a']).args.slice(-3)).toEqual(['--disable', 'traefik', '--node-label=zone=a'])
    const secret = k3sClusterToken(TEST_TOKEN, 'default')
    for (const a of [0, 1]) expect(run(s, b, a).args.join(' ')).not.toContain(secret)
  })

  it('a forced master: nothing starts while the decision is tentative; once stable it is init and the others join it', () => {
    const b = new LogBuilder(3)
    // Three nodes booting at once: nobody has seen anybody.
    b.append(0, 'node.join', join('n0'))
    b.append(1, 'node.join', join('n1', 'default', 'master'))
    b.append(2, 'node.join', join('n2'))
    for (let a = 0; a < 3; a++) b.append(a, 'ip.claim', { addr: ip(a) })
    // Everyone now has every event, but no event follows the decision yet: tentative.
    b.syncAll()
    const tentative = b.stateOf(0)
    for (let a = 0; a < 3; a++) expect(isK3sWait(plan(tentative, b, a))).toBe(true)
    expect(waits(tentative, b, 1)).toMatch(/tentative: acting only on a stable decision/)
    expect(plan(tentative, b, 1)).toMatchObject({ role: 'init', cluster: 'default' })

    everyoneCatchesUp(b, [0, 1, 2])
    const s = b.stateOf(2)
    const url = 'https://10.1.0.2:6443'
    expect(run(s, b, 1).args).toEqual(['server', '--config', CFG, '--cluster-init', '--node-ip', '10.1.0.2', '--flannel-iface', 'weft0', '--tls-san', '10.1.0.2'])
    expect(run(s, b, 0).args).toEqual(['agent', '--config', CFG, '--server', url, '--node-ip', '10.1.0.1', '--flannel-iface', 'weft0'])
    expect(run(s, b, 2).args).toEqual(['agent', '--config', CFG, '--server', url, '--node-ip', '10.1.0.3', '--flannel-iface', 'weft0'])
  })

  it('a late joiner waits until it has acknowledged the decision, and leaves the others\' plans alone', () => {
    const b = new LogBuilder(4)
    for (let a = 0; a < 3; a++) {
      b.append(a, 'node.join', join(`n${a}`), { seesAll: true })
      b.append(a, 'ip.claim', { addr: ip(a) })
    }
    everyoneCatchesUp(b, [0, 1, 2])
    const before = b.stateOf(0)
    const plansBefore = [0, 1, 2].map((a) => run(before, b, a))
    expect(plansBefore.map((p) => p.role)).toEqual(['init', 'agent', 'agent'])

    b.append(3, 'node.join', join('n3'), { seesAll: true })
    b.append(3, 'ip.claim', { addr: ip(3) })
    const joined = b.stateOf(3)
    expect(waits(joined, b, 3)).toMatch(/tentative until it has acknowledged/)
    expect(plan(joined, b, 3)).toMatchObject({ role: 'agent' })
    // The cluster's decision stays stable: the members already running keep their command lines.
    for (const a of [0, 1, 2]) expect(run(joined, b, a)).toEqual(plansBefore[a])

    everyoneCatchesUp(b, [3])
    const after = b.stateOf(0)
    expect(run(after, b, 3).args).toEqual(['agent', '--config', CFG, '--server', 'https://10.1.0.1:6443', '--node-ip', '10.1.0.4', '--flannel-iface', 'weft0'])
  })

  it('waits without an overlay address (its own or the master\'s), for a client, before any join, and when the master is gone', () => {
    const b = new LogBuilder(4)
    b.append(0, 'node.join', join('n0'))
    b.append(1, 'node.join', join('n1'), { seesAll: true })
    b.append(2, 'node.join', join('n2', 'default', 'client'), { seesAll: true })
    everyoneCatchesUp(b, [0, 1, 2])
    let s = b.stateOf(0)
    expect(waits(s, b, 3)).toBe('this node is not a member of the network yet')
    expect(waits(s, b, 0)).toBe('this node has no overlay address yet')
    expect(plan(s, b, 2)).toMatchObject({ role: 'none', wait: expect.stringContaining('client') })
    b.append(1, 'ip.claim', { addr: ip(1) }, { seesAll: true })
    s = b.stateOf(1)
    expect(waits(s, b, 1)).toMatch(/init master .* has no overlay address yet/)
    b.append(0, 'ip.claim', { addr: ip(0) }, { seesAll: true })
    expect(run(b.stateOf(0), b, 1).serverUrl).toBe('https://10.1.0.1:6443')
    // dynamicRoles is off: the master leaves and nothing flips; nothing new starts either.
    b.append(0, 'node.leave', {}, { seesAll: true })
    expect(waits(b.stateOf(0), b, 1)).toMatch(/init master of cluster default left/)
  })

  it('joins an online server of the control plane: the init master first, never a stopped one while another is up', () => {
    const b = new LogBuilder(4)
    b.setting(0, 'serverCount', 2)
    for (let a = 0; a < 4; a++) {
      b.append(a, 'node.join', join(`n${a}`), { seesAll: true })
      b.append(a, 'ip.claim', { addr: ip(a) })
    }
    everyoneCatchesUp(b, [0, 1, 2, 3])
    const s = b.stateOf(3)
    expect(run(s, b, 0).role).toBe('init')
    expect(run(s, b, 1).role).toBe('server')
    const at = (a: number, online: ReadonlySet<number>): string | undefined => {
      const p = planK3s(s, b.hex(a), { ...opts, online: (x) => [...online].some((i) => b.hex(i) === x) })
      if (isK3sWait(p)) throw new Error(p.wait)
      return p.serverUrl
    }
    expect(at(3, new Set([0, 1, 2, 3]))).toBe('https://10.1.0.1:6443')
    // The init master is stopped: the agent is pointed at the other server.
    expect(at(3, new Set([1, 2, 3]))).toBe('https://10.1.0.2:6443')
    // A server never joins itself; with the init master down and no other server, the init master.
    expect(at(1, new Set([1, 2, 3]))).toBe('https://10.1.0.1:6443')
    expect(at(2, new Set([2]))).toBe('https://10.1.0.1:6443')
  })
})
