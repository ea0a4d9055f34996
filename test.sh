#!/usr/bin/env bash
# Runs every test: unit tests, the VMM's tests on this host's KVM with tiny
# guests, and the Linux-guest tests (directly where KVM can run Linux guests,
# else inside the nested test host, booted once for the whole binary).
set -euo pipefail
cd "$(dirname "$0")"
./build.sh --no-demo
cargo test --release --workspace --no-fail-fast -- "$@"
