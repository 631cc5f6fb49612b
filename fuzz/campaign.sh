#!/usr/bin/env bash
# In-guest campaign entry (virtme-ng VM on a kernel of the matrix).
#
#   fuzz/campaign.sh <target> <secs> <corpus-dir> <artifact-dir>
#
# Runs the prebuilt fuzz binary (cargo fuzz build -s none, on the host; the
# guest shares the host's root read-only) for <secs> seconds. <corpus-dir> is
# read and extended (keep it between runs); the checked-in seeds are read
# too. Findings go to <artifact-dir>/ as crash-*/timeout-*; the readable
# finding is in the log (libFuzzer's stderr, passed through).
#
# Environment:
#   FUZZ_BIN_DIR         where the binaries are (default: fuzz/target/x86_64-unknown-linux-gnu/release)
#   CLONE_WAIT_PID_FLAG  the feature's bit on this kernel (e.g. bit:40); decode artifacts with the same value
#   WAIT_FUZZ_RISKY      defaults to 1 here (a VM): namespaces and CLONE_VM children allowed
#   WAIT_FUZZ_INPROCESS  0: every clone3_flags input runs in the worker (default: harmless ones in process)
#   FUZZ_FORK            N > 1: libFuzzer's fork mode, N worker processes (-fork=N) over the
#                        VM's CPUs, new units merged into <corpus-dir> by libFuzzer as they come;
#                        execs and exec/s are then the parent's last "#N: ... exec/s:" line
#
# Output: libFuzzer's log, then one machine-readable line
#   CAMPAIGN target=<t> secs=<s> workers=<n> elapsed=<libFuzzer's wall seconds> rc=<libFuzzer rc> execs=<n> exec_per_sec=<n> cov=<n> ft=<n> corpus=<n> artifacts=<n> leftovers=<n>
# Exit status: 0 no finding; 1 finding(s) (see <artifact-dir>); 2 usage or
# missing binary; 3 the run was clean but processes were left behind.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -ne 4 ]; then
    sed -n '2,29p' "$0" >&2
    exit 2
fi
target=$1 secs=$2 corpus=$3 artifacts=$4
bin=${FUZZ_BIN_DIR:-$here/target/x86_64-unknown-linux-gnu/release}/$target
if [ ! -x "$bin" ]; then
    echo "campaign.sh: no binary $bin (run: cd fuzz && cargo fuzz build -s none)" >&2
    exit 2
fi
export WAIT_FUZZ_RISKY=${WAIT_FUZZ_RISKY:-1}
mkdir -p "$corpus" "$artifacts"
log=$(mktemp)
started=$SECONDS
fork=()
if [ "${FUZZ_FORK:-1}" -gt 1 ]; then
    fork=(-fork="$FUZZ_FORK")
fi
"$bin" -max_total_time="$secs" -len_control=0 -timeout=60 -print_final_stats=1 "${fork[@]}" \
    -artifact_prefix="$artifacts/" "$corpus" "$here/corpus/$target" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
elapsed=$((SECONDS - started))
last=$(grep -E '^#[0-9]+' "$log" | tail -1)
stat() {
    local v
    v=$(awk -v k="$1" '$1 == k":" {v=$2} END {print v+0}' "$log")
    # Fork mode: the workers' stats stay in their own logs; the parent's status line counts.
    if [ "$v" = 0 ] && [ ${#fork[@]} -gt 0 ]; then
        case $1 in
            stat::number_of_executed_units) v=$(sed -nE 's/^#([0-9]+):.*/\1/p' <<<"$last");;
            stat::average_exec_per_sec) v=$(sed -nE 's/.* exec\/s: ([0-9]+).*/\1/p' <<<"$last");;
        esac
    fi
    echo "${v:-0}"
}
cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
left=$(ps -eo pid=,stat=,comm= | awk -v b="$target" '$3 == b' | wc -l)
echo "CAMPAIGN target=$target secs=$secs workers=${FUZZ_FORK:-1} elapsed=$elapsed rc=$rc execs=$(stat stat::number_of_executed_units) exec_per_sec=$(stat stat::average_exec_per_sec) cov=${cov:-0} ft=${ft:-0} corpus=$(find "$corpus" -mindepth 1 -maxdepth 1 | wc -l) artifacts=$(find "$artifacts" -mindepth 1 -maxdepth 1 | wc -l) leftovers=$left"
rm -f "$log"
if [ "$rc" -ne 0 ]; then exit 1; fi
if [ "$left" -ne 0 ]; then exit 3; fi
exit 0
