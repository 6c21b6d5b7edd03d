import type { Command } from 'commander'
import { CliError, EXIT_OK, run } from './errors.js'
import { out } from './output.js'

/**
 * `weft completion bash|zsh`: a completion script made from the program's own commands and
 * flags (so it never lags behind them). Words only: commands, then subcommands, then the
 * command's long flags; files complete as the shell does by default.
 *
 *   source <(weft completion bash)                  # or: weft completion bash > /etc/bash_completion.d/weft
 *   weft completion zsh > "${fpath[1]}/_weft"        # then: autoload -U compinit && compinit
 */
export function registerCompletion (program: Command): void {
  program.command('completion').description('print a shell completion script: source <(weft completion bash), or weft completion zsh > "${fpath[1]}/_weft"')
    .argument('<shell>', 'bash or zsh')
    .action(async (shell: string) => {
      await run(() => {
        if (shell !== 'bash' && shell !== 'zsh') throw new CliError(`no completion for ${JSON.stringify(shell)}: give bash or zsh`)
        out(completionScript(program, shell))
        return EXIT_OK
      })
    })
}

/** Command path ("" for weft itself, "log show") → the words that may follow it. */
export function completionTable (program: Command): Map<string, string[]> {
  const table = new Map<string, string[]>()
  const walk = (cmd: Command, path: string[]): void => {
    const subs = cmd.commands.filter((c) => c.name() !== 'help')
    const flags = cmd.options.map((o) => o.long).filter((f): f is string => f !== undefined)
    table.set(path.join(' '), [...subs.map((c) => c.name()), ...flags, '--help'])
    for (const c of subs) walk(c, [...path, c.name()])
  }
  walk(program, [])
  return table
}

export function completionScript (program: Command, shell: 'bash' | 'zsh'): string {
  const table = completionTable(program)
  const cases = [...table].map(([path, words]) => `    "${path}") candidates="${words.join(' ')}" ;;`).join('\n')
  const known = [...table.keys()].filter((p) => p !== '').map((p) => `"${p}"`).join('|')
  // The command path is the leading words that name commands; flags and their values are skipped.
  // Not "path": in zsh that is $PATH (as an array), and a local one empties it for the function.
  const body = `  local cmdpath="" w next
  for w in "\${prior[@]}"; do
    [[ "$w" == -* ]] && continue
    if [[ -z "$cmdpath" ]]; then next="$w"; else next="$cmdpath $w"; fi
    case "$next" in
      ${known === '' ? '""' : known}) cmdpath="$next" ;;
    esac
  done
  local candidates=""
  case "$cmdpath" in
${cases}
  esac`
  if (shell === 'bash') {
    return `# bash completion for weft (weft completion bash)
_weft() {
  local cur="\${COMP_WORDS[COMP_CWORD]}"
  local prior=("\${COMP_WORDS[@]:1:COMP_CWORD-1}")
${body}
  COMPREPLY=($(compgen -W "$candidates" -- "$cur"))
  [[ \${#COMPREPLY[@]} -eq 0 ]] && COMPREPLY=($(compgen -f -- "$cur"))
  return 0
}
complete -F _weft weft`
  }
  // Autoloaded from $fpath by compinit, this file is the body of the function _weft: its first
  // call must complete, not only define _weft (else the first TAB of a shell offers nothing).
  return `#compdef weft
# zsh completion for weft (weft completion zsh > "\${fpath[1]}/_weft", or source <(weft completion zsh) after compinit)
_weft() {
  local -a prior
  prior=("\${(@)words[2,CURRENT-1]}")
${body}
  local -a choices
  choices=(\${=candidates})
  compadd -- "\${choices[@]}" || _files
}
if [[ "\${zsh_eval_context[-1]}" == loadautofunc ]]; then
  _weft "$@"
else
  compdef _weft weft 2>/dev/null || true
fi`
}
