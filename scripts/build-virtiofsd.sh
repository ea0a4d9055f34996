#!/usr/bin/env bash
# Installs virtiofsd (the Rust vhost-user file system daemon from crates.io;
# Debian 12 does not package it and QEMU 8+ no longer ships the C one) into
# build/virtiofsd, where the runtime looks for it. Cached by version.
set -euo pipefail
cd "$(dirname "$0")/.."

version=1.14.0
cache=/var/cache/isola/virtiofsd/$version
if [ ! -x "$cache/bin/virtiofsd" ]; then
    echo "build-virtiofsd: cargo install virtiofsd $version (once)"
    # Built from / so the workspace's .cargo/config.toml (static-pie, static
    # libseccomp) does not apply: it links Debian's libseccomp and libcap-ng.
    (cd / && CARGO_TARGET_DIR=/var/cache/isola/virtiofsd/target \
        cargo install --quiet --locked "virtiofsd@$version" --root "$cache")
    rm -rf /var/cache/isola/virtiofsd/target
fi
install -m 0755 "$cache/bin/virtiofsd" build/virtiofsd
build/virtiofsd --version
