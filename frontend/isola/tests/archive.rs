//! Round trips through archives: skopeo-made docker-archive and oci-archive
//! → `isola load` → `isola save` → `skopeo inspect`; the store itself read
//! by skopeo; tag, rmi, prune.

mod common;

use common::{layout_ref, need, sh, Env};

fn diff_ids(v: &serde_json::Value) -> Vec<String> {
    v["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn docker_archive_round_trip() {
    need("skopeo");
    let env = Env::new();
    let src = env.path("in.tar");
    sh(&format!(
        "skopeo copy -q {} docker-archive:{}:debian:bookworm",
        layout_ref("debian:bookworm"),
        src.display()
    ));
    // From stdin, as `docker save | isola load` would.
    let out = env
        .isola()
        .args(["load"])
        .stdin(std::fs::File::open(&src).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("Loaded image: docker.io/library/debian:bookworm"));
    let loaded = env.inspect("debian:bookworm");

    let saved = env.path("out.tar");
    env.ok(&["save", "-o", saved.to_str().unwrap(), "debian:bookworm"]);
    let v: serde_json::Value = serde_json::from_str(&sh(&format!(
        "skopeo inspect --config docker-archive:{}",
        saved.display()
    )))
    .unwrap();
    let skopeo_diff_ids: Vec<String> = v["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert_eq!(skopeo_diff_ids, diff_ids(&loaded));

    // And back in: the same image ID.
    let env2 = Env::new();
    env2.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert_eq!(env2.inspect("debian:bookworm")["Id"], loaded["Id"]);
    env.assert_consistent();
    env2.assert_consistent();
}

#[test]
fn oci_archive_round_trip_and_skopeo_reads_the_store() {
    need("skopeo");
    let env = Env::new();
    let src = env.path("in.tar");
    sh(&format!(
        "skopeo copy -q {} oci-archive:{}:busybox:latest",
        layout_ref("busybox:latest"),
        src.display()
    ));
    env.ok(&["load", "-i", src.to_str().unwrap()]);
    let want = sh(&format!(
        "skopeo inspect --raw {} | sha256sum",
        layout_ref("busybox:latest")
    ));
    let v = env.inspect("busybox");
    assert_eq!(
        v["Digest"].as_str().unwrap(),
        format!("sha256:{}", want.split_whitespace().next().unwrap())
    );

    let saved = env.path("out.tar");
    env.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        saved.to_str().unwrap(),
        "busybox",
    ]);
    let s: serde_json::Value = serde_json::from_str(&sh(&format!(
        "skopeo inspect oci-archive:{}",
        saved.display()
    )))
    .unwrap();
    assert_eq!(s["Digest"], v["Digest"]);

    // The store is an OCI layout skopeo reads as it is.
    let s: serde_json::Value = serde_json::from_str(&sh(&format!(
        "skopeo inspect oci:{}/oci:docker.io/library/busybox:latest",
        env.root().display()
    )))
    .unwrap();
    assert_eq!(s["Digest"], v["Digest"]);
    env.assert_consistent();
}

#[test]
fn tag_rmi_and_prune() {
    let env = Env::new();
    let src = env.path("in.tar");
    sh(&format!(
        "skopeo copy -q {} oci-archive:{}:busybox:latest",
        layout_ref("busybox:latest"),
        src.display()
    ));
    env.ok(&["load", "-i", src.to_str().unwrap()]);
    let id = env.inspect("busybox")["Id"].as_str().unwrap().to_string();
    env.ok(&["tag", "busybox", "example.org/me/bb:v1"]);
    let v = env.inspect("example.org/me/bb:v1");
    assert_eq!(v["Id"].as_str().unwrap(), id);
    // By a unique ID prefix, too.
    assert_eq!(env.inspect(&id[7..15])["Id"].as_str().unwrap(), id);
    // Two names: removing by ID needs --force; by name just untags.
    env.fails(&["rmi", &id[7..19]]);
    let out = env.ok(&["rmi", "example.org/me/bb:v1"]);
    assert!(out.contains("Untagged"), "{out}");
    assert!(env.root().join("layers").read_dir().unwrap().count() == 1);
    env.ok(&["rmi", "busybox"]);
    assert_eq!(env.ok(&["images", "-q"]).trim(), "");
    // rmi collected the garbage already; prune has nothing left to do.
    assert_eq!(env.blob_count(), 0);
    assert_eq!(env.root().join("layers").read_dir().unwrap().count(), 0);
    let out = env.ok(&["image", "prune"]);
    assert!(out.contains("Removed 0 blobs"), "{out}");
    env.fails(&["image", "inspect", "busybox"]);
    env.assert_consistent();
}
