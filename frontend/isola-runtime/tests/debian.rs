//! A debootstrapped Debian image (images/build.sh's `debian:bookworm`),
//! unpacked by umoci into a bundle whose config.json umoci wrote: a
//! real-world config, not ours.

mod common;

use std::path::Path;
use std::process::Command;

use common::{run, Bundle, Env};
use serde_json::json;

#[test]
fn debian_bookworm_from_its_image() {
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/images/oci");
    assert!(
        layout.join("index.json").exists(),
        "{} missing: run images/build.sh (./build.sh does); this test must not be skipped",
        layout.display()
    );
    let env = Env::new("debian");
    let id = env.id("c");
    let dir = env.dir.join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:debian:bookworm", layout.display()))
        .arg(&dir)
        .output()
        .expect("umoci is not installed (apt-get install umoci)");
    assert!(
        out.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.join("config.json")).expect("umoci's config.json");
    let mut b = Bundle {
        dir,
        config: serde_json::from_str(&text).expect("config is JSON"),
    };
    b.set(
        "/process/args",
        json!(["/bin/bash", "-c", "cat /etc/debian_version; dpkg-query -W -f '${Version}\\n' libc6 >/dev/null && echo dpkg-ok; id -un"]),
    );
    b.set("/process/terminal", json!(false));
    b.set("/linux/cgroupsPath", json!(format!("/isola-test/{id}")));
    let (code, out, err) = run(&env, &id, &b, b"");
    assert_eq!(code, 0, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.first().is_some_and(|v| v.starts_with("12.")), "{out}");
    assert_eq!(&lines[1..], ["dpkg-ok", "root"], "{out}");
}
