import { homedir } from 'node:os'
import { join } from 'node:path'
import { Option, type Command } from 'commander'
import type { ApiCliOptions, ApiClient } from './api-client.js'
import { CliError, EXIT_OK, run } from './errors.js'
import { dataDirOption, jsonOption } from './options.js'
import { out, printJson } from './output.js'
import { apiOptions } from './status.js'

/**
 * Administrative commands: the daemon composes the event (it is the author), the owner key
 * cosigns it here, on the operator's machine (the key never reaches a node), and the daemon
 * appends it. A node that is itself a delegate needs no owner key. See docs/trust.md.
 */

/** Where `weft token new` puts the owner key unless told otherwise. */
export function defaultOwnerKeyPath (networkId: string): string {
  const base = process.env.XDG_CONFIG_HOME ?? join(homedir(), '.config')
  return join(base, 'weft', `owner-${networkId}.key`)
}

export function ownerKeyOption (cmd: Command): Command {
  return cmd.addOption(new Option('--owner-key <file>', 'the network owner\'s key file (default: WEFT_OWNER_KEY, else ~/.config/weft/owner-<network id>.key)').env('WEFT_OWNER_KEY'))
}

type AdminOpts = ApiCliOptions & { json: boolean, ownerKey?: string }

const client = async (o: ApiCliOptions): Promise<ApiClient> => await (await import('./api-client.js')).ApiClient.fromOptions(o)

/**
 * Prepare, cosign when needed, append; a ticket bound to a seq the node moved past (it
 * appended meanwhile) is prepared again, a few times.
 */
export async function adminAct (action: Record<string, unknown>, o: AdminOpts): Promise<{ id: string, seq: number, type: string, cosignedBy?: string }> {
  const api = await client(o)
  for (let attempt = 0; attempt < 5; attempt++) {
    const p = await api.adminPrepare(action)
    let auth: { by: string, sig: string } | undefined
    if (!p.authorisedWithout) {
      if (p.owner === null) throw new CliError('this network has no owner key (a legacy weft1 token)')
      const { loadKeyFile } = await import('../adapters/identity-file.js')
      const status = await api.status()
      const path = o.ownerKey ?? defaultOwnerKeyPath(status.networkId)
      let key
      try {
        key = await loadKeyFile(path)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        throw new CliError(code === 'ENOENT'
          ? `${String(action.type)} needs the network owner's signature, and there is no owner key at ${path}: run this where the owner key is, give --owner-key <file>, or have the owner grant this node (weft admin grant)`
          : (err as Error).message)
      }
      if (key.authorHex !== p.owner) {
        throw new CliError(`${path} is not this network's owner key (the token commits to owner ${p.owner.slice(0, 16)}…, the file holds ${key.authorHex.slice(0, 16)}…)`)
      }
      auth = { by: key.authorHex, sig: Buffer.from(key.sign(Buffer.from(p.signingInput, 'hex'))).toString('hex') }
    }
    const r = await api.callRaw('POST', '/admin/append', { ticket: p.ticket, ...(auth !== undefined ? { auth } : {}) })
    if (r.status === 200) {
      const ok = r.json as { id: string, seq: number, type: string }
      return { ...ok, ...(auth !== undefined ? { cosignedBy: auth.by } : {}) }
    }
    const err = (r.json as { error?: { code?: string, message?: string } } | undefined)?.error
    if (r.status === 409 && err?.code === 'stale') continue
    throw new CliError(err?.message ?? `the daemon refused the event (HTTP ${r.status})`)
  }
  throw new CliError('the node kept appending events while this one was being signed; try again')
}

function report (o: AdminOpts, what: string, r: { id: string, seq: number, type: string, cosignedBy?: string }): void {
  if (o.json) { printJson(r); return }
  out(`${what}: ${r.type} ${r.id.slice(0, 12)} (seq ${r.seq}${r.cosignedBy !== undefined ? ', cosigned by the owner' : ''})`)
}

function adminCommand (cmd: Command, json: string): Command {
  return jsonOption(ownerKeyOption(apiOptions(dataDirOption(cmd))), json)
}

export function registerAdmin (program: Command): void {
  const admin = program.command('admin').description('delegate the owner\'s authority to members (owner key needed)')
  for (const verb of ['grant', 'ungrant'] as const) {
    adminCommand(admin.command(verb)
      .description(verb === 'grant' ? 'make a member a delegate: it may then change settings, evict, revoke and route on its own' : 'take a delegation back')
      .argument('<member>', 'PeerId or hostname'), 'print the appended event as JSON')
      .action(async (member: string, o: AdminOpts) => {
        await run(async () => { report(o, verb === 'grant' ? 'granted' : 'ungranted', await adminAct({ type: `admin.${verb}`, peer: member }, o)); return EXIT_OK })
      })
  }

  const node = program.commands.find((c) => c.name() === 'node') ?? program.command('node').description('members of the network')
  adminCommand(node.command('revoke')
    .description('remove a member for good and rotate the network\'s transport key so its machine cannot come back (owner or delegate)')
    .argument('<member>', 'PeerId or hostname')
    .option('--reason <text>', 'why (kept in the log)', 'revoked')
    .option('--no-rotate', 'revoke without rotating the transport key (the machine could join again under a new identity with the old token)'), 'print the appended events as JSON')
    .action(async (member: string, o: AdminOpts & { reason: string, rotate: boolean }) => {
      await run(async () => {
        const revoked = await adminAct({ type: 'node.revoke', peer: member, reason: o.reason }, o)
        const rotated = o.rotate ? await adminAct({ type: 'network.rotate' }, o) : undefined
        if (o.json) { printJson({ revoked, rotated: rotated ?? null }); return EXIT_OK }
        report(o, 'revoked', revoked)
        if (rotated !== undefined) {
          report(o, 'transport key rotated', rotated)
          out('members switch to the new key as they receive it; give new machines the token from "weft token show"')
        }
        return EXIT_OK
      })
    })
  adminCommand(node.command('evict')
    .description('remove a member (it may join again; use revoke to keep it out) (owner or delegate)')
    .argument('<member>', 'PeerId or hostname')
    .option('--reason <text>', 'why (kept in the log)', 'evicted'), 'print the appended event as JSON')
    .action(async (member: string, o: AdminOpts & { reason: string }) => {
      await run(async () => { report(o, 'evicted', await adminAct({ type: 'node.evict', peer: member, reason: o.reason }, o)); return EXIT_OK })
    })
}

/** `weft token rotate` and `weft token show`, added to the token command. */
export function registerTokenAdmin (token: Command): void {
  adminCommand(token.command('rotate')
    .description('replace the transport key (after a token leak): sealed to every member, who switch without a restart'), 'print the appended event as JSON')
    .action(async (o: AdminOpts) => {
      await run(async () => {
        report(o, 'transport key rotated', await adminAct({ type: 'network.rotate' }, o))
        out('give new machines the token from "weft token show"')
        return EXIT_OK
      })
    })
  jsonOption(apiOptions(dataDirOption(token.command('show')
    .description('print the token new machines should be given now (the current admission epoch); a secret'))), 'print {token, epoch}')
    .action(async (o: ApiCliOptions & { json: boolean }) => {
      await run(async () => {
        const t = await (await client(o)).currentToken()
        if (o.json) printJson(t)
        else out(t.token)
        return EXIT_OK
      })
    })
}
