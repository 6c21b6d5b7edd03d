/**
 * libp2p's TCP transport, with dials to public addresses leaving from the listening port: what
 * TCP hole punching (DCUtR) needs and Node 20's `net` cannot do (docs/mesh.md "4. Hole punching").
 *
 * Two parts, used together with public discovery (host.ts):
 * - `reusePortTcp()`: @libp2p/tcp's transport whose IPv4 listeners share their port
 *   (SO_REUSEPORT, reuseport-socket.ts) and whose dials to a public IPv4 address (after
 *   `--public-ranges`) bind that port before connect(2). A NAT that keeps ports then maps the
 *   listening port itself, the public nodes observe `<public ip>:<listening port>`, and DCUtR's
 *   two crossing dials meet the mappings the other side made (a TCP simultaneous open).
 *   Private addresses are dialled as before (a LAN needs no punching).
 * - `observedListenAddrs()`: a service that confirms such an observed address, so libp2p
 *   announces it and DCUtR sends it. identify ignores every observed TCP address (their ports
 *   were ephemeral until now) and AutoNAT, which would confirm them, is off with public discovery
 *   (host.ts): confirmed here are only observations whose port is a shared listening port, i.e.
 *   the NAT kept the port our dial left from; a symmetric NAT's random ports are never announced.
 *
 * Fallback: without koffi, off Linux, or when the listening socket cannot be shared, every dial is
 * Node's own (as before: no hole punching); said once in the log and in `weft status`
 * (`reusePortProblem`). A dial that cannot leave from the port (its four-tuple is taken:
 * EADDRINUSE/EADDRNOTAVAIL, the same peer address already connected from this port or in
 * TIME_WAIT; or a socket call failed before connect) leaves from an ephemeral port.
 */
import type { Server, Socket } from 'node:net'
import { tcp } from '@libp2p/tcp'
import { isPrivateIp, getNetConfig } from '@libp2p/utils'
import { TCP } from '@multiformats/multiaddr-matcher'
import type { ComponentLogger, Upgrader, IdentifyResult, Listener, Transport, TypedEventTarget, Libp2pEvents } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { PUNCH_NONCES_OPTION, settleOnSocket } from './simultaneous-open.js'
import { dialFromPort, EADDRINUSE, EADDRNOTAVAIL, sharePort, socketCalls, SocketCallError, type PortDial } from './reuseport-socket.js'

/** How long a confirmed observed address stays announced without a new observation. */
const OBSERVED_TTL_MS = 10 * 60_000

type TcpFactory = ReturnType<typeof tcp>
type TcpComponents = Parameters<TcpFactory>[0]
interface TcpInternals {
  _connect: (ma: Multiaddr, options: { signal: AbortSignal, keepAlive?: boolean, noDelay?: boolean, priority?: number, upgrader?: Upgrader }) => Promise<Socket>
  createListener: (options: unknown) => Listener
}

/** The part of libp2p's address manager used here (@libp2p/interface-internal, not a dependency of ours). */
interface ObservedAddressBook {
  confirmObservedAddr: (addr: Multiaddr, options?: { type?: 'observed', ttl?: number }) => void
}

let problem: { message: string, fix: string } | undefined
let told = false

/** Why dials cannot leave from the listening port (no hole punching), with the fix; undefined when they can. */
export function reusePortProblem (): { message: string, fix: string } | undefined {
  return problem
}

/** For tests: forget an earlier fallback. */
export function resetReusePortProblem (): void {
  problem = undefined
  told = false
}

function fellBack (why: string, log: (msg: string) => void): void {
  problem = {
    message: `TCP dials cannot leave from the listening port (${why}), so hole punching cannot work and members behind NATs stay relayed`,
    fix: 'run weft on Linux with its dependencies installed (npm ci: koffi); unset WEFT_REUSEPORT=off if it is set'
  }
  if (told) return
  told = true
  log(`${problem.message}; ${problem.fix}`)
}

