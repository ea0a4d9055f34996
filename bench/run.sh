#!/usr/bin/env bash
# Boot benchmarks, side by side in one run, written to docs/benchmarks.md:
#  (a) a tiny PVH guest on this host's /dev/kvm: isola-vmm vs QEMU microvm;
#  (b) our kernel + agent where KVM runs Linux guests (directly, or in the
#      test host on hosts without VT-x/AMD-V): isola-vmm --ping (agent ready)
#      vs QEMU microvm reaching /init, and VMM memory beyond guest RAM.
# Needs ./build.sh --no-demo first.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/target/x86_64-unknown-linux-gnu/release
scratch=$bin/bench-scratch
mkdir -p "$scratch"
runs=${RUNS:-10}

tests/tiny-guest/build.sh "$scratch/tiny.elf"
echo "bench: (a) tiny guest on this host's KVM, $runs runs each" >&2
bench/boot.py tiny --vmm "$bin/isola-vmm" --guest "$scratch/tiny.elf" --runs "$runs" > "$scratch/tiny.json"

linux=(bench/boot.py linux --vmm "$bin/isola-vmm" --kernel "$PWD/build/vmlinux"
       --initramfs "$PWD/build/initramfs.cpio" --scratch "$scratch/linux" --runs "$runs")
if grep -Eqw 'vmx|svm' /proc/cpuinfo && [ ! -e /sys/module/kvm_pvm ]; then
    where="this host"
    "${linux[@]}" > "$scratch/linux.json"
else
    where="the nested test host (QEMU TCG with emulated SVM)"
    echo "bench: (b) Linux guest in the test host, $runs runs each" >&2
    "$bin/isola-testhost" -- "${linux[@]}" > "$scratch/linux.json"
fi
bench/report.py "$scratch/tiny.json" "$scratch/linux.json" "$where" > docs/benchmarks.md
cat docs/benchmarks.md
