#!/bin/sh
# Prepares what isola-testhost needs on a Debian 12 (bookworm) machine:
#   - Debian's bookworm 6.1 kernel (linux-image-6.1.*-amd64), fetched with `apt-get download`
#     and unpacked with `dpkg -x` into ${ISOLA_CACHE:-/var/cache/isola}/testhost/kernel/<kver>/
#     (never installed into the host's /boot), with modules.dep made by `depmod -b`;
#   - QEMU >= 10 (qemu-system-x86 from bookworm-backports) and busybox-static, installed with
#     apt-get when missing (set ISOLA_TESTHOST_NO_INSTALL=1 to only check them).
#
# Idempotent: a second run with everything in place changes nothing and needs no network.
#   --refresh   resolve the newest bookworm 6.1 kernel again and unpack it if it changed
#
# Environment: ISOLA_CACHE (default /var/cache/isola); ISOLA_TESTHOST_KERNEL_PKG pins the
# kernel package (e.g. linux-image-6.1.0-56-amd64) instead of resolving linux-image-amd64.
set -eu

refresh=0
for arg in "$@"; do
	case "$arg" in
	--refresh) refresh=1 ;;
	-h | --help)
		sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "prepare.sh: unknown argument: $arg" >&2
		exit 2
		;;
	esac
done

say() { echo "testhost/prepare: $*" >&2; }
die() {
	say "error: $*"
	exit 1
}

cache="${ISOLA_CACHE:-/var/cache/isola}/testhost"
stamp="$cache/KERNEL"
apt_updated=0

apt_update_once() {
	if [ "$apt_updated" = 0 ]; then
		say "apt-get update"
		apt-get update -qq >&2 || die "apt-get update failed"
		apt_updated=1
	fi
}

