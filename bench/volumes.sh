#!/bin/bash
# Volume throughput at the vm level (virtio-fs through virtiofsd) beside the
# process level (a bind mount), in one run on the same host directory: each
# operation runs by `isola exec` in a running container of each level,
# alternating, and `exec true` is subtracted so only the I/O is compared.
# Prints a markdown section. Like bench/vm.sh, it re-runs itself inside the
# nested test host where KVM cannot run Linux guests.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
BIN=$PWD/target/x86_64-unknown-linux-gnu/release
ISOLA=$BIN/isola
if [ -z "${ISOLA_IN_TESTHOST:-}" ] && ! { grep -Eqw 'vmx|svm' /proc/cpuinfo && [ ! -e /sys/module/kvm_pvm ]; }; then
    exec "$BIN/isola-testhost" --mem 6144 -e RUNS="$RUNS" -- "$PWD/bench/volumes.sh"
fi
command -v hyperfine >/dev/null || { echo "bench/volumes.sh: hyperfine missing (./build.sh installs it)" >&2; exit 1; }
T=$(mktemp -d /tmp/ivol.XXXXXX)
I() { "$ISOLA" --root $T/isola "$@"; }
cleanup() {
    for c in $(I ps -aq 2>/dev/null); do I rm -f $c >/dev/null 2>&1 || true; done
    rm -rf "$T"
}
trap cleanup EXIT
skopeo copy -q oci:build/images/oci:busybox:latest oci-archive:$T/busybox.tar:busybox:latest
I load -q -i $T/busybox.tar
for level in process vm; do
    mkdir -p $T/vol-$level/small
    I run -d --isolation $level --privileged --memory 1g --name $level -v $T/vol-$level:/data busybox sleep 3600 >/dev/null
done

# 64 MiB written and fsynced; read back cold (page cache dropped: the
# containers are privileged, and this runs inside the test host); 200 small files created, read and
# removed (each a few FUSE round trips at the vm level).
WRITE='dd if=/dev/zero of=/data/big bs=1M count=64 conv=fsync 2>/dev/null'
READ='echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; dd if=/data/big of=/dev/null bs=1M 2>/dev/null'
SMALL='cd /data/small && i=0; while [ $i -lt 200 ]; do echo $i > f$i; i=$((i+1)); done; cat f* > /dev/null; rm f*'
args=()
for op in true write read small; do
    case $op in
        true) cmd=true ;; write) cmd=$WRITE ;; read) cmd=$READ ;; small) cmd=$SMALL ;;
    esac
    for level in process vm; do
        args+=(-n "$op $level" "$ISOLA --root $T/isola exec $level sh -c '$cmd'")
    done
done
hyperfine --runs "$RUNS" --warmup 1 --export-json $T/vol.json --style basic "${args[@]}" >&2

python3 - "$T/vol.json" "$RUNS" <<'PY'
import json, sys
r = {x["command"]: x["median"] * 1000 for x in json.load(open(sys.argv[1]))["results"]}
n = sys.argv[2]
print(f"### Volume I/O: virtio-fs (vm) beside a bind mount (process), in the test host ({n} runs each, medians, `exec true` subtracted)")
print()
print("| operation | process ms | vm ms | vm / process | target |")
print("|---|---|---|---|---|")
names = {"write": "dd 64 MiB write + fsync", "read": "dd 64 MiB read (cold)", "small": "200 small files: create, read, remove"}
for op, label in names.items():
    p = r[f"{op} process"] - r["true process"]
    v = r[f"{op} vm"] - r["true vm"]
    print(f"| {label} | {p:.0f} | {v:.0f} | {v/p:.2f} | ≤ 2 |")
print()
print(f"`exec true` itself: process {r['true process']:.0f} ms, vm {r['true vm']:.0f} ms.")
PY
