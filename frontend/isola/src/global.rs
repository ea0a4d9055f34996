//! Options every `isola` command honours.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use isola_image::Store;

#[derive(Args, Debug, Clone)]
pub struct GlobalOpts {
    /// Where images (and later containers) live
    #[arg(long, global = true, default_value = isola_image::DEFAULT_ROOT, env = "ISOLA_ROOT")]
    pub root: PathBuf,
    /// error, warn, info, debug or trace (or a tracing filter)
    #[arg(long, global = true, default_value = "warn")]
    pub log_level: String,
}

impl GlobalOpts {
    pub fn store(&self) -> anyhow::Result<Store> {
        Store::open(&self.root)
            .with_context(|| format!("opening the store at {}", self.root.display()))
    }
}

pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(quiet_runner(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The library is async only where the network is.
pub fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(rt.block_on(f))
}

/// youki's cgroup code warns about every v1 controller this host lacks, on
/// every call; keep that out of users' terminals unless asked by name.
pub fn quiet_runner(level: &str) -> String {
    if level.contains('=') {
        level.to_string()
    } else {
        format!("{level},libcgroups=error")
    }
}
