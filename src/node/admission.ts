import { randomBytes } from 'node:crypto'
import { z } from 'zod'
import type { Logger } from 'pino'
import type { Replica } from '../adapters/replica.js'
import type { ReplicaReducers } from '../projections/reducers.js'
import { API_PREFIX } from '../adapters/api-types.js'
import { authSigningInput } from '../log/auth.js'
import { authorName } from '../log/author.js'
import { fromHex, toHex } from '../log/bytes.js'
import { isWeftError } from '../log/errors.js'
import type { BodyOf, EventType } from '../log/bodies.js'
import { formatToken } from '../log/token.js'
import { openSealedKey, sealKey, type SealKey } from '../log/seal.js'
import { currentDelegates, latestEpoch, requiredAuthority } from '../projections/authority.js'
import { makeSettingsChange, parseSettingValue, SETTING_KEYS } from '../projections/settings.js'
import type { NetworkState } from '../projections/network.js'
import type { TransportKeyring } from './transport-keyring.js'

/**
 * Admission and authority at the edge of the daemon: it opens the transport keys sealed to this
 * node in `network.rotate` events (the keyring), says which peers must be refused (revoked
 * members, forked ones), and serves the administrative API: `prepare` composes an event this
 * node will author (settings change, evict, revoke, rotate, grant, route) and returns the bytes
 * an owner or delegate cosigns; `append` appends it with that cosignature. The owner key never
 * reaches the daemon: `weft` signs on the operator's machine.
 */

export interface AdmissionOptions {
  replica: Replica<ReplicaReducers>
  keyring: TransportKeyring
  net: Uint8Array
  self: string
  seal: SealKey
  log: Logger
  now: () => number
  /** Close every connection to this peer (a revoked or forked member). */
  hangUp: (peerId: string) => Promise<void>
}

export type AdminAction =
  | { type: 'settings.change', key: string, value: unknown }
  | { type: 'node.evict' | 'node.revoke', peer: string, reason: string }
  | { type: 'admin.grant' | 'admin.ungrant', peer: string }
  | { type: 'network.rotate' }
  | { type: 'route.advertise', cidr: string }

const PrepareSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('settings.change'), key: z.string(), value: z.unknown() }),
  z.strictObject({ type: z.enum(['node.evict', 'node.revoke']), peer: z.string().min(1).max(253), reason: z.string().max(256).default('') }),
  z.strictObject({ type: z.enum(['admin.grant', 'admin.ungrant']), peer: z.string().min(1).max(253) }),
  z.strictObject({ type: z.literal('network.rotate') }),
  z.strictObject({ type: z.literal('route.advertise'), cidr: z.string().max(64) })
])

/** A prepared event: what to sign and what to send back to `append`. */
export interface Ticket { type: EventType, body: unknown, seq: number, author: string }

const AppendSchema = z.strictObject({
  ticket: z.strictObject({ type: z.string(), body: z.unknown(), seq: z.int().min(1), author: z.string() }),
  auth: z.strictObject({ by: z.string().regex(/^[0-9a-f]{64}$/), sig: z.string().regex(/^[0-9a-f]{128}$/) }).optional()
})

/** JSON cannot carry bytes: they travel as {"$bytes": "<hex>"}. */
export function encodeBytes (v: unknown): unknown {
  if (v instanceof Uint8Array) return { $bytes: toHex(v) }
  if (Array.isArray(v)) return v.map(encodeBytes)
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, encodeBytes(x)]))
  return v
}

export function decodeBytes (v: unknown): unknown {
  if (Array.isArray(v)) return v.map(decodeBytes)
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>
    if (Object.keys(o).length === 1 && typeof o.$bytes === 'string') return fromHex(o.$bytes)
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, decodeBytes(x)]))
  }
  return v
}

function apiError (status: number, code: string, message: string): Error {
  return Object.assign(new Error(message), { status, code })
}

export class Admission {
  private readonly refusedPeers = new Set<string>()
  private readonly unopened = new Set<number>()
  /** Logged once each (bounded). */
  private readonly oldKeyRefused = new Set<string>()

  constructor (private readonly o: AdmissionOptions) {}

  private get state (): NetworkState { return this.o.replica.states().network }

