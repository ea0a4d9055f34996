//! Hostile images are refused with a clear error, nothing is written outside
//! the store, no image or layer is left half-made, and the store stays
//! consistent.

mod common;

use std::io::Write;

use common::{layout_ref, sh, Env};
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// A raw tar entry; path and link go into the header unchecked.
fn entry(out: &mut Vec<u8>, path: &str, kind: EntryType, data: &[u8], link: &str) {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn layer(entries: &[(&str, EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut t = Vec::new();
    for (p, k, d, l) in entries {
        entry(&mut t, p, *k, d, l);
    }
    t.extend_from_slice(&[0u8; 1024]);
    t
}

fn add(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, path, data).unwrap();
}

/// A docker-archive with one image of `layers` (blob bytes, diff_id).
fn docker_archive(layers: &[(Vec<u8>, String)]) -> Vec<u8> {
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.1.clone()).collect::<Vec<_>>()},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    add(&mut b, "config.json", &config);
    let mut paths = Vec::new();
    for (i, (blob, _)) in layers.iter().enumerate() {
        let p = format!("l{i}/layer.tar");
        add(&mut b, &p, blob);
        paths.push(p);
    }
    let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": ["evil:latest"], "Layers": paths}]);
    add(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.into_inner().unwrap()
}

fn plain(t: Vec<u8>) -> (Vec<u8>, String) {
    let d = sha(&t);
    (t, d)
}

/// Loads `archive` into a fresh store and checks the aftermath.
fn refused(archive: &[u8], expect: &str) -> Env {
    let env = Env::new();
    let path = env.path("evil.tar");
    std::fs::write(&path, archive).unwrap();
    std::fs::create_dir(env.path("outside")).unwrap();
    let err = env.fails(&["load", "-i", path.to_str().unwrap()]);
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
    assert_eq!(
        std::fs::read_dir(env.path("outside")).unwrap().count(),
        0,
        "wrote outside the store"
    );
    assert_eq!(
        env.ok(&["images", "-q"]).trim(),
        "",
        "an image was left behind"
    );
    assert_eq!(
        std::fs::read_dir(env.root().join("layers"))
            .unwrap()
            .count(),
        0,
        "a layer was left behind"
    );
    env.assert_consistent();
    env
}

#[test]
fn escapes_are_refused() {
    let outside = "../../outside";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            layer(&[("../../outside/x", EntryType::Regular, b"x", "")]),
        ),
        (
            "absolute",
            layer(&[("/tmp/isola-malicious-abs", EntryType::Regular, b"x", "")]),
        ),
        (
            "symlink write-through",
            layer(&[
                ("s", EntryType::Symlink, b"", outside),
                ("s/x", EntryType::Regular, b"x", ""),
            ]),
        ),
        (
            "absolute symlink write-through",
            layer(&[
                ("etc", EntryType::Symlink, b"", "/etc"),
                ("etc/isola-pwned", EntryType::Regular, b"x", ""),
            ]),
        ),
        (
            "hard link out",
            layer(&[("h", EntryType::Link, b"", "../../outside/x")]),
        ),
        (
            "hard link to host file",
            layer(&[("h", EntryType::Link, b"", "/etc/passwd")]),
        ),
        (
            "hard link through symlink",
            layer(&[
                ("e", EntryType::Symlink, b"", "/etc"),
                ("h", EntryType::Link, b"", "e/passwd"),
            ]),
        ),
    ];
    for (name, l) in cases {
        eprintln!("case: {name}");
        refused(&docker_archive(&[plain(l)]), "unsafe layer entry");
    }
    assert!(!std::path::Path::new("/tmp/isola-malicious-abs").exists());
    assert!(!std::path::Path::new("/etc/isola-pwned").exists());
}

#[test]
fn a_symlink_from_a_lower_layer_is_not_followed_by_an_upper_one() {
    // Layer 1 links `d` to the host's /tmp; layer 2 writes `d/x`. Each layer
    // is unpacked in its own directory, so `d/x` lands in layer 2's own `d`.
    let env = Env::new();
    let a = docker_archive(&[
        plain(layer(&[("d", EntryType::Symlink, b"", "/tmp")])),
        plain(layer(&[
            ("d/", EntryType::Directory, b"", ""),
            ("d/isola-lower-link", EntryType::Regular, b"x", ""),
        ])),
    ]);
    let path = env.path("a.tar");
    std::fs::write(&path, a).unwrap();
    env.ok(&["load", "-i", path.to_str().unwrap()]);
    assert!(!std::path::Path::new("/tmp/isola-lower-link").exists());
    env.assert_consistent();
}

#[test]
fn diff_id_mismatch_is_refused() {
    let l = layer(&[("a", EntryType::Regular, b"x", "")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&l).unwrap();
    let blob = gz.finish().unwrap();
    refused(
        &docker_archive(&[(blob, sha(b"something else"))]),
        "digest mismatch",
    );
    // Uncompressed: caught before unpacking, against the blob itself.
    refused(
        &docker_archive(&[(l, sha(b"something else"))]),
        "digest mismatch",
    );
}

#[test]
fn sparse_bomb_is_bounded() {
    let env = Env::new();
    let d = env.path("bomb");
    std::fs::create_dir(&d).unwrap();
    // GNU tar stores a 10 GiB hole in a few bytes; gzip shrinks it further.
    sh(&format!(
        "cd {} && truncate -s 10G bomb && tar --sparse -cf layer.tar bomb && gzip -k layer.tar",
        d.display()
    ));
    let tar = std::fs::read(d.join("layer.tar")).unwrap();
    let gz = std::fs::read(d.join("layer.tar.gz")).unwrap();
    assert!(gz.len() < 1 << 20);
    refused(
        &docker_archive(&[(gz, sha(&tar))]),
        "exceeds the unpack limit",
    );
}

/// An oci-archive of busybox with one blob rewritten by `f`.
fn tampered(f: impl Fn(&std::path::Path, &str)) -> Vec<u8> {
    let env = Env::new();
    let dir = env.path("layout");
    sh(&format!(
        "skopeo copy -q {} oci:{}:busybox:latest",
        layout_ref("busybox:latest"),
        dir.display()
    ));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(&m)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    f(&dir.join("blobs/sha256"), &layer);
    sh(&format!("cd {} && tar cf ../out.tar .", dir.display()));
    std::fs::read(env.path("out.tar")).unwrap()
}

#[test]
fn bad_and_truncated_blobs_are_refused() {
    let bad = tampered(|blobs, layer| {
        let p = blobs.join(layer);
        let mut b = std::fs::read(&p).unwrap();
        let n = b.len() / 2;
        b[n] ^= 0xff;
        std::fs::write(p, b).unwrap();
    });
    refused(&bad, "digest mismatch");
    let truncated = tampered(|blobs, layer| {
        let p = blobs.join(layer);
        let b = std::fs::read(&p).unwrap();
        std::fs::write(p, &b[..b.len() / 3]).unwrap();
    });
    refused(&truncated, "digest mismatch");
}
