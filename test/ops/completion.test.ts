import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { tempRoot, weft } from '../cli/helpers.js'

const haveBash = await promisify(execFile)('bash', ['--version']).then(() => true, () => false)
// CI installs zsh (.ci/run); elsewhere the zsh test says why it skips.
const haveZsh = await promisify(execFile)('zsh', ['-fc', 'zmodload zsh/zpty']).then(() => true, () => false)
if (!haveZsh) console.warn('skipping the zsh completion test: no zsh with the zsh/zpty module (apt-get install zsh)')
const ZSH_COMPLETE = fileURLToPath(new URL('./zsh-complete.zsh', import.meta.url))

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

  it.skipIf(!haveZsh)(`zsh: TAB in a real zsh offers the commands, subcommands and flags, installed in $fpath or sourced${haveZsh ? '' : ' (skipped: no zsh)'}`, async () => {
    const r = await weft(['completion', 'zsh'])
    expect(r.code).toBe(0)
    const root = await tempRoot()
    roots.push(root)
    // As the docs install it: a file named _weft in a directory of $fpath, found by compinit.
    const dir = join(root.dir, 'functions')
    await mkdir(dir)
    await writeFile(join(dir, '_weft'), r.stdout)
    await writeFile(join(root.dir, 'zzz-notes.txt'), 'a file to complete')
    const complete = async (mode: 'fpath' | 'source', line: string): Promise<string[]> => {
      const { stdout } = await promisify(execFile)('zsh', ['-f', ZSH_COMPLETE, mode, mode === 'fpath' ? dir : join(dir, '_weft'), line, join(root.dir, `zcompdump-${mode}`)], { cwd: root.dir, timeout: 20_000 })
      return stdout.split('\n').filter((l) => l !== '').sort()
    }
    // The first TAB of a shell already completes (the autoloaded file runs _weft, not only defines it).
    expect(await complete('fpath', 'weft pe')).toEqual(['peers'])
    expect(await complete('fpath', 'weft node l')).toEqual(['leave', 'ls'])
    expect(await complete('fpath', 'weft --data-dir /x peers ')).toEqual(['--help', 'ls'])
    expect(await complete('fpath', 'weft up --log-f')).toEqual(['--log-format'])
    expect(await complete('fpath', 'weft completion ')).toEqual(['--help'])
    // No command word matches: files, as zsh completes them.
    expect(await complete('fpath', 'weft zzz')).toEqual(['zzz-notes.txt'])
    // Sourced after compinit (source <(weft completion zsh)): compdef registers it.
    expect(await complete('source', 'weft pi')).toEqual(['ping'])
    expect(await complete('source', 'weft log s')).toEqual(expect.arrayContaining(['show', 'state']))
  }, 60_000)

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
