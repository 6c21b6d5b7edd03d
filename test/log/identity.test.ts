import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPairSync, verify } from 'node:crypto'
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { Ed25519Verifier, generateIdentity, identityFromPem, identityFromSeed } from '../../src/log/identity.js'
import { authorName, parseAuthorName } from '../../src/log/author.js'
import { IDENTITY_FILE, loadOrCreateIdentity } from '../../src/adapters/identity-file.js'
import { isWeftError, type WeftErrorCode } from '../../src/log/errors.js'
import { toHex, utf8 } from '../../src/log/bytes.js'

const seed = (n: number): Uint8Array => new Uint8Array(32).fill(n)

async function codeOf (p: Promise<unknown>): Promise<{ code: WeftErrorCode, message: string }> {
  try {
    await p
  } catch (err) {
    if (isWeftError(err)) return { code: err.code, message: err.message }
    throw err
  }
  throw new Error('expected a WeftError')
}

function syncCodeOf (fn: () => unknown): WeftErrorCode {
  try {
    fn()
  } catch (err) {
    if (isWeftError(err)) return err.code
    throw err
  }
  throw new Error('expected a WeftError')
}

describe('identity from a seed', () => {
  it('is deterministic and differs per seed', () => {
    const a = identityFromSeed(seed(1))
    const b = identityFromSeed(seed(1))
    const c = identityFromSeed(seed(2))
    expect(toHex(a.publicKey)).toBe(toHex(b.publicKey))
    expect(a.authorHex).toBe(toHex(a.publicKey))
    expect(a.peerId).toBe(b.peerId)
    expect(a.exportPem()).toBe(b.exportPem())
    expect(c.authorHex).not.toBe(a.authorHex)
    // Ed25519 signatures are deterministic too (RFC 8032).
    const msg = utf8.encode('hello')
    expect(toHex(a.sign(msg))).toBe(toHex(b.sign(msg)))
  })

  it('matches the RFC 8032 test vector 1', () => {
    const id = identityFromSeed(Uint8Array.from(Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex')))
    expect(id.authorHex).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a')
    expect(toHex(id.sign(new Uint8Array(0)))).toBe('e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b')
  })

  it('refuses a seed that is not 32 bytes', () => {
    expect(syncCodeOf(() => identityFromSeed(new Uint8Array(31)))).toBe('ERR_KEY_CONTENT')
    expect(syncCodeOf(() => identityFromSeed(new Uint8Array(33)))).toBe('ERR_KEY_CONTENT')
  })

  it('signatures verify with node:crypto and the cached verifier, and only for the right key and data', () => {
    const a = identityFromSeed(seed(3))
    const b = identityFromSeed(seed(4))
    const msg = utf8.encode('weft')
    const sig = a.sign(msg)
    expect(sig.byteLength).toBe(64)
    const v = new Ed25519Verifier()
    expect(v.verify(a.publicKey, msg, sig)).toBe(true)
    expect(v.verify(a.publicKey, msg, sig)).toBe(true) // cached key
    expect(v.verify(b.publicKey, msg, sig)).toBe(false)
    expect(v.verify(a.publicKey, utf8.encode('weft!'), sig)).toBe(false)
    const bad = new Uint8Array(sig)
    bad[0] = (bad[0] as number) ^ 1
    expect(v.verify(a.publicKey, msg, bad)).toBe(false)
    expect(v.verify(a.publicKey, msg, sig.subarray(0, 63))).toBe(false)
    expect(v.verify(new Uint8Array(31), msg, sig)).toBe(false)
    // A verifier with a tiny cache still answers right after evictions.
    const small = new Ed25519Verifier(1)
    for (let i = 0; i < 3; i++) {
      expect(small.verify(a.publicKey, msg, sig)).toBe(true)
      expect(small.verify(b.publicKey, msg, b.sign(msg))).toBe(true)
    }
  })

  it('PEM export → import keeps the key', () => {
    const a = generateIdentity()
    const b = identityFromPem(a.exportPem())
    expect(b.authorHex).toBe(a.authorHex)
    expect(a.exportPem()).toMatch(/^-----BEGIN PRIVATE KEY-----/)
  })

  it('refuses a PEM that is not an Ed25519 private key', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
    expect(syncCodeOf(() => identityFromPem(ec))).toBe('ERR_KEY_CONTENT')
    const pub = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString()
    expect(syncCodeOf(() => identityFromPem(pub))).toBe('ERR_KEY_CONTENT')
    expect(syncCodeOf(() => identityFromPem('not a key'))).toBe('ERR_KEY_CONTENT')
  })
})

describe('author names are libp2p PeerIds', () => {
  it('authorName equals the PeerId libp2p computes for the same key', () => {
    for (let n = 0; n < 20; n++) {
      const id = n < 10 ? identityFromSeed(seed(n)) : generateIdentity()
      const libp2p = peerIdFromPublicKey(publicKeyFromRaw(id.publicKey)).toString()
      expect(authorName(id.publicKey)).toBe(libp2p)
      expect(id.peerId).toBe(libp2p)
      expect(id.peerId.startsWith('12D3KooW')).toBe(true)
    }
  })

  it('parseAuthorName round trips and agrees with libp2p', () => {
    for (let n = 0; n < 10; n++) {
      const id = identityFromSeed(seed(n + 40))
      expect(toHex(parseAuthorName(id.peerId))).toBe(id.authorHex)
      const pk = peerIdFromString(id.peerId).publicKey
      expect(pk === undefined ? undefined : toHex(pk.raw)).toBe(id.authorHex)
    }
  })

  it('parseAuthorName refuses what is not an Ed25519 peer id', () => {
    const good = identityFromSeed(seed(1)).peerId
    const rsaLike = 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N' // a sha256 (RSA) peer id
    for (const bad of ['', 'hello', '0OIl', good.slice(0, -1), good + '1', rsaLike, `12D3KooW${'x'.repeat(44)}`]) {
      expect(syncCodeOf(() => parseAuthorName(bad))).toBe('ERR_BAD_INPUT')
    }
  })
})

describe('the identity key file', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'weft-id-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('is created with mode 0600 on first use and reused afterwards', async () => {
    const dataDir = join(dir, 'data')
    const a = await loadOrCreateIdentity(dataDir)
    const path = join(dataDir, IDENTITY_FILE)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    expect((await stat(dataDir)).mode & 0o077).toBe(0)
    const b = await loadOrCreateIdentity(dataDir)
    expect(b.authorHex).toBe(a.authorHex)
    expect(await readFile(path, 'utf8')).toBe(a.exportPem())
    // Nothing but the key is left behind.
    expect(await readdir(dataDir)).toEqual([IDENTITY_FILE])
  })

  it('two concurrent first starts end with one key', async () => {
    const ids = await Promise.all(Array.from({ length: 8 }, async () => await loadOrCreateIdentity(dir)))
    expect(new Set(ids.map((i) => i.authorHex)).size).toBe(1)
    expect((await loadOrCreateIdentity(dir)).authorHex).toBe(ids[0]?.authorHex)
    expect(await readdir(dir)).toEqual([IDENTITY_FILE])
  })

  it('a key readable by group or others is refused with ERR_KEY_PERMISSIONS', async () => {
    await loadOrCreateIdentity(dir)
    const path = join(dir, IDENTITY_FILE)
    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      await chmod(path, mode)
      const e = await codeOf(loadOrCreateIdentity(dir))
      expect(e.code).toBe('ERR_KEY_PERMISSIONS')
      expect(e.message).toContain(mode.toString(8))
      expect(e.message).toContain('chmod 600')
    }
    await chmod(path, 0o400)
    await expect(loadOrCreateIdentity(dir)).resolves.toBeDefined()
  })

  it('garbage content is refused with ERR_KEY_CONTENT and left untouched', async () => {
    const path = join(dir, IDENTITY_FILE)
    for (const content of ['garbage', '', '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n',
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()]) {
      await writeFile(path, content, { mode: 0o600 })
      await chmod(path, 0o600)
      const e = await codeOf(loadOrCreateIdentity(dir))
      expect(e.code).toBe('ERR_KEY_CONTENT')
      expect(e.message).toContain(path)
      expect(await readFile(path, 'utf8')).toBe(content)
    }
  })

  it('the stored key signs what the loaded identity claims', async () => {
    const id = await loadOrCreateIdentity(dir)
    const msg = utf8.encode('x')
    const pub = peerIdFromString(id.peerId).publicKey
    expect(pub).toBeDefined()
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(id.publicKey)])
    expect(verify(null, msg, { key: spki, format: 'der', type: 'spki' }, id.sign(msg))).toBe(true)
  })
})
