#!/bin/sh
# Where a VM run's time goes: the whole case binary under `perf record` (cpu-clock, which needs
# no PMU and so works under TCG), system-wide, on a kernel with perf events:
#
#   runner exec --kernel wait-pid-6.12-perf -- sh vm-images/recipes/perf-cases.sh [OUT [BIN]]
#
# OUT (default target/perf-cases, under the cargo target directory, which `runner exec` makes
# writable) receives perf.data and three reports: by thread (pid.txt: the test process's main
# and trial threads, the fork server, each case process), by symbol (sym.txt) and inclusive
# (children.txt). BIN defaults to target/release/wait-conformance. Under TCG perf samples at
# far less than the asked rate (about 2,300 samples for a 5 s run): proportions, not counts.
set -eu
out=${1:-target/perf-cases}
bin=${2:-target/release/wait-conformance}
[ -x "$bin" ] || { echo "perf-cases: no case binary at $bin (cargo build --release -p cases)" >&2; exit 2; }
command -v perf > /dev/null || { echo "perf-cases: no perf on the host (apt-get install linux-perf)" >&2; exit 2; }
[ -e /proc/sys/kernel/perf_event_paranoid ] ||
    { echo "perf-cases: this kernel has no perf events (use the wait-pid-6.12-perf profile)" >&2; exit 2; }
mkdir -p "$out"
echo -1 > /proc/sys/kernel/perf_event_paranoid
echo 0 > /proc/sys/kernel/kptr_restrict
: "${CLONE_WAIT_PID_FLAG:=0x10000000000}"
: "${WAITCONF_EXPECT_FEATURE:=present}"
export CLONE_WAIT_PID_FLAG WAITCONF_EXPECT_FEATURE
# perf.data in guest RAM while recording (9p writes would be in the profile), then copied out.
status=0
perf record -e cpu-clock -F 1999 -a -g -o /tmp/perf-cases.data -- \
    "$bin" --test-threads 4 -q > "$out/cases.out" 2> "$out/perf.err" || status=$?
cp /tmp/perf-cases.data "$out/perf.data"
report() { perf report -i /tmp/perf-cases.data --stdio "$@" 2> /dev/null | grep -v '^#' | grep -v '^$'; }
report --no-children --sort pid,comm -g none > "$out/pid.txt"
report --no-children --sort dso,sym -g none > "$out/sym.txt"
report --children --sort sym -g none > "$out/children.txt"
grep -h "finished in" "$out/cases.out" || true
echo "perf-cases: case binary exit $status; reports in $out (pid.txt sym.txt children.txt)"
