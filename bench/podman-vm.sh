#!/bin/bash
# podman driving each runtime side by side in one run, on the same busybox
# image: `podman run --rm IMAGE true` with crun, with isola-runtime at the
# process level, and with isola-runtime at the vm level (the annotation a
# RuntimeClass handler sets). Prints a markdown section. Runs where KVM runs
# Linux guests: directly, or inside the nested test host (like here).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-8}
BIN=$PWD/target/x86_64-unknown-linux-gnu/release
if [ -z "${ISOLA_IN_TESTHOST:-}" ] && ! { grep -Eqw 'vmx|svm' /proc/cpuinfo && [ ! -e /sys/module/kvm_pvm ]; }; then
    exec "$BIN/isola-testhost" --mem 6144 -e RUNS="$RUNS" -- "$PWD/bench/podman-vm.sh"
fi
command -v hyperfine >/dev/null || { echo "bench/podman-vm.sh: hyperfine missing (./build.sh installs it)" >&2; exit 1; }
T=$(mktemp -d /tmp/pvm.XXXXXX)
trap 'rm -rf "$T"' EXIT
mkdir -p $T/rootfs/bin
cp /bin/busybox $T/rootfs/bin/
for a in sh true; do ln -s busybox $T/rootfs/bin/$a; done
P="podman --root $T/storage --runroot $T/run --storage-driver vfs --cgroup-manager cgroupfs --events-backend file"
tar -C $T/rootfs -c . | $P import - localhost/bench:latest >/dev/null
A="--network none --ulimit nofile=20000:20000 --ulimit nproc=32768:32768"
# One warm-up each: podman's first run prepares its own state.
$P --runtime crun run --rm $A localhost/bench true
$P --runtime $BIN/isola-runtime run --rm $A --annotation io.isola.isolation=vm localhost/bench true

hyperfine --runs "$RUNS" --warmup 1 --export-json $T/run.json --style basic \
    -n "crun" "$P --runtime crun run --rm $A localhost/bench true" \
    -n "isola-runtime process" "$P --runtime $BIN/isola-runtime run --rm $A localhost/bench true" \
    -n "isola-runtime vm" "$P --runtime $BIN/isola-runtime run --rm $A --annotation io.isola.isolation=vm localhost/bench true" >&2

python3 - "$T/run.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = {k: sorted(v["times"])[len(v["times"]) // 2] for k, v in r.items()}
crun = med["crun"]
print("| `podman run --rm ... true` with | median (s) | ratio to crun |")
print("|---|---|---|")
for k in ["crun", "isola-runtime process", "isola-runtime vm"]:
    print(f"| {k} | {med[k]:.3f} | {med[k] / crun:.2f}x |")
print()
print(f"vm / process through podman: {med['isola-runtime vm'] / med['isola-runtime process']:.2f}x")
PY
