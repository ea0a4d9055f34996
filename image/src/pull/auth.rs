//! Registry credentials, kept in `<root>/auth.json` (docker's config.json
//! shape: `{"auths": {"host:port": {"auth": base64(user:pass)}}}`), mode 0600.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{json, malformed, IoContext, Result};
use crate::store::layout::atomic_write;
use crate::store::lock::Lock;

#[derive(Serialize, Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    auth: String,
}

pub fn auth_path(root: &Path) -> PathBuf {
    root.join("auth.json")
}

fn read(root: &Path) -> Result<AuthFile> {
    let path = auth_path(root);
    match std::fs::read(&path) {
        Ok(bytes) => json(serde_json::from_slice(&bytes), || {
            path.display().to_string()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthFile::default()),
        Err(e) => Err(e).ctx(|| format!("reading {}", path.display())),
    }
}

fn write(root: &Path, f: &AuthFile) -> Result<()> {
    let bytes = json(serde_json::to_vec_pretty(f), || "auth.json".into())?;
    // NamedTempFile is created 0600, and the rename keeps that mode.
    atomic_write(&root.join("tmp"), &auth_path(root), &bytes)
}

pub fn lookup(root: &Path, registry: &str) -> Result<Option<(String, String)>> {
    let f = read(root)?;
    let Some(e) = f.auths.get(registry) else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&e.auth)
        .map_err(|_| malformed("auth.json", format!("entry for {registry} is not base64")))?;
    let s = String::from_utf8(raw).map_err(|_| malformed("auth.json", "entry is not UTF-8"))?;
    let (u, p) = s.split_once(':').ok_or_else(|| {
        malformed(
            "auth.json",
            format!("entry for {registry} is not user:password"),
        )
    })?;
    Ok(Some((u.to_string(), p.to_string())))
}

pub fn save(root: &Path, registry: &str, user: &str, password: &str) -> Result<()> {
    let _l = Lock::exclusive(&root.join("locks/auth.lock"))?;
    let mut f = read(root)?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    f.auths.insert(registry.to_string(), Entry { auth });
    write(root, &f)
}

pub fn remove(root: &Path, registry: &str) -> Result<bool> {
    let _l = Lock::exclusive(&root.join("locks/auth.lock"))?;
    let mut f = read(root)?;
    let had = f.auths.remove(registry).is_some();
    if had {
        write(root, &f)?;
    }
    Ok(had)
}