/**
 * A dial to a member from the shared port may be one half of a hole punch (DCUtR's dials, its
 * unilateral attempt, the mesh's dial to an announced address): when it is refused, the other
 * side's NAT answered our SYN with a reset because the other side's own SYN had not left yet (a
 * router answers for a port it maps nothing to), and a moment later the mapping is there. Tried again every PUNCH_RETRY_MS while the dial's signal
 * allows, at most PUNCH_TRIES times. A NAT that drops such a SYN instead needs no retry: the
 * kernel's own SYN retransmission passes once the mapping is open.
 */
/** @libp2p/dcutr's dial priority (not exported): how its dials are told from others. */
const DCUTR_DIAL_PRIORITY = 100
/**
 * How long a dial to a member's public address waits outside DCUtR (libp2p's own per-address
 * timeout is 6 s): a port-restricted member's announced address drops every SYN but its punch
 * partner's, and members that cannot punch (a symmetric NAT) must reach its relay address in time.
 */
const MEMBER_DIAL_MS = 2_000
const PUNCH_RETRY_MS = 100
const PUNCH_TRIES = 20
const ECONNREFUSED = 111
const EINVAL = 22

async function punchDial (d: PortDial): Promise<Socket> {
  for (let i = 1; ; i++) {
    try {
      return await dialFromPort(d)
    } catch (err) {
      if (!(err instanceof SocketCallError) || err.errno !== ECONNREFUSED || i >= PUNCH_TRIES) throw err
    }
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => { d.signal.removeEventListener('abort', stop); resolve() }, PUNCH_RETRY_MS)
      const stop = (): void => { clearTimeout(t); reject(d.signal.reason) }
      d.signal.addEventListener('abort', stop, { once: true })
    })
  }
}

/** The upgrader, with the dialled connection handed over as an inbound one (the responder of a simultaneous open). */
function respondingUpgrader (u: Upgrader): Upgrader {
  const out = Object.create(u) as Upgrader
  out.upgradeOutbound = async (maConn, o) => {
    (maConn as { direction: 'inbound' | 'outbound' }).direction = 'inbound'
    return await u.upgradeOutbound(maConn, o)
  }
  return out
}

/** The listening ports dials may leave from, shared between the transport and the observed-address service. */
export class SharedPorts {
  readonly #listeners = new Map<Listener, { ip: string, port: number }>()

