//! Which host directories the command sees read-write, and where the project's binaries are.
//!
//! The host's `/` is visible read-only anyway; the work tree (and any `--share`) is mounted
//! read-write over it at the same path.

use std::path::{Path, PathBuf};

use crate::spec::Share;

/// The target triple the project builds for (see `.cargo/config.toml`).
pub const TARGET_TRIPLE: &str = "x86_64-unknown-linux-gnu";

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{path}")]
    Path {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a directory")]
    NotADir(PathBuf),
    #[error("refusing to share / read-write; run from the work tree or pass --workdir")]
    Root,
}

/// The nearest ancestor of `cwd` (itself included) that holds `.git` or a Cargo workspace
/// manifest; `cwd` itself if there is none.
pub fn find_worktree(cwd: &Path) -> PathBuf {
    for dir in cwd.ancestors() {
        if dir.join(".git").exists() || is_workspace_root(dir) {
            return dir.to_path_buf();
        }
    }
    cwd.to_path_buf()
}

fn is_workspace_root(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|toml| toml.lines().any(|l| l.trim() == "[workspace]"))
}

/// The read-write shares for these directories: canonical, without `/`, without one that
/// lies inside another (it is shared through its parent), sorted so parents come first,
/// tagged `share0`, `share1`, ...
pub fn shares(dirs: &[PathBuf]) -> Result<Vec<Share>, LayoutError> {
    let mut canon = Vec::new();
    for dir in dirs {
        let c = std::fs::canonicalize(dir).map_err(|source| LayoutError::Path {
            path: dir.clone(),
            source,
        })?;
        if !c.is_dir() {
            return Err(LayoutError::NotADir(c));
        }
        if c == Path::new("/") {
            return Err(LayoutError::Root);
        }
        canon.push(c);
    }
    Ok(minimal_shares(canon))
}

/// The pure part of [`shares`]: drop duplicates and nested paths, sort, tag.
pub fn minimal_shares(mut dirs: Vec<PathBuf>) -> Vec<Share> {
    dirs.sort();
    dirs.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for d in dirs {
        if !kept.iter().any(|k| d.starts_with(k)) {
            kept.push(d);
        }
    }
    kept.into_iter()
        .enumerate()
        .map(|(i, path)| Share {
            tag: format!("share{i}"),
            path,
        })
        .collect()
}

/// The target directory: `$CARGO_TARGET_DIR` (relative to the work tree) or `<worktree>/target`.
pub fn target_dir(worktree: &Path, cargo_target_dir: Option<&Path>) -> PathBuf {
    match cargo_target_dir {
        Some(t) if t.is_absolute() => t.to_path_buf(),
        Some(t) => worktree.join(t),
        None => worktree.join("target"),
    }
}

/// Directories put in front of PATH: the project's release and debug binaries.
pub fn binary_dirs(target_dir: &Path) -> Vec<PathBuf> {
    let triple = target_dir.join(TARGET_TRIPLE);
    vec![triple.join("release"), triple.join("debug")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_duplicate_shares_collapse() {
        let shares = minimal_shares(vec![
            "/work/main/sub".into(),
            "/work/main".into(),
            "/srv/data".into(),
            "/work/main".into(),
            "/work/mainline".into(),
        ]);
        let got: Vec<_> = shares
            .iter()
            .map(|s| (s.tag.as_str(), s.path.to_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("share0", "/srv/data"),
                ("share1", "/work/main"),
                ("share2", "/work/mainline")
            ]
        );
    }

    #[test]
    fn root_is_refused() {
        assert!(matches!(shares(&["/".into()]), Err(LayoutError::Root)));
    }

    #[test]
    fn worktree_is_found_upwards() {
        let base = std::env::temp_dir().join(format!("isola-th-layout-{}", std::process::id()));
        let deep = base.join("wt/a/b");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(base.join("wt/Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        assert_eq!(find_worktree(&deep), base.join("wt"));
        std::fs::remove_file(base.join("wt/Cargo.toml")).unwrap();
        std::fs::create_dir(base.join("wt/a/.git")).unwrap();
        assert_eq!(find_worktree(&deep), base.join("wt/a"));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn binaries_and_target_dir() {
        let wt = Path::new("/work/main");
        assert_eq!(target_dir(wt, None), Path::new("/work/main/target"));
        assert_eq!(
            target_dir(wt, Some(Path::new("t2"))),
            Path::new("/work/main/t2")
        );
        assert_eq!(target_dir(wt, Some(Path::new("/x"))), Path::new("/x"));
        assert_eq!(
            binary_dirs(Path::new("/work/main/target")),
            [
                PathBuf::from("/work/main/target/x86_64-unknown-linux-gnu/release"),
                PathBuf::from("/work/main/target/x86_64-unknown-linux-gnu/debug"),
            ]
        );
    }
}
