//! docker's 127 and 126: the container's program is looked up in the image
//! before anything starts, through openat2(RESOLVE_IN_ROOT) so that the
//! image's symlinks resolve inside it.

use std::path::Path;

use rustix::fs::{fstat, openat2, FileType, Mode, OFlags, ResolveFlags};

/// Why a program cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unrunnable {
    /// docker exit 127.
    NotFound(String),
    /// docker exit 126.
    NotExecutable(String),
}

/// Checks `program` as `execvp` in the container would find it: a name
/// with a `/` is taken as is (relative to `cwd`), else each `PATH` entry.
pub fn check_executable(
    rootfs: &Path,
    program: &str,
    path_env: &str,
    cwd: &str,
) -> Result<(), Unrunnable> {
    let candidates: Vec<String> = if program.contains('/') {
        if program.starts_with('/') {
            vec![program.to_string()]
        } else {
            vec![format!("{}/{program}", cwd.trim_end_matches('/'))]
        }
    } else {
        path_env
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{program}", d.trim_end_matches('/')))
            .collect()
    };
    let Ok(root) = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return Ok(()); // no rootfs to check against: let the runner report
    };
    let mut found_unexecutable = false;
    for candidate in &candidates {
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let Ok(fd) = openat2(
            &root,
            candidate.trim_start_matches('/'),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        ) else {
            continue;
        };
        let Ok(stat) = fstat(&fd) else { continue };
        let is_file = FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile;
        if is_file && stat.st_mode & 0o111 != 0 {
            return Ok(());
        }
        found_unexecutable = true;
    }
    if found_unexecutable {
        Err(Unrunnable::NotExecutable(format!(
            "{program}: permission denied"
        )))
    } else if program.contains('/') {
        Err(Unrunnable::NotFound(format!(
            "{program}: no such file or directory"
        )))
    } else {
        Err(Unrunnable::NotFound(format!(
            "{program}: executable file not found in $PATH"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn finds_runs_and_refuses() {
        let root = std::env::temp_dir().join(format!("isola-exe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            root.join("bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(root.join("bin/data"), "x").unwrap();
        std::os::unix::fs::symlink("/bin/tool", root.join("bin/link")).unwrap();
        let check = |p: &str| check_executable(&root, p, "/usr/bin:/bin", "/");
        assert_eq!(check("tool"), Ok(()));
        assert_eq!(check("/bin/tool"), Ok(()));
        assert_eq!(check("link"), Ok(()));
        assert!(matches!(check("data"), Err(Unrunnable::NotExecutable(_))));
        assert!(matches!(check("missing"), Err(Unrunnable::NotFound(_))));
        assert!(matches!(check("/bin"), Err(Unrunnable::NotExecutable(_))));
        assert!(matches!(check("./nothing"), Err(Unrunnable::NotFound(_))));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