  /**
   * Is this connection refused? Revoked and forked members always; under an old transport epoch
   * (the grace window after a rotation), anyone who is not a current member, so a fresh identity
   * with the old token cannot get in while members that missed the rotation still can.
   */
  denied (peerId: string, epoch?: number): boolean {
    if (this.refusedPeers.has(peerId)) return true
    if (epoch !== undefined && epoch < this.o.keyring.current().epoch && !this.isMember(peerId)) {
      if (this.oldKeyRefused.size < 1024 && !this.oldKeyRefused.has(peerId)) {
        this.oldKeyRefused.add(peerId)
        this.o.log.info({ peer: peerId, epoch, current: this.o.keyring.current().epoch }, 'refused a connection under an old transport key from a peer that is not a member (it needs the token from "weft token show")')
      }
      return true
    }
    return false
  }

  /** Is this PeerId a current member (old-epoch transport keys are accepted only from members)? */
  isMember (peerId: string): boolean {
    for (const m of this.state.members.active.values()) if (m.peerId === peerId) return true
    return false
  }

  /** React to a new state: learn sealed keys, refuse revoked and forked peers. */
  async update (): Promise<void> {
    const s = this.state
    for (const [epoch, rotation] of s.authority.rotations) {
      if (this.o.keyring.has(epoch) || this.unopened.has(epoch)) continue
      const key = openSealedKey(rotation, { authorHex: this.o.self, seal: this.o.seal }, this.o.net)
      if (key === undefined) {
        this.unopened.add(epoch)
        this.o.log.warn({ epoch }, 'a transport key rotation holds no key this node can open (it was not a member with a seal key when the key was rotated); it keeps the keys it has')
        continue
      }
      await this.o.keyring.learn(epoch, key)
      this.o.log.info({ epoch }, 'transport key rotated: new connections use the new epoch; "weft token show" prints the token for new machines')
    }
    const gone = [...s.authority.revoked.keys(), ...[...s.members.departed.values()].filter((d) => d.how === 'forked').map((d) => d.author)]
    for (const author of gone) {
      const peerId = authorName(fromHex(author))
      if (this.refusedPeers.has(peerId)) continue
      this.refusedPeers.add(peerId)
      this.o.log.warn({ peer: peerId }, 'peer revoked (or forked): its connections are closed and refused')
      await this.o.hangUp(peerId).catch(() => undefined)
    }
  }

  /** Find a member by PeerId, author hex or hostname. */
  private resolvePeer (text: string): Uint8Array {
    const s = this.state
    const all = [...s.members.active.values()]
    const hit = all.find((m) => m.peerId === text || m.author === text) ?? all.filter((m) => m.hostname === text)[0]
    if (hit !== undefined) return fromHex(hit.author)
    const departed = [...s.members.departed.values()].find((d) => d.author === text || authorName(fromHex(d.author)) === text)
    if (departed !== undefined) return fromHex(departed.author)
    throw apiError(404, 'not_found', `no member "${text}" (give its PeerId, or the hostname of an active member: see "weft node ls")`)
  }

  private bodyOf (a: AdminAction): { type: EventType, body: Record<string, unknown> } {
    const s = this.state
    switch (a.type) {
      case 'settings.change': {
        if (!SETTING_KEYS.includes(a.key as never)) throw apiError(400, 'bad_request', `unknown setting "${a.key}"; known settings: ${SETTING_KEYS.join(', ')}`)
        const value = typeof a.value === 'string' ? parseSettingValue(a.key, a.value) : a.value
        return { type: a.type, body: { change: makeSettingsChange(s.settings, this.o.self, a.key, value) } }
      }
      case 'node.evict':
      case 'node.revoke':
        return { type: a.type, body: { peer: this.resolvePeer(a.peer), reason: a.reason } }
      case 'admin.grant':
      case 'admin.ungrant':
        return { type: a.type, body: { peer: this.resolvePeer(a.peer) } }
      case 'route.advertise':
        return { type: a.type, body: { cidr: a.cidr } }
      case 'network.rotate': {
        const epoch = Math.max(latestEpoch(s.authority), this.o.keyring.current().epoch) + 1
        const recipients = [...s.members.active.values()].filter((m) => m.seal !== undefined)
          .map((m) => ({ author: fromHex(m.author), seal: fromHex(m.seal as string) }))
        const { ephemeral, sealed } = sealKey(new Uint8Array(randomBytes(32)), recipients, this.o.net, epoch)
        return { type: a.type, body: { epoch, ephemeral, sealed } }
      }
    }
  }

