#!/usr/bin/env bash
# Installs what building and testing isola needs on a fresh Debian 12 host.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

need=(build-essential bc bison flex libelf-dev libssl-dev xz-utils cpio file
      busybox-static e2fsprogs erofs-utils linux-source-6.12 hyperfine
      libseccomp-dev libcap-ng-dev pkg-config runc crun podman containerd skopeo umoci openssl
      docker-registry apache2-utils debootstrap containernetworking-plugins
      uidmap tmux)

missing=()
for p in "${need[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done

# QEMU 10 from bookworm-backports runs the nested test host; Debian 12's
# QEMU 7.2 freezes with two vCPUs under this load.
qemu_ok=false
if command -v qemu-system-x86_64 >/dev/null; then
    v=$(qemu-system-x86_64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p')
    [ "${v:-0}" -ge 10 ] && qemu_ok=true
fi

if [ ${#missing[@]} -eq 0 ] && $qemu_ok; then
    exit 0
fi

if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "install-deps: adding bookworm-backports to apt sources (for QEMU 10)"
    cat > /etc/apt/sources.list.d/bookworm-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
echo "install-deps: installing ${missing[*]} ${qemu_ok:+}$($qemu_ok || echo qemu-system-x86/bookworm-backports)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
[ ${#missing[@]} -eq 0 ] || apt-get install -y -q "${missing[@]}"
$qemu_ok || apt-get install -y -q -t bookworm-backports qemu-system-x86
