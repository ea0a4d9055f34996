//! `ps`: the container's processes, as pids (json) or ps(1) lines (table).

use std::process::Command;

use anyhow::{bail, Context, Result};
use isola_container::Runner;

use crate::cli::{ListFormat, Ps};

pub fn ps(runner: &Runner, args: Ps) -> Result<i32> {
    let pids = runner
        .ps(&args.id)
        .with_context(|| format!("cannot list processes of container {}", args.id))?;
    if args.format == ListFormat::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let options = if args.ps_options.is_empty() {
        vec!["-ef".to_owned()]
    } else {
        args.ps_options
    };
    let out = Command::new("ps")
        .args(&options)
        .output()
        .context("cannot run ps")?;
    if !out.status.success() {
        bail!(
            "ps {options:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(column) = header.split_whitespace().position(|c| c == "PID") else {
        bail!("ps {options:?} prints no PID column");
    };
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(0)
}
