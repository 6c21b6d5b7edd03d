# Completes a command line in a real interactive zsh, as TAB does, and prints the matches zsh
# offers, one a line. Used by test/ops/completion.test.ts.
#
#   zsh -f zsh-complete.zsh fpath <dir holding _weft> '<line>' <dump>    # compinit finds _weft (#compdef)
#   zsh -f zsh-complete.zsh source <script file> '<line>' <dump>         # compinit, then source the script
#
# <dump> is compinit's dump file (one per mode: scanning $fpath anew each time is slow).
# The inner shell runs under zsh/zpty (a pseudo-terminal: ZLE, and so completion, needs one).
# compadd is wrapped to print what the builtin compadd would add (-A: after zsh's own matching
# against the word being completed), and a comppostfuncs hook prints a marker and exits.
zmodload zsh/zpty || { print -u2 'zsh/zpty is missing'; exit 3 }
local mode=$1 where=$2 cmdline=$3 dump=$4 line out
zpty z zsh -f -i
zpty -w z "PROMPT='' RPROMPT=''"
zpty -w z "zstyle ':completion:*' insert-tab false"
if [[ $mode == fpath ]]; then
  zpty -w z "fpath=(${(q)where} \$fpath); autoload -U compinit; compinit -u -d ${(q)dump}"
else
  zpty -w z "autoload -U compinit; compinit -u -d ${(q)dump}; source ${(q)where}"
fi
zpty -w z 'compadd () {
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi
  local -a __hits
  builtin compadd -A __hits "$@"
  (( $#__hits )) || return 1
  local h; for h in $__hits; do print -r -- "HIT:$h"; done
  builtin compadd "$@"
}'
zpty -w z 'completion-done () { print -r -- "COMPLETION-DONE"; exit }'
zpty -w z 'comppostfuncs=(completion-done)'
# The echo of this line has the arithmetic unexpanded: the match is the shell's own output.
zpty -w z 'print -r -- READY-$((6*7))'
zpty -r z line '*READY-42*' || exit 4
zpty -n -w z "$cmdline"$'\t'
zpty -r z out '*COMPLETION-DONE*' || exit 5
print -r -- "$out" | tr -d '\r' | sed -n 's/^.*HIT:\(.*\)$/\1/p'
zpty -d z
