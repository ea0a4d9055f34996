//! `isola pull`: manifest (through an index to the wanted platform), config,
//! then every layer fetched concurrently, each verified, resumed after a
//! network error from where it stopped, and unpacked as soon as it is in.

pub mod auth;
pub mod client;
pub mod platform;
pub mod progress;

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::BlobResponse;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::io::AsyncWriteExt;
use tracing::{debug, warn};

use crate::digest::{Digest, Hasher};
use crate::error::{Error, IoContext, Result};
use crate::reference;
use crate::store::layout::{
    sync_dir, Descriptor, Manifest, DOCKER_LIST, DOCKER_MANIFEST, MAX_JSON_BLOB, OCI_INDEX,
    OCI_MANIFEST,
};
use crate::store::lock::Lock;
use crate::store::{Image, Store};
pub use client::TlsOptions;
use client::{registry_err, transient};
pub use platform::PlatformWanted;
pub use progress::{Progress, ProgressMode};

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub tls: TlsOptions,
    pub platform: PlatformWanted,
    pub progress: ProgressMode,
    /// Overrides what `isola login` stored.
    pub credentials: Option<(String, String)>,
    pub concurrency: usize,
    pub retries: u32,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            tls: TlsOptions::default(),
            platform: PlatformWanted::default(),
            progress: ProgressMode::Auto,
            credentials: None,
            concurrency: 4,
            retries: 3,
        }
    }
}

const MANIFEST_TYPES: &[&str] = &[OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST];

struct Session<'a> {
    store: &'a Store,
    client: Client,
    r: Reference,
    progress: Progress,
    retries: u32,
}

impl Store {
    pub fn registry_auth(
        &self,
        registry: &str,
        explicit: &Option<(String, String)>,
    ) -> Result<RegistryAuth> {
        let creds = match explicit {
            Some(c) => Some(c.clone()),
            None => auth::lookup(self.root(), registry)?,
        };
        Ok(match creds {
            Some((u, p)) => RegistryAuth::Basic(u, p),
            None => RegistryAuth::Anonymous,
        })
    }

    pub async fn pull(&self, reference: &str, opts: &PullOptions) -> Result<Image> {
        client::install_crypto();
        let r = reference::parse(reference)?;
        let store = self.clone();
        let _guard = tokio::task::spawn_blocking(move || store.import_guard())
            .await
            .map_err(|e| Error::Unsupported(format!("lock task: {e}")))??;
        let auth = self.registry_auth(r.resolve_registry(), &opts.credentials)?;
        let client = client::connect(&r, &opts.tls, &auth).await?;
        let s = Session {
            store: self,
            client,
            r: r.clone(),
            progress: Progress::new(opts.progress),
            retries: opts.retries,
        };
        let (digest, bytes) = s.manifest(&auth, &opts.platform).await?;
        s.progress
            .line(&format!("Pulling {} ({digest})", r.whole()));
        let manifest = Manifest::parse(&bytes, &format!("manifest {digest}"))?;
        let (config, layers) = manifest.image_parts(&format!("manifest {digest}"))?;
        s.fetch_json_blob(config).await?;
        let diff_ids = crate::store::image::Image::new(
            digest.clone(),
            bytes.len() as u64,
            manifest.clone(),
            &self.layout.read_blob(&config.digest)?,
            vec![],
        )?
        .diff_ids()?;
        futures_util::stream::iter(layers.iter().zip(diff_ids).map(Ok))
            .try_for_each_concurrent(opts.concurrency.max(1), |(l, diff_id)| s.layer(l, diff_id))
            .await?;
        let names: Vec<String> = reference::tag_name(&r).into_iter().collect();
        let store = self.clone();
        let image =
            tokio::task::spawn_blocking(move || store.commit_image(&bytes, Some(&digest), &names))
                .await
                .map_err(|e| Error::Unsupported(format!("commit task: {e}")))??;
        s.progress
            .line(&format!("Stored {} as {}", r.whole(), image.id));
        Ok(image)
    }

