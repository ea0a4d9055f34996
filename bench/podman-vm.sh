#!/bin/bash
# podman driving each runtime side by side in one run, on the same busybox
# image: `podman run --rm IMAGE true` with crun, with isola-runtime at the
# process level, and with isola-runtime at the vm level (the annotation a
# RuntimeClass handler sets). Prints a markdown section. Runs where KVM runs
# Linux guests: directly, or inside the nested test host (like here). Then
# what an idle vm container started by podman costs the host beyond its
# guest's touched memory: the shim (the VMM) and its virtiofsd (the rootfs).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-8}
BIN=$PWD/target/x86_64-unknown-linux-gnu/release
if [ -z "${ISOLA_IN_TESTHOST:-}" ] && ! { grep -Eqw 'vmx|svm' /proc/cpuinfo && [ ! -e /sys/module/kvm_pvm ]; }; then
    exec "$BIN/isola-testhost" --mem 6144 -e RUNS="$RUNS" -- "$PWD/bench/podman-vm.sh"
fi
command -v hyperfine >/dev/null || { echo "bench/podman-vm.sh: hyperfine missing (./build.sh installs it)" >&2; exit 1; }
T=$(mktemp -d /tmp/pvm.XXXXXX)
P="podman --root $T/storage --runroot $T/run --storage-driver vfs --cgroup-manager cgroupfs --events-backend file"
trap '$P rm -af -t 0 >/dev/null 2>&1 || true; rm -rf "$T"' EXIT
mkdir -p $T/rootfs/bin
cp /bin/busybox $T/rootfs/bin/
for a in sh true sleep; do ln -s busybox $T/rootfs/bin/$a; done
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

# Idle overhead: PSS of the shim and its virtiofsd children, minus the
# guest RAM the guest touched (the one large mapping of the shim).
$P --runtime $BIN/isola-runtime run -d --name idle $A --annotation io.isola.isolation=vm localhost/bench sleep 3600 >/dev/null
sleep 3
SHIM=$($P inspect --format '{{.State.Pid}}' idle)
python3 - "$SHIM" $(pgrep -P "$SHIM") <<'PY'
import sys
def pss(pid):
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0
shim = sys.argv[1]
guest = size_of_guest = cur_size = 0
for line in open(f"/proc/{shim}/smaps"):
    parts = line.split()
    if parts[0] == "Size:":
        cur_size = int(parts[1])
    elif parts[0] == "Rss:" and cur_size >= 65536 and cur_size > size_of_guest:
        size_of_guest, guest = cur_size, int(parts[1])
total = sum(pss(p) for p in sys.argv[1:])
print()
print(f"idle vm container through podman: shim + {len(sys.argv) - 2} virtiofsd PSS {total / 1024:.1f} MiB, "
      f"guest RAM touched {guest / 1024:.1f} MiB of {size_of_guest / 1024:.0f} MiB, "
      f"overhead beyond guest pages {(total - guest) / 1024:.1f} MiB")
PY
$P rm -f -t 0 idle >/dev/null
