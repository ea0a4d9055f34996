//! The distribution-API client (oci-client) set up from podman-style flags:
//! HTTPS by default; `--tls-verify=false` accepts self-signed certificates and
//! falls back to plain HTTP; `--cert-dir` adds CA certificates.

use std::path::Path;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tracing::debug;

use crate::error::{Error, IoContext, Result};

#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// false: accept any certificate, and plain HTTP.
    pub tls_verify: Option<bool>,
    /// A directory of PEM CA certificates (`*.crt`).
    pub cert_dir: Option<std::path::PathBuf>,
}

impl TlsOptions {
    fn verify(&self) -> bool {
        self.tls_verify.unwrap_or(true)
    }
}

/// ring, not aws-lc: installed once per process, before any TLS client.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn certs(dir: &Path) -> Result<Vec<Certificate>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).ctx(|| format!("reading --cert-dir {}", dir.display()))? {
        let p = e.ctx(|| "reading --cert-dir".into())?.path();
        if p.extension().is_some_and(|x| x == "crt" || x == "pem") {
            out.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data: std::fs::read(&p).ctx(|| format!("reading {}", p.display()))?,
            });
        }
    }
    Ok(out)
}

fn build(tls: &TlsOptions, http: bool) -> Result<Client> {
    let config = ClientConfig {
        protocol: if http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        accept_invalid_certificates: !tls.verify(),
        extra_root_certificates: match &tls.cert_dir {
            Some(d) => certs(d)?,
            None => vec![],
        },
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    Client::try_from(config).map_err(|e| registry_err("client setup", e))
}

pub fn registry_err(reference: &str, e: OciDistributionError) -> Error {
    Error::Registry {
        reference: reference.to_string(),
        source: Box::new(e),
    }
}

/// A client that has reached the registry's /v2/ and authenticated.
pub async fn connect(r: &Reference, tls: &TlsOptions, auth: &RegistryAuth) -> Result<Client> {
    let client = build(tls, false)?;
    match client.auth(r, auth, RegistryOperation::Pull).await {
        Ok(_) => Ok(client),
        Err(OciDistributionError::RequestError(e)) if !tls.verify() => {
            debug!(error = %e, "HTTPS failed and --tls-verify=false: trying plain HTTP");
            let client = build(tls, true)?;
            client
                .auth(r, auth, RegistryOperation::Pull)
                .await
                .map_err(|e| registry_err(&r.whole(), e))?;
            Ok(client)
        }
        Err(e) => Err(registry_err(&r.whole(), e)),
    }
}

/// Worth another try: the network or the server hiccuped.
pub fn transient(e: &Error) -> bool {
    match e {
        Error::Registry { source, .. } => match source.as_ref() {
            OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => true,
            OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
            _ => false,
        },
        _ => false,
    }
}
