import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { MemoryLevel } from 'memory-level'
import { IDENTITY_FILE } from '../adapters/identity-file.js'
import { readApiEndpoint } from '../adapters/api-token.js'
import { ApiClient } from './api-client.js'
import { DEFAULT_KUBECONFIG_PATH } from '../adapters/k3s-process.js'
import { Replica } from '../adapters/replica.js'
import { identityFromPem, type NodeIdentity } from '../log/identity.js'
import { identifiers, networkIdBytes, parseToken, type NetworkToken } from '../log/token.js'
import type { EventDb } from '../log/store.js'
import { toHex } from '../log/bytes.js'
import { AntiEntropy } from '../net/anti-entropy.js'
import { createHost, type WeftHost } from '../net/host.js'
import { bridgeKubeconfigError, fetchClusterKubeconfig, KubeconfigError, locateKubeconfigSource, rewriteKubeconfigServer } from '../net/kubeconfig-protocol.js'
import { silentLogger } from '../net/mesh-logger.js'
import { replicaPort } from '../net/replica-port.js'
import { CliError } from './errors.js'
import { hasStore, openReplica } from './data-dir.js'
import { replicaReducers, type ReplicaReducers } from '../projections/reducers.js'

export interface GetKubeconfigOptions {
  token?: string
  tokenFile?: string
  /** Default: the cluster of the data dir's node, else `default`. */
  cluster?: string
  dataDir: string
  peer: string[]
  mdns: boolean
  /** Give up after this long (ms). */
  timeout: number
  /** Progress notes (stderr in the command). */
  note?: (line: string) => void
}

/**
 * `weft get-kubeconfig`: the admin kubeconfig of a cluster, from its init master over the mesh.
 * A short-lived libp2p host with the data dir's node identity (only members may ask) syncs the
 * log from the peers it finds, locates the cluster's stable init master, asks it, and prints
 * the kubeconfig pointed at the master's overlay address.
 */