can_install() {
	[ "${ISOLA_TESTHOST_NO_INSTALL:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null
}

# --- host tools -------------------------------------------------------------------------

qemu_major() {
	qemu-system-x86_64 --version 2>/dev/null |
		sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p' | head -n 1
}

major="$(qemu_major || true)"
if [ -z "$major" ] || [ "$major" -lt 10 ]; then
	if can_install; then
		apt_update_once
		say "installing qemu-system-x86 from bookworm-backports (have: ${major:-none})"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			-t bookworm-backports qemu-system-x86 >&2 ||
			die "could not install qemu-system-x86 from bookworm-backports (is 'deb http://deb.debian.org/debian bookworm-backports main' in the apt sources?)"
		major="$(qemu_major || true)"
	fi
	[ -n "$major" ] && [ "$major" -ge 10 ] ||
		die "qemu-system-x86_64 >= 10 is needed (found: ${major:-none}); install it with: apt-get install -t bookworm-backports qemu-system-x86"
fi

busybox_static_installed() {
	dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'
}
if ! busybox_static_installed; then
	if can_install; then
		apt_update_once
		say "installing busybox-static"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >&2 ||
			die "could not install busybox-static"
	fi
	busybox_static_installed || die "the static /bin/busybox is missing: apt-get install busybox-static"
fi

for tool in dpkg dpkg-deb depmod apt-get apt-cache; do
	command -v "$tool" >/dev/null || die "'$tool' not found (this script expects Debian 12)"
done

# --- the kernel ---------------------------------------------------------------------------

kernel_complete() { # $1 = kver
	[ -f "$cache/kernel/$1/boot/vmlinuz-$1" ] &&
		[ -f "$cache/kernel/$1/boot/vmlinux-$1" ] &&
		[ -s "$cache/kernel/$1/lib/modules/$1/modules.dep" ]
}

# The uncompressed ELF vmlinux inside a bzImage (like the kernel's scripts/extract-vmlinux).
# QEMU boots it through its PVH entry point, which skips decompressing the kernel: that
# takes over 3 s under TCG.
extract_vmlinux() { # $1 = bzImage, $2 = output
	command -v xz >/dev/null || die "xz is needed to unpack the kernel: apt-get install xz-utils"
	for off in $(LC_ALL=C grep -abo "$(printf '\3757zXZ')" "$1" | cut -d: -f1); do
		tail -c "+$((off + 1))" "$1" | xz -dcq >"$2.tmp" 2>/dev/null || true
		if [ "$(head -c 4 "$2.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
			mv "$2.tmp" "$2"
			return 0
		fi
	done
	rm -f "$2.tmp"
	die "no xz-compressed ELF kernel found in $1"
}

if [ "$refresh" = 0 ] && [ -f "$stamp" ]; then
	kver="$(head -n 1 "$stamp")"
	boot="$cache/kernel/$kver/boot"
	if [ -n "$kver" ] && [ -f "$boot/vmlinuz-$kver" ] && ! [ -f "$boot/vmlinux-$kver" ]; then
		extract_vmlinux "$boot/vmlinuz-$kver" "$boot/vmlinux-$kver"
	fi
	if [ -n "$kver" ] && kernel_complete "$kver"; then
		say "kernel $kver already in $cache/kernel/$kver"
		exit 0
	fi
fi

# The concrete image package behind bookworm's linux-image-amd64 6.1 (not backports' 6.12,
# whatever the pinning says): the highest 6.1.* version's dependency.
resolve_pkg() {
	apt-cache show linux-image-amd64 2>/dev/null | awk '
		/^Version: / { ver = $2 }
		/^Depends: / && ver ~ /^6\.1\./ {
			dep = $2
			if (dep ~ /^linux-image-6\.1\.[0-9]+-[0-9]+-amd64$/) print ver, dep
		}' | sort -V -r | head -n 1 | cut -d' ' -f2
}

pkg="${ISOLA_TESTHOST_KERNEL_PKG:-}"
if [ -z "$pkg" ]; then
	pkg="$(resolve_pkg)"
	if [ -z "$pkg" ]; then
		apt_update_once
		pkg="$(resolve_pkg)"
	fi
	[ -n "$pkg" ] || die "cannot resolve bookworm's linux-image-amd64 (6.1) with apt-cache"
fi
kver="${pkg#linux-image-}"

if kernel_complete "$kver"; then
	say "kernel $kver already unpacked"
else
	mkdir -p "$cache/kernel"
	work="$(mktemp -d "$cache/.prepare.XXXXXX")"
	trap 'rm -rf "$work"' EXIT INT TERM
	# apt-get download fetches as the unprivileged _apt user when it can write there.
	chmod 755 "$work"
	chown _apt "$work" 2>/dev/null || true
	say "downloading $pkg"
	(cd "$work" && apt-get download -q "$pkg" >&2) || {
		apt_update_once
		(cd "$work" && apt-get download -q "$pkg" >&2) || die "apt-get download $pkg failed"
	}
	deb="$(ls "$work"/*.deb)"
	say "unpacking $(basename "$deb")"
	dpkg -x "$deb" "$work/root"
	# bookworm ships modules under lib/; a merged-/usr package would put them under usr/lib/.
	if ! [ -d "$work/root/lib/modules/$kver" ] && [ -d "$work/root/usr/lib/modules/$kver" ]; then
		mkdir -p "$work/root/lib"
		mv "$work/root/usr/lib/modules" "$work/root/lib/modules"
	fi
	[ -f "$work/root/boot/vmlinuz-$kver" ] || die "$deb has no boot/vmlinuz-$kver"
	extract_vmlinux "$work/root/boot/vmlinuz-$kver" "$work/root/boot/vmlinux-$kver"
	depmod -b "$work/root" "$kver"
	rm -rf "$cache/kernel/$kver"
	mv "$work/root" "$cache/kernel/$kver"
	kernel_complete "$kver" || die "unpacked kernel $kver is incomplete"
fi

printf '%s\n' "$kver" >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"
say "kernel $kver ready in $cache/kernel/$kver"
