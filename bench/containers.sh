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
    for c in $("$ISOLA" --root $T/isola ps -aq 2>/dev/null); do "$ISOLA" --root $T/isola rm -f $c >/dev/null 2>&1 || true; done
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
# crun refuses hybrid cgroups unless cgroup2 is out of its sight, so every
# command runs in the same wrapper: a private mount namespace without
# /sys/fs/cgroup/unified (harmless for the others, and equal overhead).
wrap() { echo "unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec $1'"; }

hyperfine --runs "$RUNS" --warmup 3 --export-markdown $T/run.md --style basic \
    -n "isola run --rm" "$(wrap "$ISOLA --root $T/isola run --rm busybox true")" \
    -n "podman run --rm (crun)" "$(wrap "$PODMAN --runtime crun run --rm $LIMITS busybox true")" \
    -n "podman run --rm (runc)" "$(wrap "$PODMAN --runtime runc run --rm $LIMITS busybox true")" >&2
hyperfine --runs "$RUNS" --warmup 3 --export-markdown $T/bare.md --style basic \
    -n "crun run (bare bundle)" "$(wrap "crun --root $T/crun run -b $T/bundle c\$\$")" \
    -n "runc run (bare bundle)" "$(wrap "runc --root $T/runc run -b $T/bundle r\$\$")" >&2

mean() { sed -n "s/^| \`*$1\`* *| *\([0-9.]*\).*/\1/p" "$2"; }
ISOLA_MS=$(mean "isola run --rm" $T/run.md)
P_CRUN_MS=$(mean "podman run --rm (crun)" $T/run.md)
P_RUNC_MS=$(mean "podman run --rm (runc)" $T/run.md)
CRUN_MS=$(mean "crun run (bare bundle)" $T/bare.md)
RUNC_MS=$(mean "runc run (bare bundle)" $T/bare.md)

# Idle memory: everything detached containers leave on the host besides
# their workloads: one supervisor each (nothing else stays). Ten of them, so
# the binary's shared, clean text pages are split as the kernel splits them
# (PSS); the private (anonymous) part is each one's own.
for i in $(seq 10); do "$ISOLA" --root $T/isola run -d --name idle$i busybox sleep 3600 >/dev/null; done
sleep 1
SUPS=$(for d in $T/isola/containers/*/; do python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['supervisor_pid'])" $d/state.json; done)
RSS_KB=0; PSS_KB=0; ANON_KB=0
for p in $SUPS; do
    RSS_KB=$((RSS_KB + $(awk '/^VmRSS/{print $2}' /proc/$p/status)))
    ANON_KB=$((ANON_KB + $(awk '/^RssAnon/{print $2}' /proc/$p/status)))
    PSS_KB=$((PSS_KB + $(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup)))
done
for i in $(seq 10); do "$ISOLA" --root $T/isola rm -f idle$i >/dev/null; done

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
echo "Idle \`run -d\` containers (10 at once), host memory each beyond its workload (its supervisor): PSS $((PSS_KB / 10)) KiB, of which private $((ANON_KB / 10)) KiB; RSS $((RSS_KB / 10)) KiB counting the shared text in full (target: under 2048 KiB)."
