import { homedir } from 'node:os'
import { join } from 'node:path'

/**
 * The data dir when neither --data-dir, WEFT_DATA_DIR nor a config file names one, the same for
 * `weft up`, `weft bridge` and every command that finds a running daemon (issue 17): root's is
 * /var/lib/weft (systemd's StateDirectory=weft, deploy/weft.service); another user's is
 * $XDG_STATE_HOME/weft, else ~/.local/state/weft (the XDG base directory spec's state dir).
 * Never relative to the current directory.
 */
export function defaultDataDir (env: Record<string, string | undefined> = process.env, uid: number | undefined = process.getuid?.()): string {
  if (uid === 0) return '/var/lib/weft'
  const state = env.XDG_STATE_HOME
  if (state !== undefined && state.startsWith('/')) return join(state, 'weft')
  return join(env.HOME !== undefined && env.HOME !== '' ? env.HOME : homedir(), '.local', 'state', 'weft')
}

/** How the default is described in help and docs. */
export const DEFAULT_DATA_DIR_TEXT = '/var/lib/weft as root, else $XDG_STATE_HOME/weft or ~/.local/state/weft'
