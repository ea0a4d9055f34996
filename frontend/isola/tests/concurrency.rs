//! Two `isola pull`s of one image into one store at the same time.

mod common;

use std::collections::HashSet;

use common::{layout_ref, text, Env, Registry};

#[test]
fn concurrent_pulls_store_each_blob_once() {
    let reg = Registry::http();
    reg.push(&layout_ref("debian:bookworm"), "debian:bookworm");
    let env = Env::new();
    let img = format!("{}/debian:bookworm", reg.host());
    let children: Vec<_> = (0..2)
        .map(|_| {
            env.isola()
                .args(["pull", "-q", "--tls-verify=false", &img])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ids: HashSet<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", text(&out));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "both pulls name the same image: {ids:?}");
    // manifest + config + 2 layers, nothing else (no duplicates, no partials).
    assert_eq!(env.blob_count(), 4);
    assert_eq!(
        std::fs::read_dir(env.root().join("layers"))
            .unwrap()
            .count(),
        2
    );
    assert_eq!(
        std::fs::read_dir(env.root().join("tmp")).unwrap().count(),
        0
    );
    assert_eq!(env.ok(&["images", "-q"]).lines().count(), 1);
    env.assert_consistent();
}
