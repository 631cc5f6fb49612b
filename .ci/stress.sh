#!/usr/bin/env bash
# Run the case binary N times in a row; every run must pass, and afterwards
# no process may be left that runs it (checked from /proc).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
bin=target/release/wait-conformance
[ -x "$bin" ] || cargo build --release -p cases --bin wait-conformance
fails=0
start=$(date +%s%N)
for i in $(seq 1 "$n"); do
  if ! "$bin" -q >/tmp/wc-stress.$$ 2>&1; then
    fails=$((fails + 1))
    echo "run $i failed:"; grep -E "FAIL|BROKEN|panicked" /tmp/wc-stress.$$ | head -5
  fi
done
end=$(date +%s%N)
rm -f /tmp/wc-stress.$$
left=$(for p in /proc/[0-9]*; do
  exe=$(readlink "$p/exe" 2>/dev/null || true)
  case "$exe" in *"/wait-conformance"*) echo "${p#/proc/} $(awk '{print $3}' "$p/stat" 2>/dev/null)";; esac
done)
zombies=$(awk '$3=="Z"' /proc/[0-9]*/stat 2>/dev/null | grep -c wait-conform || true)
echo "stress: $n runs, $fails failed, $(( (end - start) / 1000000 )) ms total; leftover processes: ${left:-none}; zombies: $zombies"
[ "$fails" -eq 0 ] && [ -z "$left" ] && [ "$zombies" -eq 0 ]
