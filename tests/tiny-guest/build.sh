#!/bin/sh
# Builds the tiny test guest (a PVH-bootable ELF of a few KiB).
#
#   tests/tiny-guest/build.sh OUT.elf
#
# Used by tests/build.rs (for the vmm_tiny tests) and by the benchmark.
# Needs only gcc and binutils for x86-64; CC overrides the compiler.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT.elf}
cc=${CC:-gcc}
# -mgeneral-regs-only: the guest never enables SSE (CR4.OSFXSR).
# -fno-tree-loop-distribute-patterns: keep memset/memcpy from calling themselves.
"$cc" -m64 -std=gnu11 -O2 -Wall -Wextra -Werror \
    -ffreestanding -nostdlib -nostartfiles -static -fno-pic -no-pie \
    -mno-red-zone -mgeneral-regs-only -fno-stack-protector \
    -fno-asynchronous-unwind-tables -fno-tree-loop-distribute-patterns \
    -Wl,-T,"$here/linker.ld" -Wl,--build-id=none -Wl,-z,noexecstack -Wl,-n -Wl,--no-warn-rwx-segments \
    -o "$out" "$here/entry.S" "$here/guest.c"
