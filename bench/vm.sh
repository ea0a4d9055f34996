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
# The EROFS disk is made once per image; the first vm run pays for it.
"$ISOLA" --root $T/isola run --rm --isolation vm busybox true

hyperfine --runs "$RUNS" --warmup 1 --export-json $T/run.json --style basic \
    -n "process" "$ISOLA --root $T/isola run --rm --isolation process busybox true" \
    -n "vm" "$ISOLA --root $T/isola run --rm --isolation vm busybox true" >&2

# Idle overhead: RSS of the supervisor (VMM, device threads, vsock
# buffers, the process level's supervisor work) minus the guest RAM the
# guest has touched (the mapping of guest memory).
"$ISOLA" --root $T/isola run -d --isolation vm --name idle busybox sleep 3600 >/dev/null
sleep 3
STATE=$(ls -d $T/isola/containers/*/ | head -1)/state.json
SUP=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['supervisor_pid'])" "$STATE")
read -r TOTAL_KB GUEST_KB GUEST_SIZE_KB ANON_KB < <(python3 - "$SUP" <<'PY'
import sys
pid = sys.argv[1]
total = guest = size_of_guest = anon = 0
cur_size = cur_rss = 0
for line in open(f"/proc/{pid}/smaps"):
    parts = line.split()
    if parts[0] == "Size:":
        cur_size = int(parts[1])
    elif parts[0] == "Rss:":
        cur_rss = int(parts[1])
        total += cur_rss
        # Guest RAM is the one mapping of hundreds of MiB.
        if cur_size >= 65536 and cur_size > size_of_guest:
            size_of_guest, guest = cur_size, cur_rss
    elif parts[0] == "Anonymous:":
        anon += int(parts[1])
print(total, guest, size_of_guest, anon)
PY
)
"$ISOLA" --root $T/isola rm -f idle >/dev/null

python3 - "$T/run.json" "$TOTAL_KB" "$GUEST_KB" "$GUEST_SIZE_KB" "$RUNS" "$ANON_KB" <<'PY'
import json, sys
runs = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
total, guest, size, n, anon = (int(x) for x in sys.argv[2:7])
p, v = runs["process"], runs["vm"]
med = lambda r: r["median"] * 1000
print(f"### `isola run --rm --isolation=LEVEL busybox true`, in the test host ({n} runs each, medians)")
print()
print("| level | median ms | min ms | max ms |")
print("|---|---|---|---|")
for name, r in (("process", p), ("vm", v)):
    print(f"| {name} | {med(r):.0f} | {r['min']*1000:.0f} | {r['max']*1000:.0f} |")
print()
print("| ratio | value | target |")
print("|---|---|---|")
print(f"| vm / process | {med(v)/med(p):.2f} | ≤ 3 |")
print()
over = total - guest
print(f"Idle vm container (`run -d ... sleep 3600`), its one host process: RSS {total/1024:.1f} MiB, "
      f"of which guest RAM the guest touched {guest/1024:.1f} MiB (of {size/1024:.0f} MiB); "
      f"**overhead beyond guest pages {over/1024:.1f} MiB** (target: under 8 MiB; Kata's RuntimeClass asks 130 MiB), "
      f"of which private (anonymous) memory {(anon - guest)/1024:.1f} MiB; the rest is the static binary's text, "
      f"shared page cache that every container's supervisor maps.")
PY
