//! `events`: resource usage samples, one JSON object per line, shaped like
//! runc's (`{"type":"stats","id":..,"data":..}`).

use std::time::Duration;

use anyhow::{Context, Result};
use isola_container::Runner;

use crate::cli::Events;

pub fn events(runner: &Runner, args: Events) -> Result<i32> {
    sample_loop(&args, || {
        let stats = runner.stats(&args.id)?;
        Ok(serde_json::json!({ "type": "stats", "id": args.id, "data": stats }).to_string())
    })
}

/// `events` of a vm-level container: the guest's runner reads the
/// container's cgroup (v2 in the guest) and prints the same line.
#[cfg(feature = "vm")]
pub fn events_vm(root: &std::path::Path, args: &Events) -> Result<i32> {
    sample_loop(args, || Ok(isola_host::oci_vm::stats(root, &args.id)?))
}

/// Prints one sample line, then (without `--stats`) one per interval.
fn sample_loop(args: &Events, sample: impl Fn() -> Result<String>) -> Result<i32> {
    let interval = parse_interval(&args.interval)?;
    loop {
        let line =
            sample().with_context(|| format!("cannot read stats of container {}", args.id))?;
        println!("{line}");
        if args.stats {
            return Ok(0);
        }
        std::thread::sleep(interval);
    }
}

/// `5`, `5s`, `500ms`.
fn parse_interval(s: &str) -> Result<Duration> {
    let bad = || format!("invalid --interval {s:?}");
    if let Some(ms) = s.strip_suffix("ms") {
        return Ok(Duration::from_millis(ms.parse().with_context(bad)?));
    }
    let secs: u64 = s.trim_end_matches('s').parse().with_context(bad)?;
    Ok(Duration::from_secs(secs.max(1)))
}
