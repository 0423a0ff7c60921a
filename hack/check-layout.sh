#!/usr/bin/env bash
# check-layout.sh: every Go package of the product and hack/ is named in the README's Layout
# table, so the table cannot go stale: its own row (`DIR`), or its parent's row (`PARENT/`)
# naming it (`NAME`). e2e/ has its own README.
set -euo pipefail
cd "$(dirname "$0")/.."
table=$(awk '/^## Layout/{on=1; next} /^## /{on=0} on && /^\|/' README.md)
missing=()
dirs=$( { go list -f '{{.Dir}}' ./...; (cd hack/release && go list -f '{{.Dir}}' ./...); } | sed "s|^$PWD/||" | grep -v '^e2e\(/\|$\)' | sort -u)
for d in $dirs; do
  covered=false
  if grep -qF "\`$d\`" <<<"$table" || grep -qF "\`$d/\`" <<<"$table"; then covered=true; fi
  p=$d
  while ! $covered && [[ "$p" == */* ]]; do
    rest=${d#"${p%/*}"/}; p=${p%/*}
    while IFS= read -r row; do
      cell=${row#| }; cell=${cell%% |*}
      if [[ "$cell" == *"\`$p/\`"* || "$cell" == *"\`$p\`"* ]] && grep -qF "\`$rest\`" <<<"$row"; then covered=true; break; fi
    done <<<"$table"
  done
  $covered || missing+=("$d")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "README.md's Layout table names no row for these packages (add a row, or name them in their parent's):" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi
