#!/usr/bin/env bash
# Kernel-matrix CI steps for wait-conformance, meant to be called from .ci/run:
#
#   bash vm-images/ci-steps.sh            # host tests of the runner + wait-pid-6.12 in a VM
#
# Installs what it needs (Debian packages; virtme-ng is pip-installed by the runner into its
# own venv under the cache), runs the runner's host unit tests, builds (or reuses from
# /var/cache/wait-conformance/kernels) the patched 6.12 kernel, boots it under virtme-ng, runs
# every case inside and compares the result matrix with the reviewed snapshot
# runner/snapshots/wait-pid-6.12.snap (--gate snapshot). Reports go to $WAITCONF_OUT
# (default out/ci). Exit: the runner's exit code (0 ok, 1 regression, 2 config, 3 infra).
#
# With WAITCONF_CI_SHARD=I/N (the workflow's vm matrix) it runs shard I of N only
# (`runner run --shard I/N`, gated on its part of the snapshot) into $WAITCONF_OUT/<profile>/shard-I,
# and leaves the runner's unit tests to the host job; `runner merge` puts the shards together.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root"
out=${WAITCONF_OUT:-$root/out/ci}
profile=${WAITCONF_CI_PROFILE:-wait-pid-6.12}

step() { echo "== ci-steps: $*"; }

# Debian packages: QEMU, udev (virtme-ng-init needs udevd for /dev/virtio-ports), kmod
# (depmod for module-based kernels), busybox-static (virtme-ng's initramfs for module-based
# kernels: the debian-* profiles, --kernel-image --modules), python3-venv (the virtme-ng venv),
# the kernel build toolchain, the Debian archive keyring for the runner's private apt sources,
# and lcov (genhtml, for `runner coverage`'s HTML report).
pkgs=(qemu-system-x86 udev kmod busybox-static python3-venv python3-pip debian-archive-keyring
      build-essential bc bison flex libelf-dev libssl-dev cpio xz-utils zstd patch lcov)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    step "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

shard=${WAITCONF_CI_SHARD:-}
if [ -z "$shard" ]; then
    step "runner unit tests (host, no VM)"
    cargo test --release -p runner
fi

step "building the runner and the case binary"
cargo build --release -p runner -p cases --bin runner --bin wait-conformance

dir=$out/$profile
shard_args=()
if [ -n "$shard" ]; then
    dir=$out/$profile/shard-${shard%%/*}
    shard_args=(--shard "$shard")
fi
step "kernel matrix: $profile${shard:+ shard $shard} in a VM, snapshot gate"
set +e
./target/release/runner run --kernel "$profile" --out "$dir" --gate snapshot --no-build --quiet "${shard_args[@]}"
rc=$?
set -e
step "reports in $dir (results.json results.tap results.ktap junit.xml console.log); runner exit $rc"
if [ -f "$dir/results.json" ]; then
    step "reports read by the kernel's KTAP parser and by kcidb-io"
    bash "$root/.ci/reports-check.sh" "$dir" || { [ "$rc" -ne 0 ] || rc=1; }
fi
exit $rc
