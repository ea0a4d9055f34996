//! An archive read once, front to back (it may be a pipe): every regular
//! file is streamed to a temp file under the store while it is hashed, and
//! links inside the archive are remembered as aliases. Nothing here is ever
//! extracted by its archive path.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read};
use std::path::PathBuf;

use crate::digest::{Digest, HashingWriter};
use crate::error::{malformed, Error, IoContext, Result};
use crate::store::layout::{Layout, MAX_JSON_BLOB};
use crate::unpack::tar_safe::clean_path;

pub struct Staged {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

pub struct Staging {
    pub dir: tempfile::TempDir,
    files: HashMap<String, Staged>,
    aliases: HashMap<String, String>,
}

fn key(raw: &[u8]) -> Result<String> {
    let comps = clean_path(raw)?;
    Ok(comps
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/"))
}

impl Staging {
    pub fn read(reader: impl Read, tmp: &std::path::Path) -> Result<Staging> {
        let dir = tempfile::Builder::new()
            .prefix(".load-")
            .tempdir_in(tmp)
            .ctx(|| "creating staging dir".into())?;
        let mut st = Staging {
            dir,
            files: HashMap::new(),
            aliases: HashMap::new(),
        };
        let mut archive = tar::Archive::new(reader);
        let entries = archive
            .entries()
            .map_err(|e| malformed("archive", e.to_string()))?;
        for (n, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|e| malformed("archive", e.to_string()))?;
            let k = key(&entry.path_bytes())?;
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let path = st.dir.path().join(format!("f{n}"));
                    let file = File::create(&path).ctx(|| "staging archive entry".into())?;
                    let mut w = HashingWriter::new(BufWriter::new(file));
                    io::copy(&mut entry, &mut w).ctx(|| format!("reading {k} from the archive"))?;
                    let HashingWriter { inner, hasher } = w;
                    inner
                        .into_inner()
                        .map_err(|e| e.into_error())
                        .ctx(|| "staging archive entry".into())?;
                    let size = hasher.len();
                    st.files.insert(
                        k,
                        Staged {
                            path,
                            digest: hasher.finish(),
                            size,
                        },
                    );
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|b| b.into_owned())
                        .unwrap_or_default();
                    let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                        // Relative to the link's directory (old docker save
                        // links duplicate layers as ../<id>/layer.tar).
                        let base = k.rsplit_once('/').map_or("", |(d, _)| d);
                        let joined = format!("{base}/{}", String::from_utf8_lossy(&target));
                        normalize_dots(&joined).ok_or_else(|| {
                            malformed("archive", format!("link {k} leaves the archive"))
                        })?
                    } else {
                        key(&target)?
                    };
                    st.aliases.insert(k, resolved);
                }
                _ => {}
            }
        }
        Ok(st)
    }

    pub fn get(&self, name: &str) -> Result<&Staged> {
        let mut k = name.trim_start_matches("./").to_string();
        for _ in 0..16 {
            if let Some(s) = self.files.get(&k) {
                return Ok(s);
            }
            match self.aliases.get(&k) {
                Some(t) => k = t.clone(),
                None => break,
            }
        }
        Err(malformed("archive", format!("{name} is missing")))
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_ok()
    }

    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<(T, Vec<u8>, &Staged)> {
        let s = self.get(name)?;
        if s.size > MAX_JSON_BLOB {
            return Err(malformed("archive", format!("{name} is too large")));
        }
        let bytes = std::fs::read(&s.path).ctx(|| format!("reading {name}"))?;
        let v = crate::error::json(serde_json::from_slice(&bytes), || {
            format!("{name} in the archive")
        })?;
        Ok((v, bytes, s))
    }

    /// Moves a staged file into the store's blobs, checking it is `expected`.
    pub fn import_blob(
        &self,
        name: &str,
        expected: Option<&Digest>,
        layout: &Layout,
    ) -> Result<Digest> {
        let s = self.get(name)?;
        if let Some(d) = expected {
            if *d != s.digest {
                return Err(Error::DigestMismatch {
                    what: format!("{name} in the archive"),
                    expected: d.to_string(),
                    actual: s.digest.to_string(),
                });
            }
        }
        if !layout.has_blob(&s.digest) {
            // Hashed while staged: renamed into place, not copied again.
            layout.adopt(&s.path, &s.digest)?;
        }
        Ok(s.digest.clone())
    }
}

/// Resolves `.` and `..` textually; None if it climbs above the top.
fn normalize_dots(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}
