//! `isola inspect`: a JSON array, one object per container, as docker.

use anyhow::Result;
use clap::Args;
use isola_host::Host;

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(host: &Host, args: InspectArgs) -> Result<i32> {
    let mut out = Vec::new();
    let mut status = 0;
    for reference in &args.containers {
        match host.resolve(reference).and_then(|id| host.inspect(&id)) {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("isola: error: {reference}: {e}");
                status = 1;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(status)
}