    /// `isola login`: checks the credentials against the registry, then
    /// stores them.
    pub async fn login(
        &self,
        registry: &str,
        user: &str,
        password: &str,
        tls: &TlsOptions,
    ) -> Result<()> {
        client::install_crypto();
        let r = Reference::with_tag(
            registry.to_string(),
            "isola/login-check".into(),
            "latest".into(),
        );
        let auth = RegistryAuth::Basic(user.into(), password.into());
        let refused = || Error::LoginRefused {
            registry: registry.to_string(),
        };
        let c = match client::connect(&r, tls, &auth).await {
            Ok(c) => c,
            Err(Error::Registry { source, .. })
                if matches!(
                    *source,
                    oci_client::errors::OciDistributionError::AuthenticationFailure(_)
                ) =>
            {
                return Err(refused())
            }
            Err(e) => return Err(e),
        };
        use oci_client::errors::OciDistributionError as E;
        match c.fetch_manifest_digest(&r, &auth).await {
            Ok(_) | Err(E::ImageManifestNotFoundError(_)) => {}
            Err(E::UnauthorizedError { .. } | E::AuthenticationFailure(_)) => return Err(refused()),
            Err(E::RegistryError { envelope, .. })
                if envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        oci_client::errors::OciErrorCode::Unauthorized
                            | oci_client::errors::OciErrorCode::Denied
                    )
                }) =>
            {
                return Err(refused())
            }
            Err(E::RegistryError { .. } | E::ServerError { code: 404, .. }) => {}
            Err(e) => return Err(registry_err(registry, e)),
        }
        auth::save(self.root(), registry, user, password)
    }

    pub fn logout(&self, registry: &str) -> Result<bool> {
        auth::remove(self.root(), registry)
    }
}

