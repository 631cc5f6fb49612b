#!/usr/bin/env bash
# Build recipe for source-built kernel profiles (called by `runner`, which computes the cache
# key from this file's contents, the source package version, the patches and the fragments).
#
#   build-kernel.sh --deb linux-source-X.deb --out DIR [--patch P]... [--fragment F]...
#                   [--localversion STR] [--jobs N]
#
# Produces DIR/bzImage, DIR/config, DIR/System.map, DIR/kernel.release. DIR is written
# atomically (built in DIR.partial, renamed at the end), so a killed build never looks cached.
set -euo pipefail

deb= out= localversion= jobs=2
patches=() fragments=()
while [ $# -gt 0 ]; do
    case "$1" in
        --deb) deb=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --patch) patches+=("$2"); shift 2 ;;
        --fragment) fragments+=("$2"); shift 2 ;;
        --localversion) localversion=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        *) echo "build-kernel.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$deb" ] && [ -n "$out" ] || { echo "build-kernel.sh: --deb and --out are required" >&2; exit 2; }

step() { echo "[recipe $(date +%T)] $*"; }

work="$out.partial"
rm -rf "$work"
mkdir -p "$work/src" "$work/obj"

step "unpacking $(basename "$deb")"
# The source package ships usr/src/linux-source-X.Y.tar.xz; stream it straight into src/.
tarball=$(dpkg-deb --fsys-tarfile "$deb" | tar -t | grep -E '^\./usr/src/linux-source-[^/]*\.tar\.xz$' | head -n1)
[ -n "$tarball" ] || { echo "no linux-source tarball in $deb" >&2; exit 3; }
dpkg-deb --fsys-tarfile "$deb" | tar -xO "$tarball" | tar -xJ --strip-components=1 -C "$work/src"

for p in "${patches[@]}"; do
    step "checking patch $(basename "$p") (patch -p1 --dry-run)"
    patch -p1 --dry-run --batch --forward -d "$work/src" < "$p"
    step "applying patch $(basename "$p")"
    patch -p1 --batch --forward --silent -d "$work/src" < "$p"
done

merged="$work/fragment.config"
: > "$merged"
for f in "${fragments[@]}"; do
    printf '# ---- %s\n' "$(basename "$f")" >> "$merged"
    cat "$f" >> "$merged"
done
if [ -n "$localversion" ]; then
    printf 'CONFIG_LOCALVERSION="-%s"\n# CONFIG_LOCALVERSION_AUTO is not set\n' "$localversion" >> "$merged"
fi

export KBUILD_BUILD_USER=wait-conformance KBUILD_BUILD_HOST=runner KBUILD_BUILD_TIMESTAMP="1970-01-01"
mk() { nice -n 10 make -C "$work/src" O="$work/obj" "$@"; }

step "configuring: allnoconfig + $(printf '%s ' "${fragments[@]##*/}")"
mk -s allnoconfig KCONFIG_ALLCONFIG="$merged"

# Every symbol the fragments ask for must have survived dependency resolution; otherwise the
# guest silently lacks a feature the suite relies on.
missing=0
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*)
            if ! grep -qxF "$line" "$work/obj/.config"; then
                echo "config: wanted '$line', got '$(grep -E "^(# )?${line%%=*}[= ]" "$work/obj/.config" || echo unset)'" >&2
                missing=1
            fi ;;
        "# CONFIG_"*" is not set")
            sym=${line#\# }; sym=${sym%% *}
            if grep -qE "^$sym=" "$work/obj/.config"; then
                echo "config: wanted '$line', got '$(grep -E "^$sym=" "$work/obj/.config")'" >&2
                missing=1
            fi ;;
    esac
done < "$merged"
[ "$missing" = 0 ] || { echo "config fragment not satisfied (see above)" >&2; exit 3; }

step "building bzImage with -j$jobs"
mk -j"$jobs" bzImage

cp "$work/obj/arch/x86/boot/bzImage" "$work/bzImage"
cp "$work/obj/.config" "$work/config"
cp "$work/obj/System.map" "$work/System.map"
mk -s kernelrelease > "$work/kernel.release"
rm -rf "$work/src" "$work/obj"
rm -rf "$out"
mv "$work" "$out"
step "done: $(cat "$out/kernel.release") in $out"
