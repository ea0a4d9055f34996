#!/bin/sh
# The README's main job: the local busybox image run at the vm level, in a
# store of its own on a local filesystem (overlayfs cannot put its upper
# layer on the test host's 9p share of the work tree).
#   scripts/demo-vm.sh BUSYBOX_OCI_ARCHIVE
set -eu
root=$(mktemp -d /tmp/isola-demo.XXXXXX)
trap 'rm -rf "$root"' EXIT
isola --root "$root" load -q -i "$1"
isola --root "$root" run --rm --isolation=vm busybox sh -c \
    'echo "hello from $(hostname), pid $$, on guest kernel $(uname -r), $(grep MemTotal /proc/meminfo | tr -s " " | cut -d" " -f2-) of guest memory"'
