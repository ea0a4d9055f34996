//! `isola pull` against Debian's docker-registry on loopback: plain HTTP,
//! TLS with a self-signed CA, htpasswd basic auth and `isola login`.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{layout_ref, Env, Registry};

#[test]
fn pull_over_http_matches_the_registry_digest_for_digest() {
    let reg = Registry::http();
    reg.push(&layout_ref("debian:bookworm"), "debian:bookworm");
    reg.push(&layout_ref("busybox:latest"), "tools/busybox:1");
    let env = Env::new();
    let img = format!("{}/debian:bookworm", reg.host());

    // HTTPS is the default: a plain-HTTP registry is refused without the flag.
    let err = env.fails(&["pull", "-q", &img]);
    assert!(err.contains("pulling"), "{err}");

    env.ok(&["pull", "--tls-verify=false", &img]);
    let v = env.inspect(&img);
    assert_eq!(v["Digest"].as_str().unwrap(), reg.digest("debian:bookworm"));
    assert_eq!(v["RepoTags"][0].as_str().unwrap(), img);
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    let bb = format!("{}/tools/busybox:1", reg.host());
    env.ok(&["pull", "-q", "--tls-verify=false", &bb]);
    assert_eq!(
        env.inspect(&bb)["Digest"].as_str().unwrap(),
        reg.digest("tools/busybox:1")
    );

    // Pulling by digest resolves to the same image.
    let by_digest = format!("{}/debian@{}", reg.host(), reg.digest("debian:bookworm"));
    env.ok(&["pull", "-q", "--tls-verify=false", &by_digest]);

    // A second pull refetches nothing.
    let out = env
        .isola()
        .args(["pull", "--tls-verify=false", &img])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(!err.contains("downloading"), "{err}");
    assert!(err.contains("already present"), "{err}");

    let list = env.ok(&["images"]);
    assert!(
        list.contains(&format!("{}/debian", reg.host())) && list.contains("bookworm"),
        "{list}"
    );
    env.assert_consistent();
}

#[test]
fn pull_over_tls_with_basic_auth_and_login() {
    let reg = Registry::start(true, Some(("alice", "s3cret")));
    reg.push(&layout_ref("busybox:latest"), "busybox:latest");
    let env = Env::new();
    let img = format!("{}/busybox:latest", reg.host());
    let ca = reg.ca_dir();
    let ca = ca.to_str().unwrap();

    // Unknown CA without --cert-dir: refused.
    env.fails(&["pull", "-q", &img]);
    // Known CA, no credentials: refused by the registry.
    env.fails(&["pull", "-q", "--cert-dir", ca, &img]);
    // Wrong password: login refuses and stores nothing.
    let err = env.fails(&[
        "login",
        "--cert-dir",
        ca,
        "-u",
        "alice",
        "-p",
        "wrong",
        &reg.host(),
    ]);
    assert!(err.contains("refused"), "{err}");
    assert!(!env.root().join("auth.json").exists());

    env.ok(&[
        "login",
        "--cert-dir",
        ca,
        "-u",
        "alice",
        "-p",
        "s3cret",
        &reg.host(),
    ]);
    let mode = std::fs::metadata(env.root().join("auth.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    env.ok(&["pull", "-q", "--cert-dir", ca, &img]);
    assert_eq!(
        env.inspect(&img)["Digest"].as_str().unwrap(),
        reg.digest("busybox:latest")
    );

    // --tls-verify=false accepts the self-signed chain without the CA.
    let env2 = Env::new();
    env2.ok(&[
        "pull",
        "-q",
        "--tls-verify=false",
        "--creds",
        "alice:s3cret",
        &img,
    ]);

    env.ok(&["logout", &reg.host()]);
    env.ok(&["rmi", &img]);
    env.fails(&["pull", "-q", "--cert-dir", ca, &img]);
    env.assert_consistent();
}