impl Session<'_> {
    /// The image manifest's digest and bytes, through an index if needed.
    async fn manifest(
        &self,
        auth: &RegistryAuth,
        platform: &PlatformWanted,
    ) -> Result<(Digest, Vec<u8>)> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&self.r, auth, MANIFEST_TYPES)
            .await
            .map_err(|e| registry_err(&self.r.whole(), e))?;
        let mut digest = Digest::of_bytes(&bytes);
        if let Some(want) = self.r.digest() {
            if want != digest.to_string() {
                return Err(Error::DigestMismatch {
                    what: format!("manifest of {}", self.r.whole()),
                    expected: want.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let m = Manifest::parse(&bytes, &format!("manifest {digest}"))?;
        if !m.is_index() {
            return Ok((digest, bytes.to_vec()));
        }
        let child = platform::pick(m.manifests.as_deref().unwrap_or(&[]), platform)?;
        digest = child.digest.clone();
        let cr = Reference::with_digest(
            self.r.registry().into(),
            self.r.repository().into(),
            digest.to_string(),
        );
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&cr, auth, MANIFEST_TYPES)
            .await
            .map_err(|e| registry_err(&cr.whole(), e))?;
        let actual = Digest::of_bytes(&bytes);
        if actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("manifest of {}", self.r.whole()),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok((digest, bytes.to_vec()))
    }

    async fn fetch_json_blob(&self, d: &Descriptor) -> Result<()> {
        if d.size > MAX_JSON_BLOB {
            return Err(crate::error::malformed(
                format!("config {}", d.digest),
                "too large",
            ));
        }
        self.fetch_blob(
            d,
            &self
                .progress
                .blob(&format!("config {}", d.digest.short()), d.size),
        )
        .await
    }

    async fn layer(&self, l: &Descriptor, diff_id: Digest) -> Result<()> {
        let bar = self
            .progress
            .blob(&format!("layer {}", l.digest.short()), l.size);
        if self.store.layer_dir(&diff_id).is_dir() {
            bar.set(l.size);
            bar.finish("already present");
            return Ok(());
        }
        self.fetch_blob(l, &bar).await?;
        bar.status("unpacking");
        let store = self.store.clone();
        let blob = l.digest.clone();
        tokio::task::spawn_blocking(move || store.ensure_layer(&blob, &diff_id))
            .await
            .map_err(|e| Error::Unsupported(format!("unpack task: {e}")))??;
        bar.finish("done");
        Ok(())
    }

    /// One blob into the store, once even with concurrent pullers (a lock per
    /// blob), retried on transient errors, resumed from the partial file.
    async fn fetch_blob(&self, d: &Descriptor, bar: &progress::BlobProgress) -> Result<()> {
        let layout = &self.store.layout;
        if layout.has_blob(&d.digest) {
            bar.set(d.size);
            bar.status("already present");
            return Ok(());
        }
        let lock_path = self
            .store
            .lock_path(&format!("blob-{}.lock", d.digest.hex()));
        let _lock = tokio::task::spawn_blocking(move || Lock::exclusive(&lock_path))
            .await
            .map_err(|e| Error::Unsupported(format!("lock task: {e}")))??;
        if layout.has_blob(&d.digest) {
            bar.set(d.size);
            bar.status("already present");
            return Ok(());
        }
        let partial = self
            .store
            .tmp_dir()
            .join(format!("{}.partial", d.digest.hex()));
        let mut attempt = 0;
        loop {
            match self.download(d, &partial, bar).await {
                Ok(()) => return Ok(()),
                Err(e) if transient(&e) && attempt < self.retries => {
                    attempt += 1;
                    warn!(blob = %d.digest, attempt, error = %e, "retrying");
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                }
                Err(e) => {
                    if !transient(&e) {
                        let _ = std::fs::remove_file(&partial);
                    }
                    return Err(e);
                }
            }
        }
    }

    async fn download(
        &self,
        d: &Descriptor,
        partial: &PathBuf,
        bar: &progress::BlobProgress,
    ) -> Result<()> {
        let mut hasher = Hasher::default();
        let offset = match tokio::fs::read(partial).await {
            // Re-hash what an earlier attempt (or a killed pull) left.
            Ok(prev) if (prev.len() as u64) < d.size => {
                hasher.update(&prev);
                prev.len() as u64
            }
            _ => 0,
        };
        let digest = d.digest.to_string();
        let whole = self.r.whole();
        let (stream, resumed) = if offset > 0 {
            debug!(blob = %d.digest, offset, "resuming");
            match self
                .client
                .pull_blob_stream_partial(&self.r, digest.as_str(), offset, None)
                .await
                .map_err(|e| registry_err(&whole, e))?
            {
                BlobResponse::Partial(s) => (s, true),
                BlobResponse::Full(s) => (s, false),
            }
        } else {
            let s = self
                .client
                .pull_blob_stream(&self.r, digest.as_str())
                .await
                .map_err(|e| registry_err(&whole, e))?;
            (s, false)
        };
        if !resumed {
            hasher = Hasher::default();
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(partial)
            .await
            .ctx(|| format!("opening {}", partial.display()))?;
        bar.set(hasher.len());
        bar.status("downloading");
        let mut stream = stream.map_err(|e| {
            registry_err(&whole, oci_client::errors::OciDistributionError::IoError(e))
        });
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            if hasher.len() > d.size {
                let _ = tokio::fs::remove_file(partial).await;
                return Err(crate::error::malformed(
                    format!("blob {}", d.digest),
                    "registry sent more bytes than the manifest says",
                ));
            }
            file.write_all(&chunk)
                .await
                .ctx(|| format!("writing {}", partial.display()))?;
            bar.inc(chunk.len() as u64);
        }
        file.flush().await.ctx(|| "flushing blob".into())?;
        file.sync_all().await.ctx(|| "syncing blob".into())?;
        drop(file);
        let len = hasher.len();
        let actual = hasher.finish();
        if actual != d.digest || len != d.size {
            let _ = tokio::fs::remove_file(partial).await;
            return Err(Error::DigestMismatch {
                what: format!("blob from {whole} ({len} of {} bytes)", d.size),
                expected: d.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let dest = self.store.layout.blob_path(&d.digest);
        tokio::fs::rename(partial, &dest)
            .await
            .ctx(|| format!("storing blob {}", d.digest))?;
        sync_dir(dest.parent().unwrap_or(&self.store.layout.dir))?;
        Ok(())
    }
}
