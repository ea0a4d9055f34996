#!/bin/busybox sh
# PID 1 of the isola test host (the outer guest), run from the initramfs that
# isola-testhost builds. It loads the modules in /modules/order (and, in parallel,
# /modules/order.kvm), mounts the host's / (9p, read-only) under a tmpfs overlay as the new
# root with the read-write shares over it, checks /dev/kvm, and runs the command described
# by the run spec that QEMU hands over through fw_cfg, with that root as its own "/".
#
# Channels to the host (virtio-serial ports, found by name):
#   org.isola.testhost.ctl     heartbeat lines ("hb") and the markers
#                              ISOLA-TESTHOST-READY, ISOLA-TESTHOST-EXIT <n>,
#                              ISOLA-TESTHOST-ERROR <message>
#   org.isola.testhost.stdout  the command's stdout
#   org.isola.testhost.stderr  the command's stderr
# Our own messages go to the console (ttyS0), which the host keeps as a log.

/bin/busybox mkdir -p /bin /proc /sys /dev /newroot
/bin/busybox --install -s /bin
export PATH=/bin
umask 022

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

log() { echo "testhost-init: $*"; }
ctl_ok=
ctl_send() { [ -n "$ctl_ok" ] && echo "$*" >&3; }
shutdown_now() {
	sync
	poweroff -f
	echo o >/proc/sysrq-trigger
	while :; do sleep 1; done
}
fail() {
	log "ERROR: $*"
	ctl_send "ISOLA-TESTHOST-ERROR $*"
	shutdown_now
}
uptime_s() { cut -d' ' -f1 /proc/uptime; }

log "init at $(uptime_s)s"

load_modules() {
	while read -r m; do
		[ -n "$m" ] || continue
		insmod "/modules/$m" || return 1
	done
}
# KVM's modules load in the background while the rest of the setup goes on.
load_modules </modules/order.kvm >/kvm-modules.log 2>&1 &
kvm_loader=$!
load_modules </modules/order || fail "could not load the kernel modules ($(dmesg | tail -n 3 | tr '\n' ' '))"
log "modules loaded at $(uptime_s)s"

# /dev path of the virtio-serial port named $1 (ports appear asynchronously).
port_dev() {
	i=0
	while [ $i -lt 200 ]; do
		for p in /sys/class/virtio-ports/*; do
			[ -e "$p/name" ] || continue
			if [ "$(cat "$p/name")" = "$1" ] && [ -c "/dev/${p##*/}" ]; then
				echo "/dev/${p##*/}"
				return 0
			fi
		done
		sleep 0.05
		i=$((i + 1))
	done
	return 1
}

ctl="$(port_dev org.isola.testhost.ctl)" || fail "no control port"
exec 3>"$ctl"
ctl_ok=1

# The run spec: shell assignments and `set -- ENV... CMD...`, quoted by the host.
spec=/sys/firmware/qemu_fw_cfg/by_name/opt/org.isola.testhost/spec/raw
[ -e "$spec" ] || fail "no run spec in fw_cfg"
cat "$spec" >/spec.sh || fail "cannot read the run spec"
. /spec.sh

# Heartbeat: proves to the host's watchdog that the guest is alive, also while the
# command prints nothing.
(
	while echo hb >&3; do sleep "${th_heartbeat:-1}"; done
) &

out="$(port_dev org.isola.testhost.stdout)" || fail "no stdout port"
err="$(port_dev org.isola.testhost.stderr)" || fail "no stderr port"

hostname isola-testhost
ip link set lo up 2>/dev/null

# The root: the host's / (9p, read-only) under a tmpfs overlay, so that writes outside the
# shares (HOME, /etc, /var/lib, ...) work and vanish with the test host.
opts="trans=virtio,version=9p2000.L,msize=${th_msize:-512000}"
mkdir -p /lower /upper
mount -t 9p -o "$opts,ro,cache=loose" hostroot /lower || fail "cannot mount the host's / (9p tag hostroot)"
mount -t tmpfs -o mode=755 tmpfs /upper || fail "mount the overlay's tmpfs"
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot ||
	fail "cannot mount the root overlay ($(dmesg | tail -n 2 | tr '\n' ' '))"
[ -x /newroot/usr/bin/env ] || fail "the host's / has no /usr/bin/env"

r=/newroot
mount -t proc proc $r/proc || fail "mount proc"
mount -t sysfs sysfs $r/sys || fail "mount sysfs"
mount -t cgroup2 cgroup2 $r/sys/fs/cgroup 2>/dev/null || log "no cgroup2 mount"
mount -t devtmpfs devtmpfs $r/dev || fail "mount devtmpfs"
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $r/dev/pts || fail "mount devpts"
mount -t tmpfs -o mode=1777 tmpfs $r/dev/shm
ln -sfn /proc/self/fd $r/dev/fd
ln -sfn /proc/self/fd/0 $r/dev/stdin
ln -sfn /proc/self/fd/1 $r/dev/stdout
ln -sfn /proc/self/fd/2 $r/dev/stderr
mount -t tmpfs -o mode=1777 tmpfs $r/tmp || fail "mount /tmp"
mount -t tmpfs -o mode=755 tmpfs $r/run || fail "mount /run"
[ -d $r/var/tmp ] && mount -t tmpfs -o mode=1777 tmpfs $r/var/tmp

# The kernel's own module tree at the host's /lib/modules path, so modprobe works inside.
if [ -n "${th_modules_src:-}" ] && [ -n "${th_modules_dst:-}" ]; then
	mkdir -p "$r$th_modules_dst"
	mount --bind "$r$th_modules_src" "$r$th_modules_dst" || log "cannot bind the module tree"
fi

# Read-write shares (the work tree first), at the same paths as on the host.
for tag in $th_shares; do
	eval "p=\$th_share_$tag"
	mkdir -p "$r$p" 2>/dev/null
	mount -t 9p -o "$opts,cache=mmap" "$tag" "$r$p" || fail "cannot mount share $tag at $p"
done

wait $kvm_loader || fail "could not load the KVM modules: $(tr '\n' ' ' </kvm-modules.log)"
log "kvm modules loaded at $(uptime_s)s"
[ -c /dev/kvm ] || fail "/dev/kvm is missing after loading kvm_amd: $(dmesg | grep -i -E 'kvm|svm' | tail -n 3 | tr '\n' ' ')"
log "ready at $(uptime_s)s; running the command"
ctl_send ISOLA-TESTHOST-READY

# The command gets a mount namespace of its own whose "/" is the overlay moved
# over the initramfs (what switch_root does), not a chroot of it: a process that
# joins a mount namespace (setns, as `exec` into a container does) starts at
# the top mount on the namespace's "/", which a plain chroot would leave the
# initramfs.
enter='cd /newroot && mount --move . / && exec chroot . /usr/bin/env -i -C "$0" -- "$@"'
if [ "$th_mode" = shell ]; then
	setsid -c unshare -m sh -c "$enter" "$th_cwd" "$@" <>/dev/ttyS0 >&0 2>&0 3>&-
else
	# The redirections happen in the child shell, which then becomes the command: if the
	# command dies of a signal, our "Killed" note goes to the console, not its stderr.
	sh -c 'exec <"/dev/null" >"$1" 2>"$2" 3>&-; shift 2; exec "$@"' sh "$out" "$err" \
		unshare -m sh -c "$enter" "$th_cwd" "$@"
fi
status=$?
log "command exited with $status at $(uptime_s)s"
ctl_send "ISOLA-TESTHOST-EXIT $status"
shutdown_now
