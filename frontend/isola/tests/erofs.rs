//! The vm level's root disk: one EROFS image per image, built once, cached,
//! safe to ask for concurrently, holding the merged layers (whiteouts
//! applied).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{layout_ref, need, sh, text, Env};

#[test]
fn erofs_image_is_built_once_and_holds_the_merged_layers() {
    need("mkfs.erofs");
    let env = Env::new();
    let src = env.path("in.tar");
    sh(&format!(
        "skopeo copy -q {} oci-archive:{}:debian:bookworm",
        layout_ref("debian:bookworm"),
        src.display()
    ));
    env.ok(&["load", "-q", "-i", src.to_str().unwrap()]);
    // The lower layer has usr/share/doc/debconf; the upper one whites it out.
    let layers: Vec<_> = std::fs::read_dir(env.root().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(layers
        .iter()
        .any(|l| l.join("usr/share/doc/debconf").is_dir()));

    // Two at once: both get the same file, built once.
    let children: Vec<_> = (0..2)
        .map(|_| {
            env.isola()
                .args(["image", "erofs", "debian:bookworm"])
                .output()
        })
        .collect();
    let paths: Vec<String> = children
        .into_iter()
        .map(|o| {
            let o = o.unwrap();
            assert!(o.status.success(), "{}", text(&o));
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
        .collect();
    assert_eq!(paths[0], paths[1]);
    let path = Path::new(&paths[0]);
    let ino = std::fs::metadata(path).unwrap().ino();
    assert_eq!(
        env.ok(&["image", "erofs", "debian:bookworm"]).trim(),
        paths[0]
    );
    assert_eq!(
        std::fs::metadata(path).unwrap().ino(),
        ino,
        "rebuilt instead of cached"
    );
    assert_eq!(std::fs::metadata(path).unwrap().mode() & 0o777, 0o444);

    let mnt = env.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    sh(&format!(
        "mount -t erofs -o loop,ro {} {}",
        path.display(),
        mnt.display()
    ));
    let checks = std::panic::catch_unwind(|| {
        assert!(mnt.join("etc/debian_version").is_file());
        assert!(mnt.join("etc/isola-layer").is_file(), "upper layer missing");
        assert!(
            !mnt.join("usr/share/doc/debconf").exists(),
            "whiteout not applied"
        );
        assert!(mnt.join("usr/share/doc").is_dir());
        assert_eq!(
            std::fs::metadata(mnt.join("usr/bin/passwd"))
                .unwrap()
                .mode()
                & 0o4000,
            0o4000,
            "setuid lost"
        );
    });
    sh(&format!("umount {}", mnt.display()));
    if let Err(e) = checks {
        std::panic::resume_unwind(e);
    }
    // No overlay mount leaked into our namespace.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&env.root().display().to_string()),
        "{mounts}"
    );

    // Prune keeps it while the image lives, removes it with the image.
    env.ok(&["image", "prune"]);
    assert!(path.exists());
    env.ok(&["rmi", "debian:bookworm"]);
    assert!(!path.exists());
    env.assert_consistent();
}
