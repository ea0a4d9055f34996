#!/bin/bash
# isola-runtime (our runc-compatible OCI runtime) side by side with crun and
# runc, in one run: `run` (create + start + wait + delete) of /bin/true from
# the same busybox bundle, then `podman run --rm` with our runtime against
# podman with crun. Prints a markdown table of means and ratios to stdout.
# Needs root and the release binary (cargo build --release -p isola-runtime).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-30}
RT=$PWD/target/x86_64-unknown-linux-gnu/release/isola-runtime
for t in podman crun runc hyperfine tar; do
    command -v $t >/dev/null || { echo "bench/runtime.sh: $t missing (./build.sh installs it)" >&2; exit 1; }
done
[ -x "$RT" ] || { echo "bench/runtime.sh: build isola-runtime first" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "bench/runtime.sh: /bin/busybox missing (busybox-static)" >&2; exit 1; }

T=$(mktemp -d /tmp/irb.XXXXXX)
PODMAN="podman --root $T/podman --runroot $T/podrun --storage-driver vfs --cgroup-manager cgroupfs --events-backend file"
cleanup() {
    $PODMAN rm -af >/dev/null 2>&1 || true
    $PODMAN rmi -af >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap cleanup EXIT

# One bundle for all three runtimes: busybox-static and its applets.
mkdir -p $T/bundle/rootfs/bin $T/bundle/rootfs/proc $T/bundle/rootfs/sys $T/bundle/rootfs/dev
cp /bin/busybox $T/bundle/rootfs/bin/
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox $T/bundle/rootfs/bin/$a; done
"$RT" spec --bundle $T/bundle
python3 - "$T/bundle/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["args"] = ["/bin/true"]
c["process"]["terminal"] = False
json.dump(c, open(sys.argv[1], "w"))
PY
tar -C $T/bundle/rootfs -c . | $PODMAN import -q - localhost/busybox:latest >/dev/null

# podman's default rlimits exceed this sandbox's (RLIMIT_NOFILE 20000).
LIMITS="--ulimit nofile=20000:20000 --ulimit nproc=32768:32768 --network none"
# crun refuses hybrid cgroups unless cgroup2 is out of its sight, so every
# command runs in the same wrapper: a private mount namespace without
# /sys/fs/cgroup/unified (harmless for the others, and equal overhead).
wrap() { echo "unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec $1'"; }

hyperfine --runs "$RUNS" --warmup 3 --export-json $T/bare.json --style basic \
    -n "isola-runtime run" "$(wrap "$RT --root $T/isola run -b $T/bundle i\$\$")" \
    -n "crun run" "$(wrap "crun --root $T/crun run -b $T/bundle c\$\$")" \
    -n "runc run" "$(wrap "runc --root $T/runc run -b $T/bundle r\$\$")" >&2
hyperfine --runs "$RUNS" --warmup 3 --export-json $T/podman.json --style basic \
    -n "podman run --rm (isola-runtime)" "$(wrap "$PODMAN --runtime $RT run --rm $LIMITS busybox true")" \
    -n "podman run --rm (crun)" "$(wrap "$PODMAN --runtime crun run --rm $LIMITS busybox true")" >&2

python3 - $T/bare.json $T/podman.json <<'PY'
import json, sys
def rows(path, base):
    r = {x["command"]: x for x in json.load(open(path))["results"]}
    b = r[base]["mean"]
    return [(name, x["mean"] * 1e3, x["stddev"] * 1e3, x["mean"] / b) for name, x in r.items()]
print("| command | mean (ms) | ± σ (ms) | vs crun |")
print("|---|---:|---:|---:|")
for name, mean, sd, ratio in rows(sys.argv[1], "crun run") + rows(sys.argv[2], "podman run --rm (crun)"):
    print(f"| `{name}` | {mean:.1f} | {sd:.1f} | {ratio:.2f}× |")
PY
