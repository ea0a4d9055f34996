#!/usr/bin/env bash
# Every benchmark, each side by side with its peers in one run, written to
# docs/benchmarks.md:
#  (a) a tiny PVH guest on this host's /dev/kvm: isola-vmm vs QEMU microvm;
#  (b) our kernel + agent where KVM runs Linux guests (directly, or in the
#      test host on hosts without VT-x/AMD-V): isola-vmm --ping (agent ready)
#      vs QEMU microvm reaching /init, and VMM memory beyond guest RAM;
#  then the image store (bench/image.sh), the OCI runtime (bench/runtime.sh)
#  `isola run` (bench/containers.sh) and the vm level beside the process
#  level (bench/vm.sh).
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
{
    bench/report.py "$scratch/tiny.json" "$scratch/linux.json" "$where"
    echo
    cat bench/image.md
    echo
    bench/image.sh
    echo
    echo "## Process level: the OCI runtime (isola-runtime) beside crun and runc"
    echo
    bench/runtime.sh
    echo
    echo "## isola run: the whole lifecycle beside podman and the bare runtimes"
    echo
    bench/containers.sh
    echo
    echo "## The vm level beside the process level"
    echo
    bench/vm.sh
    echo
    bench/volumes.sh
} > "$scratch/benchmarks.md"
mv "$scratch/benchmarks.md" docs/benchmarks.md
cat docs/benchmarks.md
