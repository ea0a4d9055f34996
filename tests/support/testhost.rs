//! Where vm-level tests run: directly when this host's KVM can run a Linux
//! guest, otherwise inside the nested test host. Never skipped.

use std::process::Command;

use isola_vmm::host_check::{kvm_capability, KvmCapability};

/// The longest one test binary may run in the test host (the slowest, the
/// vm-level `isola run` suite, takes about 6 minutes): a hung test fails
/// here with the console's tail instead of eating CI's 90 minutes.
const TIME_LIMIT_SECS: u64 = 1800;

/// Set by `isola-testhost` inside the test host.
pub const IN_TESTHOST_ENV: &str = "ISOLA_IN_TESTHOST";

/// If this host cannot run the tests' Linux guests, run this whole test
/// binary once inside the test host with the same arguments, and exit with
/// its status. Returns only when the tests should run here.
pub fn run_here_or_in_testhost() {
    run_where(
        || match kvm_capability() {
            KvmCapability::Hardware => Ok(()),
            KvmCapability::NoHardware(why) => Err(why),
        },
        "vm-level tests",
    );
}

/// Runs this test binary here if `here_ok` says this host has what the
/// tests need, else once inside the test host (whose outer Linux has KVM
/// and a pure cgroup v2 hierarchy); never skipped.
pub fn run_where(here_ok: impl Fn() -> Result<(), String>, what: &str) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Listing tests boots nothing.
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let why = match here_ok() {
        Ok(()) => return,
        Err(why) => why,
    };
    if std::env::var_os(IN_TESTHOST_ENV).is_some() {
        panic!("inside the test host, but it lacks what the {what} need too: {why}");
    }
    eprintln!("note: {why}; running these {what} inside the nested test host");
    let exe = std::env::current_exe().expect("current_exe");
    let mut args = args;
    // One guest at a time unless asked otherwise: emulated SVM under TCG has
    // produced spurious guest resets under heavy parallel load, and a
    // test host has only two vCPUs to share anyway.
    if !args.iter().any(|a| a.starts_with("--test-threads")) {
        args.push("--test-threads=1".into());
    }
    let status = Command::new(crate::bin("isola-testhost"))
        .arg("--time-limit")
        .arg(TIME_LIMIT_SECS.to_string())
        .arg("--")
        .arg(exe)
        .args(&args)
        .status()
        .expect("run isola-testhost");
    std::process::exit(status.code().unwrap_or(1));
}
