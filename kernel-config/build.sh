#!/usr/bin/env bash
# Build isola's guest kernel: Debian's linux-source-6.12, `make tinyconfig`,
# plus kernel-config/microvm.config, as an uncompressed vmlinux (the VMM boots
# it through its PVH entry point).
#
#   kernel-config/build.sh            -> <repo>/build/vmlinux
#
# Environment:
#   ISOLA_CACHE   cache root (default /var/cache/isola). The extracted source
#                 lives in $ISOLA_CACHE/kernel/src/<version>/, each build in
#                 $ISOLA_CACHE/kernel/<key>/ where <key> is the sha256 of the
#                 fragment, the source package version and $recipe below; an
#                 existing <key>/vmlinux is reused, so a second run takes
#                 seconds.
#   JOBS          make parallelism (default: nproc).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
fragment=$here/microvm.config
pkg=linux-source-6.12
tarball=/usr/src/$pkg.tar.xz
cache_root=${ISOLA_CACHE:-/var/cache/isola}/kernel
jobs=${JOBS:-$(nproc)}
# Bump when a change to this script changes the kernel it produces (how the
# fragment is merged, make variables...), so cached builds are not reused.
recipe=1

say() { printf '[kernel] %s\n' "$*" >&2; }
die() { printf '[kernel] error: %s\n' "$*" >&2; exit 1; }

[[ -r $fragment ]] || die "missing $fragment"
[[ -r $tarball ]] || die "missing $tarball (apt-get install $pkg)"
for tool in make gcc flex bison bc sha256sum dpkg-query; do
    command -v "$tool" >/dev/null || die "missing build tool: $tool"
done

version=$(dpkg-query -W -f='${Version}' "$pkg") || die "$pkg is not installed"
# The key covers what decides the kernel's content: our fragment, the exact
# Debian source package it is applied to, and the recipe.
key=$({ cat "$fragment"; printf '%s %s recipe %s\n' "$pkg" "$version" "$recipe"; } | sha256sum | cut -d' ' -f1)
out=$cache_root/$key
src=$cache_root/src/$version/$pkg
obj=$out/obj

mkdir -p "$cache_root" "$repo/build"
# One build at a time per cache: the source extraction and the object
# directory are shared state.
exec 9>"$cache_root/.lock"
if ! flock -n 9; then
    say "waiting for another kernel build to finish ($cache_root/.lock)"
    flock 9
fi

install_result() {
    # Copy then rename, so a reader never sees a half-written vmlinux.
    cp "$out/vmlinux" "$repo/build/vmlinux.tmp.$$"
    mv -f "$repo/build/vmlinux.tmp.$$" "$repo/build/vmlinux"
    say "installed $repo/build/vmlinux ($(stat -c %s "$repo/build/vmlinux") bytes)"
}

if [[ -f $out/vmlinux ]]; then
    say "cached: $out/vmlinux ($pkg $version, key ${key:0:16})"
    install_result
    exit 0
fi

# --- Source: extracted once per package version ------------------------------
if [[ ! -f $src/.isola-extracted ]]; then
    say "extracting $tarball into $(dirname "$src")"
    rm -rf "$src" "$src.partial"
    mkdir -p "$src.partial"
    tar -xJf "$tarball" -C "$src.partial" --strip-components=1
    touch "$src.partial/.isola-extracted"
    mv "$src.partial" "$src"
fi

# --- Configure: tinyconfig, then the fragment --------------------------------
# Out-of-tree (O=) so the shared source tree stays pristine. ARCH=x86_64 (not
# the host's default "x86") makes 64BIT the default rather than a prompt.
mkdir -p "$obj"
kmake() { make -C "$src" O="$obj" ARCH=x86_64 "$@"; }

say "configuring in $obj: tinyconfig + $(basename "$fragment")"
kmake -s tinyconfig
# merge_config.sh -n re-runs allnoconfig with tinyconfig's .config plus the
# fragment as KCONFIG_ALLCONFIG: whatever the fragment does not ask for stays
# off, instead of taking Kconfig defaults. It runs make in its working
# directory, which for an O= build is the object directory (its generated
# Makefile forwards to the source tree).
(
    cd "$obj"
    ARCH=x86_64 "$src/scripts/kconfig/merge_config.sh" -n .config "$fragment" >merge.log 2>&1
) || { cat "$obj/merge.log" >&2; die "merge_config.sh failed"; }

# --- Check: every line of the fragment must hold ------------------------------
# Kconfig drops an option whose dependencies are not met without a word, so
# the fragment is checked line by line against the final .config.
say "checking the fragment against $obj/.config"
dropped=()
while IFS= read -r line; do
    if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
        grep -qxF -- "$line" "$obj/.config" || {
            got=$(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" "$obj/.config" || echo "absent (dependencies unmet)")
            dropped+=("$line  -> $got")
        }
    elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
        # Absent counts as off: the option is not even visible.
        if got=$(grep -E "^${BASH_REMATCH[1]}=" "$obj/.config"); then
            dropped+=("$line  -> $got")
        fi
    fi
done <"$fragment"
if ((${#dropped[@]})); then
    say "the final .config does not hold ${#dropped[@]} line(s) of $(basename "$fragment"):"
    printf '    %s\n' "${dropped[@]}" >&2
    die "fix the fragment (a missing dependency, usually) and run again"
fi
say "all $(grep -cE '^(CONFIG_|# CONFIG_.* is not set$)' "$fragment") fragment lines hold"

# --- Build -------------------------------------------------------------------
say "building vmlinux with $jobs jobs (log: $obj/build.log)"
start=$(date +%s)
if ! kmake -j"$jobs" vmlinux >"$obj/build.log" 2>&1; then
    tail -n 40 "$obj/build.log" >&2
    die "kernel build failed (full log: $obj/build.log)"
fi
say "built in $(($(date +%s) - start)) s"

cp "$obj/.config" "$out/config"
cp "$obj/vmlinux" "$out/vmlinux.tmp"
mv -f "$out/vmlinux.tmp" "$out/vmlinux"
# The objects are only needed to rebuild this very key; drop them to keep the
# cache small (a tiny kernel's object tree is a few hundred MB).
rm -rf "$obj"
install_result
