import { chmod, mkdir, open, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { generateIdentity, identityFromPem, type NodeIdentity } from '../log/identity.js'
import { WeftError } from '../log/errors.js'

export const IDENTITY_FILE = 'identity.key'

/**
 * The node's Ed25519 key, created on first use (PKCS#8 PEM, mode 0600) and reused after. A key
 * readable by group or others is refused rather than silently fixed: it may already have leaked.
 */
export async function loadOrCreateIdentity (dataDir: string): Promise<NodeIdentity> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const path = join(dataDir, IDENTITY_FILE)
  let mode: number
  try {
    mode = (await stat(path)).mode
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    return await create(path)
  }
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

async function create (path: string): Promise<NodeIdentity> {
  const id = generateIdentity()
  // 'wx': never overwrite a key another process just created.
  const fh = await open(path, 'wx', 0o600)
  try {
    await fh.writeFile(id.exportPem())
    await fh.sync()
  } finally {
    await fh.close()
  }
  await chmod(path, 0o600)
  return id
}
