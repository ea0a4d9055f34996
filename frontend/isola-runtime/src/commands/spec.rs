//! `spec`: a starting-point config.json, as `runc spec` writes one.

use std::io::Write;

use anyhow::{bail, Context, Result};
use isola_container::oci_spec::runtime::Spec as OciSpec;

use crate::cli::Spec;

pub fn spec(args: Spec) -> Result<i32> {
    if args.rootless {
        bail!("rootless mode is not supported");
    }
    let path = args.bundle.join("config.json");
    let json = serde_json::to_string_pretty(&OciSpec::default())?;
    // create_new: never overwrite someone's config (runc refuses too).
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(json.as_bytes())?;
    Ok(0)
}
