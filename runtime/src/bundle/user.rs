//! `--user` resolved against the image's own /etc/passwd and /etc/group,
//! as docker does. The files are read with openat2(RESOLVE_IN_ROOT), so a
//! hostile image whose /etc/passwd is a symlink to a host file reads its own
//! tree, never the host's.

use std::io::Read;
use std::path::Path;

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};

/// The numbers a user string stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Resolves `user` (`name`, `uid`, `name:group`, `uid:gid`, or empty for
/// root) inside `rootfs`.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ResolvedUser, String> {
    let passwd = read_in_root(rootfs, "etc/passwd");
    let group = read_in_root(rootfs, "etc/group");
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let entry = passwd
        .lines()
        .filter_map(PasswdEntry::parse)
        .find(|e| e.name == user_part || user_part.parse::<u32>().is_ok_and(|uid| uid == e.uid));
    let (uid, mut gid, name, home) = match (entry, user_part.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name.to_string()), e.home.to_string()),
        (None, Ok(uid)) => (uid, 0, None, "/".to_string()),
        (None, Err(_)) => {
            return Err(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            ))
        }
    };
    let groups: Vec<GroupEntry> = group.lines().filter_map(GroupEntry::parse).collect();
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match (groups.iter().find(|e| e.name == g), g.parse::<u32>()) {
            (_, Ok(n)) => n,
            (Some(e), Err(_)) => e.gid,
            (None, Err(_)) => {
                return Err(format!(
                    "unable to find group {g}: no matching entries in group file"
                ))
            }
        };
    }
    let mut additional_gids: Vec<u32> = match (&name, group_part) {
        // docker adds the user's supplementary groups only when no group is forced.
        (Some(name), None) => groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == name))
            .map(|g| g.gid)
            .filter(|g| *g != gid)
            .collect(),
        _ => Vec::new(),
    };
    additional_gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// Reads a small file of the image, resolving every path component inside
/// `rootfs`; a missing or unreadable file reads as empty.
fn read_in_root(rootfs: &Path, path: &str) -> String {
    let Ok(root) = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return String::new();
    };
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let Ok(fd) = openat2(
        &root,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    ) else {
        return String::new();
    };
    let mut text = String::new();
    // 1 MiB is far beyond any real passwd file; a bigger one is truncated.
    let _ = std::fs::File::from(fd)
        .take(1 << 20)
        .read_to_string(&mut text);
    text
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

impl<'a> PasswdEntry<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    }
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

impl<'a> GroupEntry<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn rootfs(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("isola-user-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("etc")).unwrap();
        fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n",
        )
        .unwrap();
        fs::write(
            dir.join("etc/group"),
            "root:x:0:\nwww:x:33:\nstaff:x:50:www,other\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn docker_user_forms() {
        let root = rootfs("forms");
        let r = |u: &str| resolve_user(&root, u);
        assert_eq!(
            r("").unwrap(),
            ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
                home: "/root".into()
            }
        );
        assert_eq!(
            r("www").unwrap(),
            ResolvedUser {
                uid: 33,
                gid: 33,
                additional_gids: vec![50],
                home: "/var/www".into()
            }
        );
        assert_eq!(r("33").unwrap().home, "/var/www");
        assert_eq!(
            r("1234").unwrap(),
            ResolvedUser {
                uid: 1234,
                gid: 0,
                additional_gids: vec![],
                home: "/".into()
            }
        );
        assert_eq!(r("www:staff").unwrap().gid, 50);
        assert_eq!(r("1000:1000").unwrap().gid, 1000);
        assert!(r("nobody")
            .unwrap_err()
            .contains("unable to find user nobody"));
        assert!(r("www:nogroup")
            .unwrap_err()
            .contains("unable to find group"));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_symlinked_passwd_cannot_read_the_host() {
        let root = rootfs("symlink");
        fs::remove_file(root.join("etc/passwd")).unwrap();
        let host = std::env::temp_dir().join(format!("isola-host-passwd-{}", std::process::id()));
        fs::write(&host, "evil:x:4242:4242::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(&host, root.join("etc/passwd")).unwrap();
        // Resolved inside the rootfs, the link's target does not exist.
        assert!(resolve_user(&root, "evil").is_err());
        fs::remove_dir_all(&root).unwrap();
        fs::remove_file(&host).unwrap();
    }
}
