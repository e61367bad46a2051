#!/usr/bin/env bash
# The per-spec table of a node-e2e run, from ginkgo's JSON report:
#   node-e2e-summary.sh REPORT.json [RUNTIME] [SECONDS]
#   node-e2e-summary.sh --compare A/report.json B/report.json
# Spec states: passed; failed (failed, panicked, timed out, interrupted,
# aborted); skipped (selected, but the spec skipped itself at run time, with
# its reason); specs the focus/skip regexps left out are only counted.
# Suite nodes (BeforeSuite, AfterSuite, ...) that did not pass are listed too.
set -euo pipefail
command -v jq >/dev/null || {
  echo "node-e2e-summary.sh: needs jq (apt-get install jq)" >&2
  exit 1
}

# one TSV line per reported node: state, seconds, name, first line of the reason
rows() {
  jq -r '
    .[].SpecReports[]
    | (if .LeafNodeType == "It" then ((.ContainerHierarchyTexts // []) + [.LeafNodeText]) | join(" ")
       else "[" + .LeafNodeType + "]" end) as $name
    | (.Failure.Message // "" | split("\n") | map(select(test("\\S"))) | (.[0] // "") | .[0:160]) as $why
    | (if .State == "passed" then "passed"
       elif .State == "skipped" and $why == "" then "unselected"
       elif .State == "skipped" or .State == "pending" then "skipped"
       else "failed" end) as $st
    | select(.LeafNodeType == "It" or $st != "passed")
    | [$st, ((.RunTime // 0) / 1e9 | floor | tostring), $name, $why] | @tsv' "$1"
}

if [ "${1:-}" = --compare ]; then
  [ $# = 3 ] || {
    echo "usage: node-e2e-summary.sh --compare A/report.json B/report.json" >&2
    exit 2
  }
  a=$(dirname "$2")
  b=$(dirname "$3")
  join -t $'\t' -a1 -a2 -e - -o 0,1.2,2.2 \
    <(rows "$2" | awk -F'\t' '$1 != "unselected" { print $3 "\t" $1 }' | sort -t $'\t' -k1,1) \
    <(rows "$3" | awk -F'\t' '$1 != "unselected" { print $3 "\t" $1 }' | sort -t $'\t' -k1,1) |
    awk -F'\t' -v a="${a##*/}" -v b="${b##*/}" '
      BEGIN { printf "%-10s %-10s %s\n", substr(a, 1, 10), substr(b, 1, 10), "spec (rows where they differ)" }
      { n[$2 "/" $3]++ }
      $2 != $3 { printf "%-10s %-10s %s\n", $2, $3, $1 }
      END { print ""; for (k in n) printf "%5d  %s\n", n[k], k }'
  exit 0
fi

report=${1:?usage: node-e2e-summary.sh REPORT.json [RUNTIME] [SECONDS]}
runtime=${2:-}
secs=${3:-}
[ -s "$report" ] || {
  echo "node-e2e-summary.sh: no report at $report (the suite did not get to write one: see ginkgo.log next to it)" >&2
  exit 1
}
all=$(rows "$report")
count() { awk -F'\t' -v s="$1" '$1 == s' <<<"$all" | wc -l; }
echo "NodeConformance${runtime:+ against $runtime}${secs:+ in $((secs / 60)) min $((secs % 60)) s}:" \
  "$(count passed) passed, $(count failed) failed, $(count skipped) skipped" \
  "($(count unselected) specs not selected by focus/skip)"
for st in failed skipped passed; do
  awk -F'\t' -v s="$st" '$1 == s' <<<"$all" | sort -t $'\t' -k3,3 |
    awk -F'\t' '{ printf "%-7s %5ss  %s\n", $1, $2, $3; if ($4 != "" && $1 != "passed") printf "                 %s\n", $4 }'
done
