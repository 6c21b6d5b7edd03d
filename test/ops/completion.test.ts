import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { tempRoot, weft } from '../cli/helpers.js'

const haveBash = await promisify(execFile)('bash', ['--version']).then(() => true, () => false)

describe('weft completion', () => {
  const roots: Array<{ cleanup: () => Promise<void> }> = []
  afterAll(async () => { for (const r of roots) await r.cleanup() })

  it('the words come from the program: every command, subcommand and long flag', async () => {
    const r = await weft(['completion', 'bash'])
    const words = (path: string): string[] => (new RegExp(`"${path}"\\) candidates="([^"]*)"`).exec(r.stdout)?.[1] ?? '').split(' ')
    expect(words('')).toEqual(expect.arrayContaining(['up', 'bridge', 'status', 'peers', 'ping', 'node', 'log', 'completion', '--version']))
    expect(words('node')).toEqual(expect.arrayContaining(['ls', 'leave', 'evict', 'revoke']))
    expect(words('up')).toEqual(expect.arrayContaining(['--token', '--data-dir', '--log-format', '--no-tun', '--k3s']))
  })

  it.skipIf(!haveBash)(`bash: completes commands, subcommands and flags after options${haveBash ? '' : ' (skipped: no bash)'}`, async () => {
    const r = await weft(['completion', 'bash'])
    expect(r.code).toBe(0)
    const root = await tempRoot()
    roots.push(root)
    const file = join(root.dir, 'weft.bash')
    await writeFile(file, r.stdout)
    const complete = async (...words: string[]): Promise<string[]> => {
      const script = `source ${file}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _weft; printf '%s\\n' "\${COMPREPLY[@]}"`
      const { stdout } = await promisify(execFile)('bash', ['-c', script])
      return stdout.split('\n').filter((l) => l !== '')
    }
    expect(await complete('weft', 'pi')).toEqual(['ping'])
    expect(await complete('weft', 'node', 'l')).toEqual(['ls', 'leave'])
    expect(await complete('weft', '--data-dir', '/x', 'peers', '')).toEqual(['ls', '--help'])
    expect(await complete('weft', 'up', '--log-f')).toEqual(['--log-format'])
  })

  it('zsh: a #compdef script over the same table; an unknown shell is a clear error', async () => {
    const z = await weft(['completion', 'zsh'])
    expect(z.code).toBe(0)
    expect(z.stdout).toMatch(/^#compdef weft\n/)
    expect(z.stdout).toContain('"node") candidates="')
    const bad = await weft(['completion', 'fish'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toBe('weft: no completion for "fish": give bash or zsh\n')
  })
})
