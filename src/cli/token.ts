import { createHash } from 'node:crypto'
import type { Command } from 'commander'
import {
  formatToken, identifiers, newToken, parseToken, rendezvousKeys, RENDEZVOUS_EPOCH_SECONDS
} from '../log/token.js'
import { EXIT_OK, run, CliError } from './errors.js'
import { defaultOwnerKeyPath, registerTokenAdmin } from './admin.js'
import { readStdin } from './input.js'
import { jsonOption } from './options.js'
import { out, printJson, table } from './output.js'

/**
 * `weft token new|inspect`. The token secret is printed by `new` and nowhere else: `inspect`
 * shows only public identifiers and fingerprints, never the secret, the pnet PSK, a rendezvous
 * key or a k3s cluster token.
 */
export function registerToken (program: Command): void {
  const token = program.command('token').description('create and inspect network tokens')

  jsonOption(token.command('new').description('make a new network: its owner key (a 0600 file the operator keeps) and a token that commits to it (one line)')
    .option('--owner-key <file>', 'where to write the owner key (default ~/.config/weft/owner-<network id>.key); an existing key file is reused, so one owner can own several networks'), 'print {token, networkId, ownerKey}')
    .action(async (opts: { json: boolean, ownerKey?: string }) => { await run(async () => await tokenNew(opts)) })
  registerTokenAdmin(token)

  jsonOption(token.command('inspect').description('show the network id and derived public identifiers of a token')
    .argument('<token>', 'the token, or "-" to read it from stdin (keeps it out of shell history)'))
    .action(async (text: string, opts: { json: boolean }) => { await run(async () => await tokenInspect(text, opts)) })
}

async function tokenNew (opts: { json: boolean, ownerKey?: string }): Promise<number> {
  const { createKeyFile, loadKeyFile } = await import('../adapters/identity-file.js')
  const { generateIdentity } = await import('../log/identity.js')
  const { mkdir } = await import('node:fs/promises')
  const { dirname } = await import('node:path')
  const root = newToken()
  const networkId = identifiers(root).networkId
  const path = opts.ownerKey ?? defaultOwnerKeyPath(networkId)
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  let owner = generateIdentity()
  if (!await createKeyFile(path, owner)) {
    try {
      owner = await loadKeyFile(path)
    } catch (err) {
      throw new CliError(`${path} exists and is not a usable owner key: ${(err as Error).message}`)
    }
  }
  const t = { secret: root.secret, owner: owner.publicKey, epoch: 0 }
  const text = formatToken(t)
  if (opts.json) out(JSON.stringify({ token: text, networkId, ownerKey: path }))
  else {
    out(text)
    process.stderr.write(`owner key: ${path} (keep it off the nodes; administrative commands read it with --owner-key)\n`)
  }
  return EXIT_OK
}

/**
 * A short fingerprint of a secret value: the first 8 hex digits of its SHA-256. Enough to tell
 * whether two nodes derived the same key, and reveals nothing of the key itself.
 */
export function fingerprint (hexKey: string): string {
  return createHash('sha256').update(hexKey, 'hex').digest('hex').slice(0, 8)
}

async function tokenInspect (text: string, opts: { json: boolean }): Promise<number> {
  const raw = text === '-' ? await readStdin() : text
  const t = parseToken(raw)
  const ids = identifiers(t)
  const now = Date.now()
  const rv = rendezvousKeys(t, now)
  const epochStart = (e: number): string => new Date(e * RENDEZVOUS_EPOCH_SECONDS * 1000).toISOString()
  const rendezvous = {
    epochSeconds: RENDEZVOUS_EPOCH_SECONDS,
    epoch: rv.epoch,
    epochStart: epochStart(rv.epoch),
    previous: { epoch: rv.epoch - 1, fingerprint: fingerprint(rv.previous) },
    current: { epoch: rv.epoch, fingerprint: fingerprint(rv.current) },
    next: { epoch: rv.epoch + 1, fingerprint: fingerprint(rv.next) }
  }
  if (opts.json) {
    printJson({ ...ids, rendezvous })
    return EXIT_OK
  }
  out(table(['FIELD', 'VALUE'], [
    ['network id', ids.networkId],
    ['gossip topic', ids.gossipTopic],
    ['DHT protocol prefix', ids.dhtProtocolPrefix],
    ['mDNS service name', ids.mdnsServiceName],
    ['sync protocol', ids.syncProtocol],
    ['packet protocol', ids.packetProtocol],
    ['rendezvous epoch', `${rv.epoch} (started ${rendezvous.epochStart}, ${RENDEZVOUS_EPOCH_SECONDS} s each)`],
    ['rendezvous keys', `previous ${rendezvous.previous.fingerprint}, current ${rendezvous.current.fingerprint}, next ${rendezvous.next.fingerprint} (sha256 fingerprints)`]
  ]))
  out('secrets derived from this token and not shown: pnet PSK, rendezvous keys, k3s cluster tokens')
  return EXIT_OK
}