  /** Does an event of this type, signed by `by` (or by this node alone), carry authority now? */
  private authorised (type: EventType, body: Record<string, unknown>, by: string | undefined): boolean {
    const a = this.state.authority
    if (a.owner === undefined) return true
    const need = requiredAuthority({ type, body } as Parameters<typeof requiredAuthority>[0])
    if (need === undefined) return true
    if (by === a.owner) return true
    if (need === 'owner') return false
    const delegates = currentDelegates(a)
    return delegates.includes(by ?? this.o.self) || delegates.includes(this.o.self)
  }

  async prepare (raw: unknown): Promise<{ ticket: unknown, signingInput: string, owner: string | null, authorisedWithout: boolean }> {
    const r = PrepareSchema.safeParse(raw)
    if (!r.success) throw apiError(400, 'bad_request', `bad body: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
    let composed
    try {
      composed = this.bodyOf(r.data as AdminAction)
    } catch (err) {
      if (isWeftError(err)) throw apiError(400, 'bad_request', err.message)
      throw err
    }
    const ticket: Ticket = { type: composed.type, body: composed.body, seq: this.o.replica.nextSeq(), author: this.o.self }
    const input = authSigningInput({ net: this.o.net, author: fromHex(this.o.self), seq: ticket.seq, type: ticket.type, body: ticket.body })
    return {
      ticket: encodeBytes(ticket),
      signingInput: toHex(input),
      owner: this.state.authority.owner ?? null,
      authorisedWithout: this.authorised(composed.type, composed.body, undefined)
    }
  }

  async append (raw: unknown): Promise<{ id: string, seq: number, type: string }> {
    const r = AppendSchema.safeParse(raw)
    if (!r.success) throw apiError(400, 'bad_request', `bad body: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
    const { ticket, auth } = r.data
    if (ticket.author !== this.o.self) throw apiError(409, 'conflict', 'this ticket was prepared by another node')
    const body = decodeBytes(ticket.body) as Record<string, unknown>
    const type = ticket.type as EventType
    if (!this.authorised(type, body, auth?.by)) {
      throw apiError(403, 'forbidden', `${type} needs ${type.startsWith('admin.') ? 'the owner\'s' : 'the owner\'s or a delegate\'s'} signature: run the command where the owner key is (--owner-key), or ask the owner to grant this node (weft admin grant)`)
    }
    const full = auth === undefined ? body : { ...body, auth: { by: fromHex(auth.by), sig: fromHex(auth.sig) } }
    try {
      const ev = await this.o.replica.append(type, full as BodyOf<typeof type>, this.o.now(), { expectSeq: ticket.seq })
      this.o.log.info({ type, id: ev.idHex.slice(0, 12), cosignedBy: auth?.by.slice(0, 12) }, 'administrative event appended')
      return { id: ev.idHex, seq: ev.fields.seq, type }
    } catch (err) {
      if (isWeftError(err, 'ERR_STALE_SEQ')) throw apiError(409, 'stale', err.message)
      if (isWeftError(err, 'ERR_BAD_AUTH') || isWeftError(err, 'ERR_BAD_BODY')) throw apiError(400, 'bad_request', err.message)
      throw err
    }
  }

  /** The token a new machine should be given now (a secret: the API is local and token-protected). */
  token (): { token: string, epoch: number } {
    const t = this.o.keyring.currentToken()
    return { token: formatToken(t), epoch: t.epoch ?? 0 }
  }

  routes (): Array<readonly [string, Record<string, (body: unknown) => Promise<unknown>>]> {
    return [
      [`${API_PREFIX}/admin/prepare`, { POST: async (b) => await this.prepare(b) }],
      [`${API_PREFIX}/admin/append`, { POST: async (b) => await this.append(b) }],
      [`${API_PREFIX}/token`, { GET: async () => this.token() }]
    ]
  }
}
