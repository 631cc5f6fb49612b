#!/usr/bin/env bash
# One-line kernel mutants of the seed port, built incrementally in a kept kernel tree and run
# through the suite: each mutant must be killed by a row that passes on the unmutated port and
# fails on the mutant (a skip is not a kill, nor is the runner's feature expectation alone).
#
#   vm-images/mutants/run-mutants.sh [run] [MUTANT...]   baseline + mutants (default: every
#                                                        vm-images/mutants/*.patch)
#   vm-images/mutants/run-mutants.sh prepare             kept tree + baseline image only
#   vm-images/mutants/run-mutants.sh image OUT PATCH...  build the kept tree with PATCHes on top
#                                                        of 0001, copy the bzImage to OUT, restore
#
# MUTANT is a patch path or a name under vm-images/mutants/ (e.g. 03-hide-focused).
#
# Environment (all optional):
#   WAITCONF_CACHE      the runner's cache (default /var/cache/wait-conformance); the linux-source
#                       .deb is taken from its downloads/ (run `runner kernel --kernel
#                       wait-pid-6.12` once to fetch it)
#   MUTANTS_TREE        kept tree (default $WAITCONF_CACHE/trees/wait-pid-6.12): src/ holds
#                       linux-source-6.12 + 0001, obj/ the build; the tree is left with 0001 only
#   MUTANTS_OUT         results (default /tmp/mutants): mutation.json, baseline/, <mutant>/
#   MUTANTS_RUNNER      runner binary (default target/release/runner of this repository)
#   MUTANTS_CASES_BIN   case binary, the same for the baseline and every mutant (default
#                       target/release/wait-conformance); build both with
#                       cargo build --release -p runner -p cases --bin runner --bin wait-conformance
#   MUTANTS_RUNNER_ARGS extra words for `runner run` (e.g. --filter clone3::)
#   MUTANTS_REBASELINE  1: rerun the baseline even if $MUTANTS_OUT/baseline/run/results.json exists
#   MUTANTS_JOBS        make -j (default 2)
#
# Booting an image: `runner run --kernel-image IMG --clone-wait-pid-flag 0x10000000000
# --expect-feature present --out DIR` (the runner's "any kernel" mode). The case statuses come
# from DIR/results.json (runner/src/report.rs: RunResults.cases[].{name,status}).
#
# Exit status: 0 every mutant killed; 1 a mutant survived (or its run produced no results);
# 2 usage; 3 tree, build or baseline failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${WAITCONF_CACHE:-/var/cache/wait-conformance}
tree=${MUTANTS_TREE:-$cache/trees/wait-pid-6.12}
out=${MUTANTS_OUT:-/tmp/mutants}
runner=${MUTANTS_RUNNER:-$repo/target/release/runner}
cases_bin=${MUTANTS_CASES_BIN:-$repo/target/release/wait-conformance}
jobs=${MUTANTS_JOBS:-2}
seed_patch=$repo/vm-images/patches/0001-pidfd-add-CLONE_WAIT_PID-6.12.patch
# The reference fix's header hunks (a field in signal_struct, unused without the fix's code) go
# into the kept tree's baseline: changing include/linux/sched/signal.h rebuilds two thirds of
# the kernel, so with it in the baseline, `image OUT 0002` recompiles three files. The baseline
# behaves as 0001 alone (nothing reads the field); the mutants touch kernel/*.c only.
fix_patch=$repo/vm-images/patches/0002-pidfd-CLONE_WAIT_PID-fixes-6.12.patch
base_re='^a/include/'
fragment=$repo/vm-images/config/base-virtme.config
localversion=waitpid-kept
flag=0x10000000000

step() { echo "[mutants $(date +%T)] $*" >&2; }
die() { echo "run-mutants.sh: $*" >&2; exit "${2:-3}"; }

src=$tree/src
obj=$tree/obj
applied=$tree/applied # patches currently applied on top of 0001, one per line, in order

