//! `isola pull` of a multi-platform image (an OCI image index) from the
//! loopback registry: linux/amd64 by default, `--platform` for another, a
//! clear error for a platform the index lacks.

mod common;

use std::path::Path;

use common::{layout_ref, sh, Env, Registry};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// Writes `bytes` as a blob of the OCI layout at `dir`; returns its digest.
fn put_blob(dir: &Path, bytes: &[u8]) -> String {
    let hex = hex::encode(Sha256::digest(bytes));
    std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
    format!("sha256:{hex}")
}

fn get_blob(dir: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap()
}

/// Makes an OCI layout holding an index of two manifests over busybox's
/// layers: the real linux/amd64 one and a linux/arm64 twin (its config says
/// arm64). Returns (layout dir, amd64 manifest digest, arm64 manifest digest).
fn multi_platform_layout(env: &Env) -> (std::path::PathBuf, String, String) {
    let dir = env.path("multi");
    sh(&format!(
        "skopeo copy -q {} oci:{}:single",
        layout_ref("busybox:latest"),
        dir.display()
    ));
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let amd = index["manifests"][0].clone();
    let amd_digest = amd["digest"].as_str().unwrap().to_string();
    let mut manifest: Value = serde_json::from_slice(&get_blob(&dir, &amd_digest)).unwrap();
    let mut config: Value = serde_json::from_slice(&get_blob(
        &dir,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    config["architecture"] = json!("arm64");
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = json!(put_blob(&dir, &config_bytes));
    manifest["config"]["size"] = json!(config_bytes.len());
    let arm_bytes = serde_json::to_vec(&manifest).unwrap();
    let arm_digest = put_blob(&dir, &arm_bytes);
    let media = "application/vnd.oci.image.manifest.v1+json";
    let image_index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": media, "digest": arm_digest, "size": arm_bytes.len(),
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": media, "digest": amd_digest, "size": amd["size"],
             "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    });
    let index_bytes = serde_json::to_vec(&image_index).unwrap();
    let index_digest = put_blob(&dir, &index_bytes);
    let layout_index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest, "size": index_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"}
        }]
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&layout_index).unwrap(),
    )
    .unwrap();
    (dir, amd_digest, arm_digest)
}

#[test]
fn pull_picks_the_platform_from_an_image_index() {
    let reg = Registry::http();
    let env = Env::new();
    let (dir, amd, arm) = multi_platform_layout(&env);
    sh(&format!(
        "skopeo copy -q --all --preserve-digests --dest-tls-verify=false oci:{}:multi docker://{}/multi:1",
        dir.display(),
        reg.host()
    ));
    let img = format!("{}/multi:1", reg.host());

    env.ok(&["pull", "-q", "--tls-verify=false", &img]);
    assert_eq!(
        env.inspect(&img)["Digest"].as_str().unwrap(),
        amd,
        "linux/amd64 by default"
    );

    let other = Env::new();
    other.ok(&[
        "pull",
        "-q",
        "--tls-verify=false",
        "--platform",
        "linux/arm64",
        &img,
    ]);
    assert_eq!(
        other.inspect(&img)["Digest"].as_str().unwrap(),
        arm,
        "--platform linux/arm64"
    );

    let none = Env::new();
    let err = none.fails(&[
        "pull",
        "-q",
        "--tls-verify=false",
        "--platform",
        "linux/s390x",
        &img,
    ]);
    assert!(
        err.contains("s390x"),
        "the missing platform is named: {err}"
    );
    assert!(
        none.ok(&["images", "-q"]).trim().is_empty(),
        "nothing stored after a refused pull"
    );
    env.assert_consistent();
    other.assert_consistent();
}
