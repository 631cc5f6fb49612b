#!/usr/bin/env bash
# Checks a run's reports with other projects' own readers:
#   results.ktap  with the kernel's KTAP parser (tools/testing/kunit/kunit_parser.py from the same
#                 linux-source package the source profiles build), counts equal to results.json;
#   KCIDB         `runner export kcidb` of the run, validated with kcidb-io (PyPI).
# usage: .ci/reports-check.sh REPORT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: reports-check.sh REPORT_DIR}
cache=${WAITCONF_CACHE:-/var/cache/wait-conformance}

deb=$(find "$cache/downloads" -maxdepth 1 -name 'linux-source-*.deb' 2>/dev/null | sort | tail -n1 || true)
kunit=
if [ -z "$deb" ]; then
    # A kernel cache restored without the downloaded source package (a CI cache keyed on the
    # kernels only): the parser has nothing to come from. Said, not hidden.
    echo "reports-check: SKIP the KTAP parse: no linux-source .deb in $cache/downloads" \
         "(runner kernel --kernel wait-pid-6.12 with an empty kernel cache fetches it)" >&2
else
    kunit=$cache/kunit/$(basename "$deb" .deb)
fi
if [ -n "$kunit" ] && [ ! -f "$kunit/kunit_parser.py" ]; then
    echo "reports-check: extracting tools/testing/kunit from $(basename "$deb")"
    mkdir -p "$kunit.partial"
    vm-images/recipes/unpack-linux-source.sh "$deb" "$kunit.partial" \
        --strip-components=4 --wildcards '*/tools/testing/kunit/*.py'
    rm -rf "$kunit"
    mv "$kunit.partial" "$kunit"
fi
if [ -n "$kunit" ]; then
    python3 .ci/ktap-check.py "$dir/results.ktap" "$dir/results.json" "$kunit"
fi

venv=$cache/venv-kcidb
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import kcidb_io' 2>/dev/null; then
    echo "reports-check: creating $venv (kcidb-io)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'kcidb-io==141'
fi
./target/release/runner export kcidb "$dir" --out "$dir/kcidb.json"
"$venv/bin/python" .ci/kcidb-validate.py "$dir/kcidb.json"
