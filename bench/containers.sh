#!/bin/bash
# `isola run` benchmark, side by side in one run: `run --rm busybox true`
# through isola, podman (with crun, and with runc) and the bare OCI runtimes
# on a prepared bundle; then the host memory an idle `run -d` container
# costs beyond its own workload (the supervisor). Prints a markdown section.
# Needs root, build/images/oci (images/build.sh) and the release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-20}
BIN=target/x86_64-unknown-linux-gnu/release
ISOLA=$BIN/isola
LAYOUT=build/images/oci
for t in podman crun runc skopeo umoci hyperfine; do
    command -v $t >/dev/null || { echo "bench/containers.sh: $t missing (./build.sh installs it)" >&2; exit 1; }
done
[ -x "$ISOLA" ] && [ -f $LAYOUT/index.json ] || { echo "bench/containers.sh: build isola and images/build.sh first" >&2; exit 1; }

# Short paths: container sockets live under the isola root.
T=$(mktemp -d /tmp/ib.XXXXXX)
PODMAN="podman --root $T/podman --runroot $T/podrun --storage-driver overlay --cgroup-manager cgroupfs --events-backend file"
cleanup() {
    "$ISOLA" --root $T/isola rm -f idle >/dev/null 2>&1 || true
    $PODMAN system reset -f >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap cleanup EXIT

skopeo copy -q oci:$LAYOUT:busybox:latest oci-archive:$T/busybox.tar:busybox:latest
"$ISOLA" --root $T/isola load -q -i $T/busybox.tar
skopeo copy -q oci:$LAYOUT:busybox:latest containers-storage:[overlay@$T/podman+$T/podrun]localhost/busybox:latest
umoci unpack --image $LAYOUT:busybox:latest $T/bundle >/dev/null 2>&1
( cd $T/bundle && python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["args"] = ["true"]
c["process"]["terminal"] = False
json.dump(c, open("config.json", "w"))
PY
)
# podman's default rlimits exceed this sandbox's (RLIMIT_NOFILE 20000).
LIMITS="--ulimit nofile=20000:20000 --ulimit nproc=32768:32768"
# crun refuses hybrid cgroups unless cgroup2 is out of its sight.
CRUN="unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun --root $T/crun run -b $T/bundle c\$\$'"

hyperfine -N --runs "$RUNS" --warmup 3 --export-markdown $T/run.md --style basic \
    -n "isola run --rm" "$ISOLA --root $T/isola run --rm busybox true" \
    -n "podman run --rm (crun)" "$PODMAN --runtime crun run --rm $LIMITS busybox true" \
    -n "podman run --rm (runc)" "$PODMAN --runtime runc run --rm $LIMITS busybox true" >&2
hyperfine --runs "$RUNS" --warmup 3 --export-markdown $T/bare.md --style basic \
    -n "crun run (bare bundle)" "$CRUN" \
    -n "runc run (bare bundle)" "runc --root $T/runc run -b $T/bundle r\$\$" >&2

mean() { sed -n "s/^| \`*$1\`* *| *\([0-9.]*\).*/\1/p" "$2"; }
ISOLA_MS=$(mean "isola run --rm" $T/run.md)
P_CRUN_MS=$(mean "podman run --rm (crun)" $T/run.md)
P_RUNC_MS=$(mean "podman run --rm (runc)" $T/run.md)
CRUN_MS=$(mean "crun run (bare bundle)" $T/bare.md)
RUNC_MS=$(mean "runc run (bare bundle)" $T/bare.md)

# Idle memory: everything a detached container leaves on the host besides
# its workload: the supervisor (nothing else stays).
"$ISOLA" --root $T/isola run -d --name idle busybox sleep 3600 >/dev/null
sleep 1
SUP=$(python3 -c "import json;print(json.load(open('$T/isola/containers/'+__import__('os').listdir('$T/isola/containers')[0]+'/state.json'))['supervisor_pid'])")
RSS_KB=$(awk '/^VmRSS/{print $2}' /proc/$SUP/status)
PSS_KB=$(awk '/^Pss:/{print $2}' /proc/$SUP/smaps_rollup)

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo "### \`isola run --rm busybox true\` ($RUNS runs each, same image)"
echo
cat $T/run.md
echo
echo "Bare OCI runtimes on a prepared bundle (\`run\` of \`true\`; no image, no overlay, no logs):"
echo
cat $T/bare.md
echo
echo "| ratio | value | target |"
echo "|---|---|---|"
echo "| isola / podman (crun) | $(ratio "$ISOLA_MS" "$P_CRUN_MS") | ≤ 0.5 |"
echo "| isola / podman (runc) | $(ratio "$ISOLA_MS" "$P_RUNC_MS") | |"
echo "| isola / bare crun | $(ratio "$ISOLA_MS" "$CRUN_MS") | ≤ 1.2 |"
echo "| isola / bare runc | $(ratio "$ISOLA_MS" "$RUNC_MS") | |"
echo
echo "Idle \`run -d\` container, host memory beyond its workload (the supervisor): RSS $((RSS_KB)) KiB, PSS $((PSS_KB)) KiB (target: under 2048 KiB)."
