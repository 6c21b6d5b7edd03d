import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { fromHex, toHex } from '../log/bytes.js'
import { WeftError } from '../log/errors.js'
import { transportKeyOf, type NetworkToken } from '../log/token.js'
import { replacePrivateFile } from '../adapters/private-file.js'

/** One admission epoch's transport key. */
export interface TransportKey { readonly epoch: number, readonly key: Uint8Array }

export const KEYRING_FILE = 'keyring.json'
/** Older epochs kept: a member that was offline through several rotations still gets back in. */
export const MAX_EPOCHS = 16

const FileSchema = z.strictObject({ epochs: z.record(z.string().regex(/^\d+$/), z.string().regex(/^[0-9a-f]{64}$/)) })

/**
 * The transport keys this node knows, by admission epoch: epoch 0 from the token's root, the
 * token's own epoch, and every rotation it has opened since (kept in `keyring.json`, 0600, so a
 * restart keeps them). The newest is used to dial; all are accepted (see docs/trust.md for why
 * old epochs are accepted only from current members).
 */
export class TransportKeyring {
  private readonly keys = new Map<number, Uint8Array>()

  private constructor (private readonly path: string | undefined, private readonly token: NetworkToken) {
    this.keys.set(0, transportKeyOf({ ...token, epoch: 0 }))
    if ((token.epoch ?? 0) > 0) this.keys.set(token.epoch as number, transportKeyOf(token))
  }

  /** A keyring kept in memory only (tests, short-lived CLI hosts). */
  static forToken (token: NetworkToken): TransportKeyring {
    return new TransportKeyring(undefined, token)
  }

  static async open (dataDir: string | undefined, token: NetworkToken): Promise<TransportKeyring> {
    const ring = new TransportKeyring(dataDir === undefined ? undefined : join(dataDir, KEYRING_FILE), token)
    if (ring.path === undefined) return ring
    let text: string
    try {
      text = await readFile(ring.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return ring
      throw err
    }
    let parsed
    try {
      parsed = FileSchema.parse(JSON.parse(text))
    } catch (err) {
      throw new WeftError('ERR_BAD_CONFIG', `${ring.path} is damaged (${(err as Error).message}); delete it: the keys it held are learnt again from the log`)
    }
    for (const [e, hex] of Object.entries(parsed.epochs)) ring.keys.set(Number(e), fromHex(hex))
    return ring
  }

  current (): TransportKey {
    const epoch = Math.max(...this.keys.keys())
    return { epoch, key: this.keys.get(epoch) as Uint8Array }
  }

  /** Newest first. */
  accepted (): readonly TransportKey[] {
    return [...this.keys].sort(([a], [b]) => b - a).map(([epoch, key]) => ({ epoch, key }))
  }

  has (epoch: number): boolean { return this.keys.has(epoch) }

  /** Remember a rotated key; true when it is new. */
  async learn (epoch: number, key: Uint8Array): Promise<boolean> {
    if (this.keys.has(epoch)) return false
    this.keys.set(epoch, key)
    const epochs = [...this.keys.keys()].sort((a, b) => b - a)
    for (const old of epochs.slice(MAX_EPOCHS)) if (old !== 0) this.keys.delete(old)
    if (this.path !== undefined) {
      const out: Record<string, string> = {}
      for (const [e, k] of this.keys) if (e !== 0) out[String(e)] = toHex(k)
      await replacePrivateFile(this.path, JSON.stringify({ epochs: out }) + '\n')
    }
    return true
  }

  /** The token a new machine should be given now: the same root and owner, the newest epoch. */
  currentToken (): NetworkToken {
    const { epoch, key } = this.current()
    return epoch === 0 ? { ...this.token, epoch: 0, epochKey: undefined } : { ...this.token, epoch, epochKey: key }
  }
}
