#!/bin/bash
# Image store benchmark, side by side in one run: pull of the Debian image
# from a loopback docker-registry into an empty store and unpack to a
# runnable rootfs, by `isola pull` vs `skopeo copy` + `umoci unpack` vs
# `podman pull`; then EROFS build time per MiB. Prints a markdown table.
# Needs root, build/images/oci (images/build.sh) and the release isola.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
ISOLA=${ISOLA:-target/x86_64-unknown-linux-gnu/release/isola}
LAYOUT=build/images/oci
for t in docker-registry skopeo umoci podman hyperfine mkfs.erofs; do
    command -v $t >/dev/null || { echo "bench/image.sh: $t missing (./build.sh installs it)" >&2; exit 1; }
done
[ -x "$ISOLA" ] && [ -f $LAYOUT/index.json ] || { echo "bench/image.sh: build isola and images/build.sh first" >&2; exit 1; }

T=$(mktemp -d /var/tmp/isola-bench-image.XXXXXX)
trap 'kill $REG 2>/dev/null || true; rm -rf "$T"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > $T/registry.yml <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $T/registry
http:
  addr: 127.0.0.1:$PORT
YML
docker-registry serve $T/registry.yml >/dev/null 2>&1 & REG=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
IMG=127.0.0.1:$PORT/debian:bookworm
skopeo copy -q --dest-tls-verify=false oci:$LAYOUT:debian:bookworm docker://$IMG

hyperfine --runs "$RUNS" --warmup 1 --export-markdown $T/pull.md --style basic \
    -n "isola pull" --prepare "rm -rf $T/isola" \
    "$ISOLA --root $T/isola pull -q --tls-verify=false $IMG" \
    -n "skopeo copy + umoci unpack" --prepare "rm -rf $T/oci $T/bundle" \
    "skopeo copy -q --src-tls-verify=false docker://$IMG oci:$T/oci:d && umoci unpack --image $T/oci:d $T/bundle >/dev/null" \
    -n "podman pull" --prepare "podman --root $T/podman --runroot $T/podrun system reset -f >/dev/null 2>&1 || true; rm -rf $T/podman $T/podrun" \
    "podman --root $T/podman --runroot $T/podrun --storage-driver overlay pull -q --tls-verify=false $IMG >/dev/null" >&2
podman --root $T/podman --runroot $T/podrun system reset -f >/dev/null 2>&1 || true

# EROFS: rebuilt from the already unpacked layers each run.
"$ISOLA" --root $T/isola pull -q --tls-verify=false $IMG >/dev/null
MIB=$(du -sm --apparent-size $T/isola/layers | cut -f1)
hyperfine --runs "$RUNS" --time-unit millisecond --export-markdown $T/erofs.md --style basic \
    -n "isola image erofs ($MIB MiB of layers)" --prepare "rm -f $T/isola/erofs/*.erofs" \
    "$ISOLA --root $T/isola image erofs $IMG" >&2
EROFS_S=$(sed -n 's/^| `*isola image erofs[^|]*| *\([0-9.]*\).*/\1/p' $T/erofs.md)

echo "### Pull + unpack of debian:bookworm from a loopback registry ($RUNS runs, empty store each)"
echo
cat $T/pull.md
echo
echo "### EROFS root disk build"
echo
cat $T/erofs.md
echo
if [ -n "$EROFS_S" ]; then
    awk -v s="$EROFS_S" -v m="$MIB" 'BEGIN { printf "EROFS build: %.2f ms per MiB of unpacked layers (%d MiB)\n", s/m, m }'
fi
