//! Flags shared by the commands that talk to a registry (podman's spelling).

use std::path::PathBuf;

use clap::Args;
use isola_image::pull::TlsOptions;

#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Require HTTPS and a verified certificate (false: accept self-signed and plain HTTP)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tls_verify: Option<bool>,
    /// Directory of extra CA certificates (*.crt)
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
}

impl RegistryArgs {
    pub fn tls(&self) -> TlsOptions {
        TlsOptions {
            tls_verify: self.tls_verify,
            cert_dir: self.cert_dir.clone(),
        }
    }
}
