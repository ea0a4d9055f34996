//! `list`: every container under the state root.

use anyhow::Result;
use isola_container::{ContainerState, Runner};

use crate::cli::{List, ListFormat};

pub fn list(runner: &Runner, args: List) -> Result<i32> {
    print(&runner.list()?, &args)?;
    Ok(0)
}

/// Prints the containers as `list`'s flags ask.
pub fn print(states: &[ContainerState], args: &List) -> Result<()> {
    if args.quiet {
        for s in states {
            println!("{}", s.id);
        }
    } else if args.format == ListFormat::Json {
        println!("{}", serde_json::to_string(states)?);
    } else {
        println!(
            "{:<24} {:<8} {:<10} {:<40} CREATED",
            "ID", "PID", "STATUS", "BUNDLE"
        );
        for s in states {
            println!(
                "{:<24} {:<8} {:<10} {:<40} {}",
                s.id,
                s.pid,
                s.status,
                s.bundle.display(),
                s.created.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}
