import { open } from 'node:fs/promises'

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
