#!/usr/bin/env bash
# Builds everything on a fresh Debian 12 host (packages, guest kernel,
# initramfs, binaries, local OCI images, test-host assets), then runs the
# main job: `isola run` of the local busybox image, and a microVM booted by
# isola-vmm whose guest agent answers over vsock (the vm level's foundation;
# `isola run --isolation=vm` joins them next).
#
#   ./build.sh            build, then run the demo
#   ./build.sh --no-demo  build only (used by ./test.sh)
set -euo pipefail
cd "$(dirname "$0")"

demo=true
[ "${1:-}" = "--no-demo" ] && demo=false

step() { printf '\n==> %s\n' "$*"; }

step "packages"
scripts/install-deps.sh

step "binaries (release, static)"
cargo build --release --workspace
bin=target/x86_64-unknown-linux-gnu/release
for b in isola isola-runtime isola-vmm isola-agent isola-testhost; do
    file "$bin/$b" | grep -q 'static-pie linked' || {
        echo "build.sh: $bin/$b is not a static-pie binary" >&2; exit 1; }
done

step "guest kernel (cached by config fragment and source version)"
kernel-config/build.sh

step "virtiofsd (serves vm containers' volumes over virtio-fs)"
scripts/build-virtiofsd.sh

step "initramfs (the agent as /init)"
rootfs/build.sh

step "local OCI images (busybox, debootstrapped Debian) for tests and benchmarks"
images/build.sh

step "test host assets (Debian's kernel and KVM modules for the outer guest)"
tests/testhost/prepare.sh

$demo || exit 0

export PATH="$PWD/$bin:$PATH"
step "main job: isola run of the local busybox image, at the vm level"
demo_root=$PWD/build/demo-root
skopeo copy -q oci:build/images/oci:busybox:latest oci-archive:build/busybox.tar:busybox:latest
isola --root "$demo_root" load -q -i build/busybox.tar
demo_cmd=("$PWD/scripts/demo-vm.sh" "$PWD/build/busybox.tar")
if isola_hw=$(grep -Ewo 'vmx|svm' /proc/cpuinfo | head -1) && [ ! -e /sys/module/kvm_pvm ]; then
    echo "(host KVM uses ${isola_hw}: the container's VM runs directly)"
    "${demo_cmd[@]}"
else
    echo "(this host's /dev/kvm has no VT-x/AMD-V behind it, so the container's VM runs one level down, in the QEMU-emulated test host)"
    isola-testhost -- "${demo_cmd[@]}"
fi
step "the same image at the process level"
isola --root "$demo_root" run --rm busybox sh -c 'echo "hello from $(hostname), pid $$ in its own namespaces, on the host kernel $(uname -r)"'
