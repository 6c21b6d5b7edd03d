import { beforeAll, describe, expect, it } from 'vitest'
import { formatToken, k3sClusterToken, parseToken, pnetSwarmKey, rendezvousKeys } from '../../src/log/token.js'
import { tokenTransportKeys } from '../../src/net/transport-keys.js'
import { isWeftError } from '../../src/log/errors.js'
import { assertBuilt, TEST_CONFIG_HOME, weft } from './helpers.js'
import { readFile, stat } from 'node:fs/promises'
import { identityFromPem } from '../../src/log/identity.js'
import { toHex } from '../../src/log/bytes.js'

const TOKEN_RE = /^weft2[1-9A-HJ-NP-Za-km-z]{90,110}$/

beforeAll(assertBuilt)

describe.concurrent('weft token', () => {
  it('new writes the owner key (0600) that the token commits to; --owner-key reuses an existing one', async () => {
    const made = JSON.parse((await weft(['token', 'new', '--json'])).stdout) as { token: string, ownerKey: string, networkId: string }
    expect(made.ownerKey).toContain(TEST_CONFIG_HOME)
    expect((await stat(made.ownerKey)).mode & 0o077).toBe(0)
    const key = identityFromPem(await readFile(made.ownerKey, 'utf8'))
    expect(toHex(parseToken(made.token).owner as Uint8Array)).toBe(key.authorHex)
    const again = JSON.parse((await weft(['token', 'new', '--json', '--owner-key', made.ownerKey])).stdout) as { token: string, networkId: string }
    expect(again.networkId).not.toBe(made.networkId)
    expect(toHex(parseToken(again.token).owner as Uint8Array)).toBe(key.authorHex)
  })

  it('new prints one token line; inspect derives the same network id as new --json', async () => {
    const plain = await weft(['token', 'new'])
    expect(plain.code).toBe(0)
    expect(plain.stderr).toMatch(/^owner key: .*owner-[0-9a-f]{16}\.key \(keep it off the nodes/)
    const lines = plain.stdout.split('\n').filter((l) => l !== '')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(TOKEN_RE)

    const j = await weft(['token', 'new', '--json'])
    expect(j.code).toBe(0)
    const made = JSON.parse(j.stdout) as { token: string, networkId: string }
    expect(made.token).toMatch(TOKEN_RE)
    expect(made.networkId).toMatch(/^[0-9a-f]{16}$/)
    expect(made.token).not.toBe(lines[0])

    const ins = await weft(['token', 'inspect', made.token, '--json'])
    expect(ins.code).toBe(0)
    const info = JSON.parse(ins.stdout) as Record<string, unknown> & { rendezvous: { epoch: number, current: { fingerprint: string } } }
    expect(info.networkId).toBe(made.networkId)
    expect(info.gossipTopic).toContain(made.networkId)
    expect(info.dhtProtocolPrefix).toContain(made.networkId)
    expect(info.mdnsServiceName).toMatch(/^weft-[0-9a-f]{10}$/)
    expect(info.rendezvous.epoch).toBe(Math.floor(Date.now() / 3_600_000))
    expect(info.rendezvous.current.fingerprint).toMatch(/^[0-9a-f]{8}$/)

    const human = await weft(['token', 'inspect', made.token])
    expect(human.code).toBe(0)
    expect(human.stdout).toContain(made.networkId)
    expect(human.stdout).toContain('gossip topic')
  })

  it('inspect never prints the secret, the token, the transport key, the old pnet PSK, rendezvous keys or k3s tokens', async () => {
    const made = JSON.parse((await weft(['token', 'new', '--json'])).stdout) as { token: string }
    const t = parseToken(made.token)
    const secrets = [
      made.token,
      made.token.slice(5),
      Buffer.from(t.secret).toString('hex'),
      Buffer.from(pnetSwarmKey(t)).toString().split('\n')[2] as string,
      Buffer.from(tokenTransportKeys(t).current().key).toString('hex'),
      k3sClusterToken(t, 'default')
    ]
    const rv = rendezvousKeys(t, Date.now())
    secrets.push(rv.previous, rv.current, rv.next)
    for (const args of [['token', 'inspect', made.token], ['token', 'inspect', made.token, '--json']]) {
      const r = await weft(args)
      expect(r.code).toBe(0)
      for (const s of secrets) {
        expect(r.stdout).not.toContain(s)
        // Not even a prefix of a derived secret.
        if (!s.startsWith('weft2')) expect(r.stdout).not.toContain(s.slice(0, 8))
      }
    }
  })

  it('inspect reads the token from stdin with "-"', async () => {
    const made = JSON.parse((await weft(['token', 'new', '--json'])).stdout) as { token: string, networkId: string }
    const r = await weft(['token', 'inspect', '-', '--json'], { input: `${made.token}\n` })
    expect(r.code).toBe(0)
    expect((JSON.parse(r.stdout) as { networkId: string }).networkId).toBe(made.networkId)
  })

  describe('inspect refuses a bad token with exit 2 and says which check failed', () => {
    const good = formatToken({ secret: new Uint8Array(32).fill(9) })
    const last = good.slice(-1)
    const checksumBad = good.slice(0, -1) + (last === 'a' ? 'b' : 'a')
    const cases: Array<[string, string, RegExp, string]> = [
      ['prefix', 'wxyz1' + good.slice(5), /must start with "weft2"/, 'ERR_TOKEN_PREFIX'],
      ['encoding', good.slice(0, 10) + '0OIl' + good.slice(14), /outside base58/, 'ERR_TOKEN_ENCODING'],
      ['length', good.slice(0, -6), /decodes to \d+ bytes, expected 36/, 'ERR_TOKEN_LENGTH'],
      ['checksum', checksumBad, /checksum does not match/, 'ERR_TOKEN_CHECKSUM']
    ]
    for (const [name, token, message, code] of cases) {
      it(name, async () => {
        // The library agrees on which check this input fails.
        let libCode: string | undefined
        try { parseToken(token) } catch (err) { libCode = isWeftError(err) ? err.code : 'other' }
        expect(libCode).toBe(code)

        const r = await weft(['token', 'inspect', token])
        expect(r.code).toBe(2)
        expect(r.stdout).toBe('')
        expect(r.stderr).toMatch(message)
        expect(r.stderr).toMatch(/^weft: [^\n]+\n$/)
        expect(r.stderr).not.toMatch(/\n\s+at /)
      })
    }
  })

  it('unknown options, commands and missing arguments exit 2 with commander\'s message', async () => {
    const flag = await weft(['token', 'new', '--nope'])
    expect(flag.code).toBe(2)
    expect(flag.stderr).toBe("weft: unknown option '--nope'\n")
    expect(flag.stdout).toBe('')

    const cmd = await weft(['token', 'frobnicate'])
    expect(cmd.code).toBe(2)
    expect(cmd.stderr).toMatch(/^weft: unknown command 'frobnicate'/)

    const missing = await weft(['token', 'inspect'])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/^weft: missing required argument 'token'/)

    const help = await weft(['token', '--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('inspect')
  })
})
