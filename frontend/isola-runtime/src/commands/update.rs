//! `update`: new resource limits, from a `linux.resources` JSON document
//! (`--resources`, as containerd sends them) or from runc's flags.

use std::io::Read;

use anyhow::{bail, Context, Result};
use isola_container::oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
use isola_container::Runner;

use crate::cli::Update;

pub fn update(runner: &Runner, args: Update) -> Result<i32> {
    let resources = resources(&args)?;
    runner
        .update(&args.id, &resources)
        .with_context(|| format!("cannot update container {}", args.id))?;
    Ok(0)
}

/// The limits `args` ask for: its `--resources` document, or runc's flags.
pub fn resources(args: &Update) -> Result<LinuxResources> {
    Ok(match &args.resources {
        Some(path) => {
            let mut text = String::new();
            if path.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
            }
            serde_json::from_str(&text).context("malformed resources JSON")?
        }
        None => from_flags(args)?,
    })
}

fn from_flags(args: &Update) -> Result<LinuxResources> {
    let mut r = LinuxResources::default();
    let size = |v: &Option<String>| v.as_deref().map(parse_size).transpose();
    let (limit, reservation, swap) = (
        size(&args.memory)?,
        size(&args.memory_reservation)?,
        size(&args.memory_swap)?,
    );
    if limit.is_some() || reservation.is_some() || swap.is_some() {
        let mut m = LinuxMemory::default();
        m.set_limit(limit)
            .set_reservation(reservation)
            .set_swap(swap);
        r.set_memory(Some(m));
    }
    if args.cpu_period.is_some()
        || args.cpu_quota.is_some()
        || args.cpu_shares.is_some()
        || args.cpuset_cpus.is_some()
        || args.cpuset_mems.is_some()
    {
        let mut c = LinuxCpu::default();
        c.set_period(args.cpu_period)
            .set_quota(args.cpu_quota)
            .set_shares(args.cpu_shares)
            .set_cpus(args.cpuset_cpus.clone())
            .set_mems(args.cpuset_mems.clone());
        r.set_cpu(Some(c));
    }
    if let Some(limit) = args.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        r.set_pids(Some(p));
    }
    Ok(r)
}

/// Bytes, with an optional k/m/g suffix (powers of 1024, as runc); -1 is
/// "unlimited".
fn parse_size(s: &str) -> Result<i64> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (num, mult) = match lower.char_indices().last() {
        Some((i, 'k')) => (&lower[..i], 1i64 << 10),
        Some((i, 'm')) => (&lower[..i], 1 << 20),
        Some((i, 'g')) => (&lower[..i], 1 << 30),
        _ => (lower, 1),
    };
    let n: i64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    if n == -1 {
        return Ok(-1);
    }
    if n < 0 {
        bail!("invalid size {s:?}");
    }
    n.checked_mul(mult)
        .with_context(|| format!("size {s:?} too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").ok(), Some(1024));
        assert_eq!(parse_size("4k").ok(), Some(4096));
        assert_eq!(parse_size("64M").ok(), Some(64 << 20));
        assert_eq!(parse_size("1g").ok(), Some(1 << 30));
        assert_eq!(parse_size("-1").ok(), Some(-1));
        assert!(parse_size("x").is_err());
        assert!(parse_size("-5").is_err());
    }
}
