#!/usr/bin/env bash
# Build isola's guest initramfs: an uncompressed newc cpio holding the static
# agent as /init, the empty mount points it needs, and /dev/console (so the
# kernel can open init's stdin/stdout/stderr before devtmpfs is mounted).
#
#   rootfs/build.sh              build the agent and runner (guest profile), then the cpio
#   rootfs/build.sh --no-build   use the agent binary as it is
#
#   -> <repo>/build/initramfs.cpio
#
# The archive is written by this script itself (newc is a simple format), so
# it needs neither root (for the device node) nor the kernel tree's
# gen_init_cpio, and it is reproducible: every entry has uid/gid 0 and mtime 0.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# Built with the `guest` profile (Cargo.toml: size over build time), since
# every guest loads and unpacks these bytes at boot.
agent=$repo/target/x86_64-unknown-linux-gnu/guest/isola-agent
# The in-guest runner: the same isola-runtime as the process level runs.
runtime=$repo/target/x86_64-unknown-linux-gnu/guest/isola-runtime
out=$repo/build/initramfs.cpio

say() { printf '[rootfs] %s\n' "$*" >&2; }
die() { printf '[rootfs] error: %s\n' "$*" >&2; exit 1; }

build=1
for arg in "$@"; do
    case $arg in
        --no-build) build=0 ;;
        *) die "unknown argument: $arg (usage: $0 [--no-build])" ;;
    esac
done

if ((build)); then
    say "building the agent and runner: cargo build --profile guest -p isola-agent -p isola-runtime --no-default-features"
    (cd "$repo" && cargo build --profile guest -p isola-agent -p isola-runtime --no-default-features)
fi
[[ -f $agent ]] || die "no agent binary at $agent"
[[ -f $runtime ]] || die "no runner binary at $runtime"

# /init runs before anything else exists: no dynamic loader, no libc. Only a
# static binary can run there, and static-pie keeps ASLR.
for bin in "$agent" "$runtime"; do
    kind=$(file -b "$bin")
    [[ $kind == *"static-pie linked"* ]] || die "$bin is not static-pie: $kind"
done
say "agent: $agent ($(stat -c %s "$agent") bytes, static-pie)"

# --- A newc cpio writer --------------------------------------------------------
# Each entry: "070701", 13 fields of 8 hex digits, the NUL-terminated name,
# padding to 4 bytes, the data, padding to 4 bytes. The archive ends with an
# entry named TRAILER!!!.
ino=0
pad4() { # bytes written so far -> NUL padding up to the next multiple of 4
    local n=$(( (4 - $1 % 4) % 4 ))
    ((n == 0)) || head -c "$n" /dev/zero
}
entry() { # name mode(octal) size rdevmajor rdevminor [data file]
    local name=$1 mode=$((8#$2)) size=$3 rmaj=$4 rmin=$5 data=${6:-}
    local namesize=$(( ${#name} + 1 )) nlink=1
    (( (mode & 8#170000) == 8#040000 )) && nlink=2
    ino=$((ino + 1))
    #      magic ino  mode uid gid nlink mtime size maj min rmaj rmin namesz check
    printf '070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x' \
        "$ino" "$mode" 0 0 "$nlink" 0 "$size" 0 0 "$rmaj" "$rmin" "$namesize" 0
    printf '%s\0' "$name"
    pad4 $((110 + namesize))
    if [[ -n $data ]]; then
        cat -- "$data"
        pad4 "$size"
    fi
}

mkdir -p "$(dirname "$out")"
tmp=$out.tmp.$$
# Symbols are dead weight in guest RAM (the kernel copies the archive, then
# unpacks it): ship stripped copies.
stripped=$(mktemp -d)
trap 'rm -f "$tmp"; rm -rf "$stripped"' EXIT
strip -o "$stripped/init" "$agent"
strip -o "$stripped/isola-runtime" "$runtime"
agent=$stripped/init
runtime=$stripped/isola-runtime
{
    entry dev 0040755 0 0 0
    # Character device 5:1, /dev/console: what the kernel opens for init's
    # standard descriptors. devtmpfs, mounted over /dev later, has its own.
    entry dev/console 0020600 0 5 1
    entry proc 0040755 0 0 0
    entry sys 0040755 0 0 0
    entry tmp 0041777 0 0 0
    entry run 0040755 0 0 0
    entry init 0100755 "$(stat -c %s "$agent")" 0 0 "$agent"
    entry bin 0040755 0 0 0
    entry bin/isola-runtime 0100755 "$(stat -c %s "$runtime")" 0 0 "$runtime"
    entry 'TRAILER!!!' 0 0 0 0
} >"$tmp"
mv -f "$tmp" "$out"
trap - EXIT
say "wrote $out ($(stat -c %s "$out") bytes)"

# Read it back with an independent implementation, when there is one.
if command -v cpio >/dev/null; then
    cpio -itv <"$out" 2>/dev/null | sed 's/^/[rootfs]   /' >&2
fi
