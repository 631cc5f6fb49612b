#!/usr/bin/env bash
# CI step for the fuzz targets: stable toolchain, no sanitizer, a fixed number
# of executions from the checked-in seed corpus, then the regression rows and
# a leftover-process check. Called from .ci/run; run from anywhere.
#
#   FUZZ_CI_RUNS_CLONE3=N   executions of clone3_flags   (default 3000)
#   FUZZ_CI_RUNS_WAIT=N     executions of wait_sequence  (default 300)
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cargo fuzz build -s none

run() { # target runs
    local t=$1 n=$2 work
    work=$(mktemp -d)
    # New units go to the scratch dir; the checked-in corpus stays as it is.
    if ! cargo fuzz run -s none "$t" "$work" "corpus/$t" -- -runs="$n" -len_control=0 -timeout=60 -print_final_stats=1; then
        echo "fuzz/ci.sh: $t found something; artifacts under fuzz/artifacts/$t/" >&2
        echo "  readable: cargo run --release --manifest-path fuzz/Cargo.toml -p wcfuzz -- print $t <artifact>" >&2
        echo "  as case:  cargo run --release --manifest-path fuzz/Cargo.toml -p wcfuzz -- regress $t <artifact>" >&2
        rm -rf "$work"
        exit 1
    fi
    rm -rf "$work"
}
run clone3_flags "${FUZZ_CI_RUNS_CLONE3:-3000}"
run wait_sequence "${FUZZ_CI_RUNS_WAIT:-300}"

# The tool (the wcfuzz/ member) builds on stable too; its regressions
# subcommand runs every embedded regression row the way the case table does.
cargo run --release -p wcfuzz -- regressions

# Nothing of ours may be left: no fuzz process, no zombie child of this shell.
left=$(ps -eo pid=,ppid=,stat=,comm= | awk -v me=$$ '$4 ~ /^(clone3_flags|wait_sequence|wcfuzz)$/ || ($2 == me && $3 ~ /Z/)')
if [ -n "$left" ]; then
    echo "fuzz/ci.sh: leftover processes:" >&2
    echo "$left" >&2
    exit 1
fi
echo "fuzz/ci.sh: ok"