async function readToken (o: GetKubeconfigOptions): Promise<NetworkToken> {
  if (o.token !== undefined && o.tokenFile !== undefined) throw new CliError('--token and --token-file were both given; pass only one of them')
  let text = o.token
  if (text === undefined && o.tokenFile !== undefined) {
    try {
      text = (await readFile(o.tokenFile, 'utf8')).trim()
    } catch (err) {
      throw new CliError(`cannot read the token file ${o.tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  text ??= process.env.WEFT_TOKEN
  if (text === undefined || text.trim() === '') throw new CliError('no network token: give --token, --token-file or WEFT_TOKEN')
  return parseToken(text)
}

/** The data dir's node key, never created here: a new key would not be a member. */
async function memberIdentity (dataDir: string): Promise<NodeIdentity> {
  const path = join(dataDir, IDENTITY_FILE)
  let mode: number
  try {
    mode = (await stat(path)).mode
  } catch {
    throw new CliError(`no node identity in ${dataDir} (${IDENTITY_FILE}): only members of the network can fetch a kubeconfig; give the --data-dir of a node that joined ("weft up", or "weft bridge" on a workstation)`)
  }
  if ((mode & 0o077) !== 0) throw new CliError(`${path} is readable by others (mode ${(mode & 0o777).toString(8)}); run "chmod 600 ${path}" if it has not leaked`)
  try {
    return identityFromPem(await readFile(path, 'utf8'))
  } catch (err) {
    throw new CliError(`cannot read ${path}: ${(err as Error).message}`)
  }
}

function memoryDb (): EventDb {
  return new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as EventDb
}

/** Everything the data dir's store holds (through the daemon's API while one runs), into `into`. */
async function seedFromDataDir (dataDir: string, net: Uint8Array, into: Replica<ReplicaReducers>, note: (line: string) => void): Promise<void> {
  if (!hasStore(dataDir)) return
  let local
  try {
    local = await openReplica(dataDir)
  } catch (err) {
    note(`cannot read the log in ${dataDir} (${(err as Error).message}); syncing it from peers only`)
    return
  }
  try {
    if (local.netHex !== toHex(net)) throw new CliError(`${dataDir} belongs to network ${local.netHex}, but the token is for network ${toHex(net)}`)
    await into.ingest(local.replica.missingFor(new Map()))
  } finally {
    await local.close()
  }
}

function peerAddr (text: string): { id: PeerId, addr: Multiaddr } {
  let addr: Multiaddr
  try {
    addr = multiaddr(text)
  } catch (err) {
    throw new CliError(`--peer ${text}: not a multiaddr (${(err as Error).message})`)
  }
  const id = addr.getComponents().find((c) => c.name === 'p2p')?.value
  if (id === undefined) throw new CliError(`--peer ${text} has no /p2p/<peer id> part; copy the full address from the other node's "weft status"`)
  return { id: peerIdFromString(id), addr }
}

/** Fetch the kubeconfig; resolves to its text or throws a CliError that says what is missing. */
export async function getKubeconfig (o: GetKubeconfigOptions): Promise<string> {
  const note = o.note ?? (() => {})
  // A daemon holds this data dir: it is already in the mesh with this identity (a second host
  // with the same key could not even dial it), so it fetches for us.
  if (await readApiEndpoint(o.dataDir).catch(() => undefined) !== undefined) {
    const client = await ApiClient.fromDataDir(o.dataDir)
    const cluster = o.cluster ?? (await client.status()).cluster
    return await client.kubeconfig(cluster)
  }
  const token = await readToken(o)
  const net = networkIdBytes(token)
  const ids = identifiers(token)
  const peers = o.peer.map(peerAddr)
  const identity = await memberIdentity(o.dataDir)
  const replica = await Replica.open({ db: memoryDb(), net, reducers: replicaReducers(), sync: false, ...(token.owner !== undefined ? { owner: token.owner } : {}) })
  let host: WeftHost | undefined
  try {
    await seedFromDataDir(o.dataDir, net, replica, note)
    host = await createHost({ token, net, identity, listen: [], mdns: o.mdns, relay: false })
    await host.start()
    return await fetchWith(host, replica, identity, o, peers, ids.syncProtocol, ids.kubeconfigProtocol, note)
  } finally {
    try { await host?.stop() } catch {}
    await replica.close()
  }
}

async function fetchWith (host: WeftHost, replica: Replica<ReplicaReducers>, identity: NodeIdentity, o: GetKubeconfigOptions,
  peers: Array<{ id: PeerId, addr: Multiaddr }>, syncProtocol: string, protocol: string, note: (line: string) => void): Promise<string> {
  const deadline = Date.now() + o.timeout
  const overall = AbortSignal.timeout(o.timeout)
  const sync = new AntiEntropy({ host, protocol: syncProtocol, replica: replicaPort(replica), log: silentLogger, now: Date.now })
  let synced = 0
  let inflight = 0
  const syncedWith = new Set<string>()
  const syncPeer = (peer: PeerId): void => {
    const key = peer.toString()
    if (syncedWith.has(key) || peer.equals(host.peerId)) return
    syncedWith.add(key)
    inflight++
    void sync.syncWith(peer, overall).then((r) => { if (r !== undefined) synced++ }).finally(() => { inflight-- })
  }
  host.addEventListener('peer:identify', (evt) => { if (evt.detail.protocols.includes(syncProtocol)) syncPeer(evt.detail.peerId) })
  host.addEventListener('peer:discovery', (evt) => {
    if (host.getConnections(evt.detail.id).length === 0) void host.dial(evt.detail.id, { signal: AbortSignal.any([overall, AbortSignal.timeout(10_000)]) }).catch(() => {})
  })
  const dialErrors: string[] = []
  const dial = async (target: PeerId | Multiaddr): Promise<void> => {
    try {
      await host.dial(target, { signal: AbortSignal.any([overall, AbortSignal.timeout(10_000)]) })
    } catch (err) {
      dialErrors.push(`${target.toString()}: ${(err as Error).message}`)
    }
  }
  for (const p of peers) void dial(p.addr)
  // Members the local log knows, at the addresses they advertised when they joined.
  for (const m of [...replica.states().network.members.active.values()].slice(0, 16)) {
    if (m.author === identity.authorHex || m.addrs.length === 0) continue
    await rememberAddrs(host, m.peerId, m.addrs)
    void dial(peerIdFromString(m.peerId))
  }

  let unreachable = 0
  let checkedMembership = false
  while (Date.now() < deadline) {
    if (synced > 0 && inflight === 0) {
      const state = replica.states().network
      if (!checkedMembership) {
        checkedMembership = true
        if (!state.members.active.has(identity.authorHex)) {
          throw new CliError(`this node (${identity.peerId}, from ${o.dataDir}) is not a member of network ${toHex(replica.net)}: only members can fetch a kubeconfig; join first ("weft up", or "weft bridge" on a workstation) and use that --data-dir`)
        }
      }
      const cluster = o.cluster ?? state.members.active.get(identity.authorHex)?.cluster ?? 'default'
      try {
        const source = locateKubeconfigSource(state, cluster)
        if (source.author === identity.authorHex) return await ownKubeconfig(source.serverUrl, cluster)
        await rememberAddrs(host, source.peerId, source.addrs)
        const remaining = AbortSignal.any([overall, AbortSignal.timeout(Math.max(1, deadline - Date.now()))])
        const { kubeconfig } = await fetchClusterKubeconfig({ host, state, cluster, protocol, signal: remaining })
        note(`kubeconfig of cluster ${cluster} from its init master ${source.hostname}, server ${source.serverUrl} (reachable over the Weft VPN)`)
        return kubeconfig
      } catch (err) {
        if (!(err instanceof KubeconfigError)) throw err
        // A bridge's data dir (weft bridge, or --role client): worded for a node without k3s.
        const said = state.members.active.get(identity.authorHex)?.role === 'client' ? bridgeKubeconfigError(err, state, cluster).message : err.message
        if (err.code !== 'unreachable') throw new CliError(said)
        // The master may just not be dialled yet (its address comes from the DHT): a few tries.
        if (++unreachable >= 3 || Date.now() + 1_000 >= deadline) throw new CliError(said)
        await sleep(1_000)
        continue
      }
    }
    await sleep(50)
  }
  if (synced === 0) {
    const how = peers.length > 0 ? `the peers given with --peer${dialErrors.length > 0 ? ` (${dialErrors.slice(0, 3).join('; ')})` : ''}` : `any peer${o.mdns ? ' on the LAN (mDNS)' : ''}; name one with --peer <multiaddr>`
    throw new CliError(`could not sync the log from ${how} within ${o.timeout} ms; check the token (a different token fails the private-network handshake)`)
  }
  throw new CliError(`timed out after ${o.timeout} ms`)
}

async function rememberAddrs (host: WeftHost, peerId: string, addrs: readonly string[]): Promise<void> {
  const multiaddrs: Multiaddr[] = []
  for (const a of addrs) {
    try { multiaddrs.push(multiaddr(a)) } catch {}
  }
  if (multiaddrs.length === 0) return
  await host.peerStore.merge(peerIdFromString(peerId), { multiaddrs }).catch(() => {})
}

/** This node is the init master: k3s's own file, pointed at the overlay address. */
async function ownKubeconfig (serverUrl: string, cluster: string): Promise<string> {
  let text: string
  try {
    text = await readFile(DEFAULT_KUBECONFIG_PATH, 'utf8')
  } catch (err) {
    throw new CliError(`this node is the init master of cluster ${cluster}, and its kubeconfig ${DEFAULT_KUBECONFIG_PATH} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); run this as root, or once k3s has started`)
  }
  return rewriteKubeconfigServer(text, serverUrl)
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}
