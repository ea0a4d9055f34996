//! Builds the tiny test guest (`tiny-guest/`) into OUT_DIR and tells the
//! tests where it is (`TINY_GUEST_ELF`). The flags live in
//! `tiny-guest/build.sh`, which the benchmark also uses.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let src = manifest.join("tiny-guest");
    for f in ["entry.S", "guest.c", "linker.ld", "build.sh"] {
        println!("cargo:rerun-if-changed=tiny-guest/{f}");
    }
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("tiny.elf");
    let status = Command::new("sh")
        .arg(src.join("build.sh"))
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run tiny-guest/build.sh: {e}"));
    if !status.success() {
        panic!("building the tiny guest failed ({status}); it needs gcc and binutils for x86-64");
    }
    println!("cargo:rustc-env=TINY_GUEST_ELF={}", out.display());
}
