#!/usr/bin/env bash
# Builds the local images every test and benchmark runs, as one OCI image
# layout at build/images/oci (readable by skopeo, umoci, podman and isola):
#
#   busybox:latest   one layer: busybox-static and a link per applet
#   debian:bookworm  two layers: debootstrap --variant=minbase, then a layer
#                    that adds a file and deletes a directory (a whiteout),
#                    so that unpackers meet the realistic case
#
# No registry outside this machine is reachable, so images are made here.
# The layout is cached under /var/cache/isola/images/<key>; debootstrap runs
# only when the cache is cold (about 3 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

recipe=2
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
busybox_version=$(dpkg-query -W -f '${Version}' busybox-static)
key=$(printf '%s\n' "$recipe" "$busybox_version" "$(sha256sum "$0" | cut -c1-16)" \
      | sha256sum | cut -c1-16)
cache=/var/cache/isola/images/$key
out=build/images/oci

if [ -f "$cache/done" ]; then
    if ! cmp -s "$cache/oci/index.json" "$out/index.json" 2>/dev/null; then
        rm -rf "$out" && mkdir -p "$(dirname "$out")" && cp -a "$cache/oci" "$out"
    fi
    exit 0
fi

work=$(mktemp -d /var/tmp/isola-images.XXXXXX)
trap 'rm -rf "$work"' EXIT
layout=$work/oci
umoci init --layout "$layout"

# Repacks BUNDLE (an unpacked umoci bundle) as a new layer of TAG.
repack() { umoci repack --refresh-bundle --image "$layout:$1" "$2"; }

echo "images: busybox:latest"
umoci new --image "$layout:busybox"
umoci unpack --image "$layout:busybox" "$work/bb"
root=$work/bb/rootfs
mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,root}
chmod 1777 "$root/tmp"
install -m 0755 /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
repack busybox "$work/bb"
umoci config --image "$layout:busybox" --tag busybox:latest \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.cmd sh --config.workingdir /
umoci rm --image "$layout:busybox"

echo "images: debian:bookworm (debootstrap minbase from $mirror)"
umoci new --image "$layout:debian"
umoci unpack --image "$layout:debian" "$work/deb"
rmdir "$work/deb/rootfs" && mkdir "$work/deb/rootfs"
debootstrap --variant=minbase bookworm "$work/deb/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; exit 1; }
rm -rf "$work/deb/rootfs"/var/cache/apt/archives/*.deb "$work/deb/rootfs"/var/lib/apt/lists/*
repack debian "$work/deb"
# Second layer: one file added, one directory deleted (becomes a .wh. entry).
echo "isola test image, layer 2" >"$work/deb/rootfs/etc/isola-layer"
rm -rf "$work/deb/rootfs/usr/share/doc/debconf"
repack debian "$work/deb"
umoci config --image "$layout:debian" --tag debian:bookworm \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.cmd bash --config.workingdir /
umoci rm --image "$layout:debian"
umoci gc --layout "$layout"

mkdir -p "$cache"
rm -rf "$cache/oci" && cp -a "$layout" "$cache/oci" && touch "$cache/done"
rm -rf "$out" && mkdir -p "$(dirname "$out")" && cp -a "$cache/oci" "$out"
echo "images: $(umoci ls --layout "$out" | tr '\n' ' ')in $out"
