import { randomBytes } from 'node:crypto'
import { chmod, link, open, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'

/**
 * Files only their owner may read (keys, tokens, the k3s config), written so that a reader or a
 * crash never sees half of one: the text goes to a private temporary file next to `path`, is
 * fsynced, and is then moved into place.
 */

/** fsync a directory, so a file just renamed or linked into it survives a crash. */
export async function syncDir (dir: string): Promise<void> {
  let fh
  try {
    fh = await open(dir, 'r')
    await fh.sync()
  } catch {
    // Not every platform can fsync a directory; the file itself is already synced.
  } finally {
    await fh?.close()
  }
}

async function writeTemp (path: string, text: string): Promise<string> {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  const fh = await open(tmp, 'wx', 0o600)
  try {
    await fh.writeFile(text)
    await fh.sync()
  } finally {
    await fh.close()
  }
  // open() applies the umask; make the mode exactly 0600 whatever it is.
  await chmod(tmp, 0o600)
  return tmp
}

/** Write or replace `path` (mode 0600) by rename: readers see the old file or the new one. */
export async function replacePrivateFile (path: string, text: string): Promise<void> {
  const tmp = await writeTemp(path, text)
  try {
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => undefined)
    throw err
  }
  await syncDir(dirname(path))
}

/**
 * Create `path` (mode 0600) by hard link, never replacing a file another process created first:
 * false when `path` already exists (the caller reads that one instead).
 */
export async function createPrivateFile (path: string, text: string): Promise<boolean> {
  const tmp = await writeTemp(path, text)
  try {
    await link(tmp, path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  } finally {
    await unlink(tmp).catch(() => undefined)
  }
  await syncDir(dirname(path))
  return true
}