  add (l: Listener, ip: string, port: number): void { this.#listeners.set(l, { ip, port }) }
  remove (l: Listener): void { this.#listeners.delete(l) }
  /**
   * A listener to dial `to` from: a wildcard one first (it binds 0.0.0.0, the kernel picks the
   * source address), else one on loopback for loopback and off it otherwise (a socket bound to
   * loopback cannot reach out).
   */
  pick (to: string): { ip: string, port: number } | undefined {
    const all = [...this.#listeners.values()]
    return all.find((l) => l.ip === '0.0.0.0') ?? all.find((l) => l.ip.startsWith('127.') === to.startsWith('127.'))
  }
  hasPort (port: number): boolean { return [...this.#listeners.values()].some((l) => l.port === port) }
}

export interface ReusePortTcp {
  transport: (components: TcpComponents) => Transport
  service: (components: { events: TypedEventTarget<Libp2pEvents>, addressManager: ObservedAddressBook, logger: ComponentLogger }) => object
  ports: SharedPorts
}

export interface ReusePortOptions {
  /** Says a fallback (once). */
  log: (msg: string) => void
  /** Whether a peer's connections are protected (a member): only those settle punch roles on the wire. */
  protectedPeer: (peerId: string) => boolean
}

/** The transport and its service (give both to createLibp2p). */
export function reusePortTcp (opts: ReusePortOptions): ReusePortTcp {
  const log = opts.log
  const ports = new SharedPorts()
  const transport = (components: TcpComponents): Transport => {
    const t = tcp()(components)
    const inner = t as unknown as TcpInternals
    const plainConnect = inner._connect.bind(t)
    const plainListener = inner.createListener.bind(t)
    const tlog = components.logger.forComponent('weft:reuseport-tcp')
    if (socketCalls() === null) {
      fellBack(process.platform !== 'linux' ? 'not Linux' : process.env.WEFT_REUSEPORT === 'off' ? 'WEFT_REUSEPORT=off' : 'koffi cannot reach libc', log)
      return t
    }
    inner.createListener = (options) => {
      const l = plainListener(options)
      l.addEventListener('listening', () => {
        const server = (l as unknown as { server?: Server }).server
        const a = server?.address()
        if (server === undefined || a === null || a === undefined || typeof a === 'string' || a.family !== 'IPv4') return
        if (sharePort(server)) ports.add(l, a.address, a.port)
        else fellBack('SO_REUSEPORT could not be set on the listening socket', log)
      })
      l.addEventListener('close', () => { ports.remove(l) })
      return l
    }
    inner._connect = async (ma, options) => {
      const to = TCP.exactMatch(ma) ? getNetConfig(ma) : undefined
      const from = to?.type === 'ip4' ? ports.pick(to.host) : undefined
      if (from === undefined || to === undefined || to.port === undefined || isPrivateIp(to.host) === true) return await plainConnect(ma, options)
      // A dial to a member may cross the member's own dial to us (DCUtR's always does, the mesh's
      // may: both dial the other's announced address) as one simultaneous open; roles are then
      // settled on the wire (simultaneous-open.ts).
      const peer = ma.getComponents().findLast((c) => c.name === 'p2p')?.value
      const member = (): boolean => peer !== undefined && opts.protectedPeer(peer)
      let punch = member()
      // A member's announced public address may be a NAT's that drops our SYN (only its own
      // punch opens it): outside DCUtR, give up on it soon, so the dial goes on to its relay address.
      const signal = punch && options.priority !== DCUTR_DIAL_PRIORITY ? AbortSignal.any([options.signal, AbortSignal.timeout(MEMBER_DIAL_MS)]) : options.signal
      try {
        const d = { localIp: from.ip, localPort: from.port, remoteIp: to.host, remotePort: to.port, signal }
        const socket = punch ? await punchDial(d) : await dialFromPort(d)
        socket.setNoDelay(options.noDelay ?? true)
        socket.setKeepAlive(options.keepAlive ?? true)
        // Asked again once connected, as the protector will right after: both must agree.
        punch = member()
        if (punch) {
          try {
            const roles = await settleOnSocket(socket, signal)
            // The same options object reaches upgradeOutbound and the protector (@libp2p/tcp's dial).
            Object.assign(options, { initiator: roles.initiator, [PUNCH_NONCES_OPTION]: roles })
            // The responder's raw connection says 'inbound' too: yamux picks client or server by it.
            if (!roles.initiator && options.upgrader !== undefined) options.upgrader = respondingUpgrader(options.upgrader)
            tlog('hole punched to %a from port %d; we %s', ma, from.port, roles.initiator ? 'initiate' : 'respond')
          } catch (err) {
            socket.destroy()
            throw err
          }
        } else {
          tlog('dialled %a from port %d', ma, from.port)
        }
        return socket
      } catch (err) {
        tlog('dial to %a from port %d failed (%s) - %e', ma, from.port, punch ? 'a member' : 'not a member', err)
        if (err instanceof SocketCallError && (err.call !== 'connect' || err.errno === EADDRINUSE || err.errno === EADDRNOTAVAIL || err.errno === EINVAL)) {
          tlog('cannot dial %a from port %d (%s, errno %d): an ephemeral port', ma, from.port, err.call, err.errno)
          return await plainConnect(ma, options)
        }
        if (err instanceof SocketCallError) throw new Error(`connection error ${to.host}:${to.port}: ${err.message}`, { cause: err })
        throw err
      }
    }
    return t
  }
  const service = (components: Parameters<ReusePortTcp['service']>[0]): object => {
    const slog = components.logger.forComponent('weft:reuseport-tcp')
    components.events.addEventListener('peer:identify', (e: CustomEvent<IdentifyResult>) => {
      const observed = e.detail.observedAddr
      if (observed === undefined || !TCP.exactMatch(observed)) return
      const c = getNetConfig(observed)
      if (c.type !== 'ip4' || c.port === undefined || isPrivateIp(c.host) === true || !ports.hasPort(c.port)) return
      slog('%p observes us at %a, a shared listening port: confirmed', e.detail.peerId, observed)
      components.addressManager.confirmObservedAddr(observed, { type: 'observed', ttl: OBSERVED_TTL_MS })
    })
    return {}
  }
  return { transport, service, ports }
}
