import { mkdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { generateIdentity, identityFromPem, type NodeIdentity } from '../log/identity.js'
import { WeftError } from '../log/errors.js'
import { createPrivateFile } from './private-file.js'

export const IDENTITY_FILE = 'identity.key'

/**
 * The node's Ed25519 key, created on first use (PKCS#8 PEM, mode 0600) and reused after. A key
 * readable by group or others is refused rather than silently fixed: it may already have leaked.
 */
export async function loadOrCreateIdentity (dataDir: string): Promise<NodeIdentity> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const path = join(dataDir, IDENTITY_FILE)
  try {
    await stat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    return await create(path)
  }
  return await load(path)
}

/** Load an Ed25519 key file (the node's, or the owner's), refusing one readable by others. */
export async function loadKeyFile (path: string): Promise<NodeIdentity> {
  return await load(path)
}

/** Write a new Ed25519 key file (0600) unless one exists; false when it existed. */
export async function createKeyFile (path: string, key: NodeIdentity): Promise<boolean> {
  return await createPrivateFile(path, key.exportPem())
}

async function load (path: string): Promise<NodeIdentity> {
  const mode = (await stat(path)).mode
  if ((mode & 0o077) !== 0) {
    throw new WeftError('ERR_KEY_PERMISSIONS', `${path} is readable by others (mode ${(mode & 0o777).toString(8)}); run "chmod 600 ${path}" if it has not leaked, or delete it to make a new identity`)
  }
  const pem = await readFile(path, 'utf8')
  try {
    return identityFromPem(pem)
  } catch (err) {
    throw new WeftError('ERR_KEY_CONTENT', `${path} does not hold an Ed25519 private key (PKCS#8 PEM): ${(err as Error).message}. Restore it from a backup, or delete it to make a new identity`)
  }
}

/**
 * Write the key to a private temporary file, fsync it, then hard-link it into place: the key
 * file appears complete or not at all (a crash mid-write never leaves an empty key that would
 * block every later start), and linking never replaces a key another process just created —
 * that one is loaded instead.
 */
async function create (path: string): Promise<NodeIdentity> {
  const id = generateIdentity()
  return await createPrivateFile(path, id.exportPem()) ? id : await load(path)
}