export KBUILD_BUILD_USER=wait-conformance KBUILD_BUILD_HOST=runner KBUILD_BUILD_TIMESTAMP="1970-01-01"
mk() { nice -n 10 make -C "$src" O="$obj" "$@"; }

# Undo every patch recorded in $applied, last first. Runs from the EXIT trap too, so a failed
# build or run never leaves a mutant in the kept tree.
restore() {
    [ -s "$applied" ] || return 0
    local p
    while [ -s "$applied" ]; do
        p=$(tail -n1 "$applied")
        step "restoring: patch -R $(basename "$p")"
        patch -p1 -R --batch --silent -d "$src" < "$p" || die "cannot reverse $p: the kept tree $src is dirty, remove $tree"
        sed -i '$d' "$applied"
    done
}

apply() {
    local p=$1
    patch -p1 --dry-run --batch --forward --silent -d "$src" < "$p" >/dev/null \
        || { echo "run-mutants.sh: $(basename "$p") does not apply on top of 0001" >&2; return 1; }
    # Record first: if patch dies half-way, the trap still reverses what it wrote.
    echo "$p" >> "$applied"
    patch -p1 --batch --forward --silent -d "$src" < "$p"
}

build() { mk -s -j"$jobs" bzImage; }

# The sections (from one "diff --git" to the next) of patch $1 whose a/ path matches (or with
# $3 = not, does not match) the ERE $2.
sections() {
    awk -v re="$2" -v inv="${3:-}" '/^diff --git /{keep = ($3 ~ re); if (inv == "not") keep = !keep} keep' "$1"
}

# The kept tree: unpack, 0001, allnoconfig + fragment + localversion (as
# vm-images/recipes/build-kernel.sh), baseline bzImage. Reused while its stamp matches.
prepare() {
    local deb stamp want merged
    deb=$(find "$cache/downloads" -maxdepth 1 -name 'linux-source-6.12_*.deb' | sort | tail -n1)
    [ -n "$deb" ] || die "no linux-source-6.12 .deb in $cache/downloads (run: runner kernel --kernel wait-pid-6.12)"
    mkdir -p "$tree"
    want="$(basename "$deb") $(sha256sum < "$seed_patch" | cut -c1-16)"
    want="$want $(sections "$fix_patch" "$base_re" | sha256sum | cut -c1-16)"
    want="$want $(sha256sum < "$fragment" | cut -c1-16) $localversion"
    stamp=$(cat "$tree/stamp" 2>/dev/null || true)
    restore
    # The stamp is written once the tree is unpacked, patched and configured: an interrupted
    # build resumes incrementally.
    if [ "$stamp" != "$want" ]; then
        step "new kept tree in $tree from $(basename "$deb")"
        rm -rf "$src" "$obj" "$tree/stamp"
        mkdir -p "$src" "$obj"
        "$repo/vm-images/recipes/unpack-linux-source.sh" "$deb" "$src"
        patch -p1 --batch --forward --silent -d "$src" < "$seed_patch"
        sections "$fix_patch" "$base_re" | patch -p1 --batch --forward --silent -d "$src"
        merged=$tree/fragment.config
        { printf '# ---- %s\n' "$(basename "$fragment")"; cat "$fragment"
          printf 'CONFIG_LOCALVERSION="-%s"\n# CONFIG_LOCALVERSION_AUTO is not set\n' "$localversion"; } > "$merged"
        mk -s allnoconfig KCONFIG_ALLCONFIG="$merged"
        echo "$want" > "$tree/stamp"
    fi
    step "building the baseline bzImage (-j$jobs; incremental in a kept tree)"
    build
    mkdir -p "$out/baseline"
    cp "$obj/arch/x86/boot/bzImage" "$out/baseline/bzImage"
}

