#!/bin/sh
# Proves that KVM in the test host runs a Linux guest's user space: boots the test host's
# own Debian kernel under `qemu-system-x86_64 -enable-kvm -M microvm` with a tiny busybox
# initramfs whose /init prints a marker and reboots, and looks for the marker.
# reboot=t (triple fault): microvm has no keyboard controller, so reboot=k hangs for ~50 s
# before the kernel falls back to another method; with -no-reboot the triple fault ends QEMU.
#
# Run it inside the test host, from the work tree:
#   isola-testhost -- tests/testhost/inner-kvm-smoke.sh
# Work files go to target/testhost-smoke/.
set -eu

[ "${ISOLA_IN_TESTHOST:-}" = 1 ] || {
	echo "inner-kvm-smoke: run me inside isola-testhost" >&2
	exit 2
}
# The bzImage by default; ISOLA_SMOKE_KERNEL="$ISOLA_TESTHOST_VMLINUX" boots the ELF via PVH.
kernel="${ISOLA_SMOKE_KERNEL:-${ISOLA_TESTHOST_KERNEL:?ISOLA_TESTHOST_KERNEL is not set}}"
marker="ISOLA-INNER-GUEST-USERSPACE-OK"
dir="$PWD/target/testhost-smoke"
rm -rf "$dir"
mkdir -p "$dir/root/bin" "$dir/root/dev"
cp /bin/busybox "$dir/root/bin/busybox"
cat >"$dir/root/init" <<EOF
#!/bin/busybox sh
/bin/busybox echo "$marker pid=\$\$ kernel=\$(/bin/busybox uname -r)"
/bin/busybox reboot -f
EOF
chmod 755 "$dir/root/init"
(cd "$dir/root" && find . | cpio -o -H newc --quiet) >"$dir/initramfs.cpio"

start=$(date +%s.%N)
timeout 120 qemu-system-x86_64 -enable-kvm -M microvm -cpu host -m 256 \
	-nodefaults -no-user-config -display none -no-reboot -serial stdio \
	-kernel "$kernel" -initrd "$dir/initramfs.cpio" \
	-append 'console=ttyS0 rdinit=/init panic=-1 reboot=t quiet mitigations=off cryptomgr.notests=1' \
	>"$dir/console.log" 2>&1 ||
	echo "inner-kvm-smoke: qemu exited with $?" >&2
end=$(date +%s.%N)

if grep -q "$marker" "$dir/console.log"; then
	grep "$marker" "$dir/console.log" | tr -d '\r'
	echo "inner-kvm-smoke: OK, inner guest ran user space ($(echo "$end - $start" | bc) s)"
else
	echo "inner-kvm-smoke: FAILED, no marker; console:" >&2
	tail -n 40 "$dir/console.log" >&2
	exit 1
fi
