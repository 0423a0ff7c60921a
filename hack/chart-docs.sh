#!/usr/bin/env bash
# chart-docs.sh [--verify] [CHART_DIR]: writes CHART_DIR/README.md (default charts/pullpass) from
# its Chart.yaml, values.yaml's `# --` comments and README.md.gotmpl with helm-docs (pinned in
# hack/build-tools.sh). With --verify it writes nothing and fails if README.md differs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=generate
[ "${1:-}" = --verify ] && { mode=verify; shift; }
chart=${1:-$root/charts/pullpass}
helm_docs=$("$root/hack/build-tools.sh" helm-docs | tail -n 1)/helm-docs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$chart" "$work/chart"
"$helm_docs" --log-level warning --chart-search-root "$work/chart" --template-files README.md.gotmpl >/dev/null
if [ "$mode" = verify ]; then
  diff -u "$chart/README.md" "$work/chart/README.md" >&2 ||
    { echo "$chart/README.md is out of date: run make generate (hack/chart-docs.sh)" >&2; exit 1; }
else
  cp "$work/chart/README.md" "$chart/README.md"
fi