# Boot IMG, run the suite, results in DIR (DIR/results.json, DIR/runner.log).
boot_and_run() {
    local img=$1 dir=$2
    rm -rf "$dir/run"
    mkdir -p "$dir"
    # The runner exits 1 on failures (expected for a mutant) and 3 on infrastructure trouble;
    # what counts is results.json.
    # shellcheck disable=SC2086 # MUTANTS_RUNNER_ARGS is a list of words
    nice -n 5 "$runner" run --kernel-image "$img" --clone-wait-pid-flag "$flag" \
        --expect-feature present --cases-bin "$cases_bin" --no-build \
        ${MUTANTS_RUNNER_ARGS:-} --out "$dir/run" > "$dir/runner.log" 2>&1 || true
    [ -f "$dir/run/results.json" ]
}

# Rows that passed on the baseline and have STATUS on the mutant, as a JSON array.
rows_from_pass_to() {
    jq -c --arg st "$1" --slurpfile b "$out/baseline/run/results.json" \
        '($b[0].cases | map({(.name): .status}) | add) as $base
         | [.cases[] | select(.status == $st and $base[.name] == "pass") | .name]' "$2"
}

breaks_line() { sed -n 's/^Breaks: //p' "$1" | head -n1; }

cmd_image() {
    [ $# -ge 2 ] || die "usage: run-mutants.sh image OUT PATCH..." 2
    local dest=$1; shift
    prepare
    trap restore EXIT
    local p f
    for p in "$@"; do
        p=$(realpath "$p")
        if [ "$p" = "$fix_patch" ]; then
            # Its header sections are in the baseline already.
            f=$tree/$(basename "$p" .patch).code.patch
            sections "$p" "$base_re" not > "$f"
            p=$f
        fi
        apply "$p" || exit 3
    done
    step "building with $(printf '%s ' "${@##*/}")"
    build || exit 3
    cp "$obj/arch/x86/boot/bzImage" "$dest"
    restore
    trap - EXIT
    step "image: $dest"
}

cmd_run() {
    local mutants=() m t0 t1 t2 dir res killing broken verdict feature status=0
    if [ $# -eq 0 ]; then
        for m in "$here"/*.patch; do mutants+=("$m"); done
    else
        for m in "$@"; do
            if [ -f "$m" ]; then mutants+=("$(realpath "$m")")
            elif [ -f "$here/$m.patch" ]; then mutants+=("$here/$m.patch")
            else die "no mutant $m" 2; fi
        done
    fi
    if [ ! -x "$runner" ] || [ ! -x "$cases_bin" ]; then
        die "no $runner or $cases_bin (cargo build --release -p runner -p cases --bin runner --bin wait-conformance)" 2
    fi
    mkdir -p "$out"
    exec 9> "$tree.lock"
    flock 9

    prepare
    if [ "${MUTANTS_REBASELINE:-0}" = 1 ] || [ ! -f "$out/baseline/run/results.json" ]; then
        step "baseline: booting the unmutated port"
        t0=$(date +%s)
        boot_and_run "$out/baseline/bzImage" "$out/baseline" \
            || die "baseline run produced no results.json (see $out/baseline/runner.log)"
        echo $(( $(date +%s) - t0 )) > "$out/baseline/run.seconds"
    fi
    jq '{feature: .environment.feature, kernel_release: .environment.kernel_release,
         counts: (.cases | group_by(.status) | map({(.[0].status): length}) | add)}' \
        "$out/baseline/run/results.json" > "$out/baseline/summary.json"
    step "baseline: $(jq -c . "$out/baseline/summary.json")"

    trap restore EXIT
    : > "$out/mutants.jsonl"
    for m in "${mutants[@]}"; do
        local name
        name=$(basename "$m" .patch)
        dir=$out/$name
        rm -rf "$dir"; mkdir -p "$dir"
        step "$name: $(breaks_line "$m")"
        t0=$(date +%s)
        if ! apply "$m"; then
            jq -nc --arg m "$name" --arg b "$(breaks_line "$m")" \
                '{mutant: $m, breaks: $b, verdict: "error", error: "does not apply on top of 0001"}' >> "$out/mutants.jsonl"
            status=1; continue
        fi
        if ! build > "$dir/build.log" 2>&1; then
            restore
            jq -nc --arg m "$name" --arg b "$(breaks_line "$m")" \
                '{mutant: $m, breaks: $b, verdict: "error", error: "build failed (see build.log)"}' >> "$out/mutants.jsonl"
            status=1; continue
        fi
        cp "$obj/arch/x86/boot/bzImage" "$dir/bzImage"
        restore
        t1=$(date +%s)
        if boot_and_run "$dir/bzImage" "$dir"; then
            res=$dir/run/results.json
            killing=$(rows_from_pass_to fail "$res")
            broken=$(rows_from_pass_to broken "$res")
            feature=$(jq -r .environment.feature "$res")
            if [ "$(jq length <<< "$killing")" -gt 0 ]; then verdict=killed; else verdict=survived; status=1; fi
            t2=$(date +%s)
            jq -nc --arg m "$name" --arg b "$(breaks_line "$m")" --arg v "$verdict" --arg f "$feature" \
                --argjson k "$killing" --argjson br "$broken" \
                --argjson bs $((t1 - t0)) --argjson rs $((t2 - t1)) \
                --argjson newskip "$(rows_from_pass_to skip "$res" | jq length)" \
                --argjson problems "$(jq -c .problems "$res")" \
                '{mutant: $m, breaks: $b, verdict: $v, killing_rows: $k, killing_count: ($k | length),
                  broken_rows: $br, pass_to_skip: $newskip, feature: $f, runner_problems: $problems,
                  build_seconds: $bs, run_seconds: $rs}' >> "$out/mutants.jsonl"
        else
            t2=$(date +%s)
            jq -nc --arg m "$name" --arg b "$(breaks_line "$m")" --argjson bs $((t1 - t0)) --argjson rs $((t2 - t1)) \
                '{mutant: $m, breaks: $b, verdict: "error", error: "no results.json (see runner.log)",
                  build_seconds: $bs, run_seconds: $rs}' >> "$out/mutants.jsonl"
            status=1
        fi
    done
    trap - EXIT

    jq -s --slurpfile base "$out/baseline/summary.json" --arg tree "$tree" \
        --argjson brs "$(cat "$out/baseline/run.seconds" 2>/dev/null || echo null)" \
        '{baseline: ($base[0] + {run_seconds: $brs, tree: $tree}), mutants: .,
          score: {killed: map(select(.verdict == "killed")) | length, total: length,
                  ratio: (if length == 0 then null else (map(select(.verdict == "killed")) | length) / length end)}}' \
        "$out/mutants.jsonl" > "$out/mutation.json"

    printf '%-28s %-9s %5s %6s %6s  %s\n' mutant verdict kills build_s run_s 'killing rows (first 3)'
    jq -r '.mutants[] | [.mutant, .verdict, (.killing_count // 0 | tostring), (.build_seconds // "-" | tostring),
            (.run_seconds // "-" | tostring), ((.killing_rows // [])[:3] | join(" ")) + (.error // "")] | @tsv' \
        "$out/mutation.json" | while IFS=$'\t' read -r a b c d e f; do
            printf '%-28s %-9s %5s %6s %6s  %s\n' "$a" "$b" "$c" "$d" "$e" "$f"
        done
    jq -r '"score: \(.score.killed)/\(.score.total) killed"' "$out/mutation.json"
    step "wrote $out/mutation.json"
    return "$status"
}

mkdir -p "$(dirname "$tree")"
case "${1:-run}" in
    prepare) shift; exec 9> "$tree.lock"; flock 9; prepare ;;
    image) shift; exec 9> "$tree.lock"; flock 9; cmd_image "$@" ;;
    run) [ $# -gt 0 ] && shift; cmd_run "$@" ;;
    -h|--help) sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) cmd_run "$@" ;;
esac
