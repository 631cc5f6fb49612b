#!/usr/bin/env bash
# Unpacks the kernel tarball a Debian linux-source-X.Y .deb ships
# (usr/src/linux-source-X.Y.tar.xz) into DIR, streamed: the tarball is never written to disk.
#
#   unpack-linux-source.sh DEB DIR [TAR-ARGS...]
#
# TAR-ARGS go to the tar that unpacks the tree (default --strip-components=1: the whole tree,
# DIR/Makefile at the top); a caller that wants a part passes its own strip count and members.
# Used by `runner mutate`, vm-images/mutants/run-mutants.sh and .ci/reports-check.sh.
# (vm-images/recipes/build-kernel.sh keeps its own copy of these lines: its contents are the
# cache key of every source-built kernel, so it changes only with the recipe.)
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: unpack-linux-source.sh DEB DIR [TAR-ARGS...]" >&2; exit 2; }
deb=$1 dir=$2
shift 2
[ $# -gt 0 ] || set -- --strip-components=1
tarball=$(dpkg-deb --fsys-tarfile "$deb" | tar -t | grep -E '^\./usr/src/linux-source-[^/]*\.tar\.xz$' | head -n1)
[ -n "$tarball" ] || { echo "no linux-source tarball in $deb" >&2; exit 3; }
dpkg-deb --fsys-tarfile "$deb" | tar -xO "$tarball" | tar -xJ -C "$dir" "$@"
