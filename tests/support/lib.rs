//! Shared helpers for the integration tests.

pub mod guest;
pub mod testhost;

use std::path::{Path, PathBuf};

use libtest_mimic::Failed;

/// What a libtest-mimic trial returns.
pub type TestResult = Result<(), Failed>;

/// Fails the trial with `msg` unless `cond` holds.
pub fn check(cond: bool, msg: impl Into<String>) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(msg.into().into())
    }
}

/// `<target>/<triple>/<profile>`: where this test executable's `deps/` is.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// A workspace binary (`isola-vmm`, ...) built with the same profile as this
/// test: `<target>/<triple>/<profile>/<name>`, the parent of the test
/// executable's `deps/` directory. Cargo does not build other packages'
/// binaries for `cargo test -p`, so this panics with what to run instead.
pub fn bin(name: &str) -> PathBuf {
    let p = profile_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace` first (with --release for release tests)",
        p.display()
    );
    p
}
