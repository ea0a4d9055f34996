#!/bin/bash
# The vm isolation level beside the process level, in one run on the same
# image: `isola run --rm --isolation=LEVEL busybox true`, alternating; then
# what an idle vm container costs the host beyond its guest's own touched
# memory (the supervisor, which is also the VMM). Prints a markdown section.
# Runs where KVM runs Linux guests: directly, or re-run inside the nested
# test host on hosts without VT-x/AMD-V (like this one).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}
BIN=$PWD/target/x86_64-unknown-linux-gnu/release
ISOLA=$BIN/isola
if [ -z "${ISOLA_IN_TESTHOST:-}" ] && ! { grep -Eqw 'vmx|svm' /proc/cpuinfo && [ ! -e /sys/module/kvm_pvm ]; }; then
    exec "$BIN/isola-testhost" --mem 6144 -e RUNS="$RUNS" -- "$PWD/bench/vm.sh"
fi
command -v hyperfine >/dev/null || { echo "bench/vm.sh: hyperfine missing (./build.sh installs it)" >&2; exit 1; }
T=$(mktemp -d /tmp/ivm.XXXXXX)
cleanup() {
    for c in $("$ISOLA" --root $T/isola ps -aq 2>/dev/null); do "$ISOLA" --root $T/isola rm -f $c >/dev/null 2>&1 || true; done
    rm -rf "$T"
}
trap cleanup EXIT
skopeo copy -q oci:build/images/oci:busybox:latest oci-archive:$T/busybox.tar:busybox:latest
"$ISOLA" --root $T/isola load -q -i $T/busybox.tar
# The EROFS disk is made once per image, and the VM template (a snapshot
# of the booted guest, see runtime/src/vm/template.rs) once per image and
# VM size: the first vm run pays for both.
"$ISOLA" --root $T/isola run --rm --isolation vm busybox true
ls "$T/isola/vm-templates"/*/vm.json >/dev/null

hyperfine --runs "$RUNS" --warmup 1 --export-json $T/run.json --style basic \
    -n "process" "$ISOLA --root $T/isola run --rm --isolation process busybox true" \
    -n "vm" "$ISOLA --root $T/isola run --rm --isolation vm busybox true" \
    -n "vm-boot" "env ISOLA_VM_TEMPLATES=off $ISOLA --root $T/isola run --rm --isolation vm busybox true" >&2

# Idle overhead: what each idle vm container's one host process (the
# supervisor: VMM, device threads, vsock buffers) holds beyond the guest
# RAM its guest touched (the one mapping of hundreds of MiB). Three run at
# once, as on a host with many: RSS counts the static binary's text in
# full for each, PSS shares it out, and private memory plus page tables is
# what one more container adds.
for i in 1 2 3; do
    "$ISOLA" --root $T/isola run -d --isolation vm --name idle$i busybox sleep 3600 >/dev/null
done
sleep 3
IDLE=""
for i in 1 2 3; do
    STATE=$(grep -l "\"name\": *\"idle$i\"" $T/isola/containers/*/state.json)
    SUP=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['supervisor_pid'])" "$STATE")
    IDLE="$IDLE $(python3 - "$SUP" <<'PY'
import sys
pid = sys.argv[1]
rss = pss = guest = size_of_guest = private = 0
cur_size = cur_rss = 0
for line in open(f"/proc/{pid}/smaps"):
    parts = line.split()
    if parts[0] == "Size:":
        cur_size = int(parts[1])
    elif parts[0] == "Rss:":
        cur_rss = int(parts[1])
        rss += cur_rss
        if cur_size >= 65536 and cur_size > size_of_guest:
            size_of_guest, guest = cur_size, cur_rss
    elif parts[0] == "Pss:":
        pss += int(parts[1])
    elif parts[0] in ("Private_Clean:", "Private_Dirty:"):
        private += int(parts[1])
pte = 0
for line in open(f"/proc/{pid}/status"):
    if line.startswith("VmPTE:"):
        pte = int(line.split()[1])
print(f"{rss},{pss},{guest},{size_of_guest},{private},{pte}")
PY
)"
done
for i in 1 2 3; do "$ISOLA" --root $T/isola rm -f idle$i >/dev/null; done

python3 - "$T/run.json" "$RUNS" $IDLE <<'PY'
import json, sys
runs = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
n = int(sys.argv[2])
idle = [[int(x) for x in a.split(",")] for a in sys.argv[3:]]
p, v, b = runs["process"], runs["vm"], runs["vm-boot"]
med = lambda r: r["median"] * 1000
print(f"### `isola run --rm --isolation=LEVEL busybox true`, in the test host ({n} runs each, medians)")
print()
print("| level | median ms | min ms | max ms |")
print("|---|---|---|---|")
for name, r in (("process", p), ("vm (from the template)", v), ("vm, booted (`ISOLA_VM_TEMPLATES=off`)", b)):
    print(f"| {name} | {med(r):.0f} | {r['min']*1000:.0f} | {r['max']*1000:.0f} |")
print()
print("| ratio | value | target |")
print("|---|---|---|")
print(f"| vm / process | {med(v)/med(p):.2f} | ≤ 3 |")
print(f"| vm booted / process | {med(b)/med(p):.2f} | |")
print()
mib = lambda kb: kb / 1024
avg = lambda f: sum(f(c) for c in idle) / len(idle)
rss = avg(lambda c: c[0] - c[2])
pss = avg(lambda c: c[1] - c[2])
own = avg(lambda c: c[4] - c[2] + c[5])
guest, size = avg(lambda c: c[2]), idle[0][3]
print(f"Idle vm containers (`run -d ... sleep 3600`, {len(idle)} at once), each one host process; "
      f"guest RAM the guest touched {mib(guest):.1f} MiB (of {mib(size):.0f} MiB). "
      f"Beyond guest pages, per container (mean): RSS {mib(rss):.1f} MiB (the static binary's "
      f"text counted in full for each), PSS {mib(pss):.1f} MiB (shared text divided among them), "
      f"**private memory and page tables {mib(own):.1f} MiB: what one more container adds** "
      f"(target: under 8 MiB; Kata's RuntimeClass asks 130 MiB).")
PY
