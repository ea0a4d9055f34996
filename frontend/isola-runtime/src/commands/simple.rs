//! The verbs that take only an ID: `start`, `state`, `pause`, `resume`.

use anyhow::{Context, Result};
use isola_container::Runner;

pub fn start(runner: &Runner, id: &str) -> Result<i32> {
    runner
        .start(id)
        .with_context(|| format!("cannot start container {id}"))?;
    Ok(0)
}

pub fn state(runner: &Runner, id: &str) -> Result<i32> {
    let state = runner.state(id)?;
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(0)
}

pub fn pause(runner: &Runner, id: &str) -> Result<i32> {
    runner
        .pause(id)
        .with_context(|| format!("cannot pause container {id}"))?;
    Ok(0)
}

pub fn resume(runner: &Runner, id: &str) -> Result<i32> {
    runner
        .resume(id)
        .with_context(|| format!("cannot resume container {id}"))?;
    Ok(0)
}
