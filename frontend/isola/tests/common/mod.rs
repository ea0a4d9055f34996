//! Shared by the `isola` integration tests: the binary, a store per test,
//! the lead's test images, and a real registry on loopback.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const ISOLA: &str = env!("CARGO_BIN_EXE_isola");

/// The OCI layout images/build.sh makes (busybox:latest, debian:bookworm).
pub fn images_layout() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/images/oci");
    assert!(
        p.join("index.json").is_file(),
        "{} is missing: run images/build.sh (./build.sh does) before the tests",
        p.display()
    );
    p
}

pub fn need(tool: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{tool} is not installed (./build.sh installs it); this test cannot run without it"
    );
}

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::Builder::new()
                .prefix("isola-test-")
                .tempdir()
                .unwrap(),
        }
    }
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn isola(&self) -> Command {
        let mut c = Command::new(ISOLA);
        c.arg("--root").arg(self.root());
        c
    }
    /// Runs isola with `args`, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.isola().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "isola {args:?} failed:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// Runs isola with `args`, asserting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.isola().args(args).output().unwrap();
        assert!(
            !out.status.success(),
            "isola {args:?} should have failed:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
    pub fn inspect(&self, image: &str) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["image", "inspect", image])).unwrap();
        v[0].clone()
    }
    /// `isola image check` passes.
    pub fn assert_consistent(&self) {
        let out = self.ok(&["image", "check"]);
        assert!(out.contains(" 0 problems"), "{out}");
    }
    pub fn blob_count(&self) -> usize {
        std::fs::read_dir(self.root().join("oci/blobs/sha256")).map_or(0, |d| d.count())
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(out.status.success(), "{cmd}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub tls: bool,
    pub creds: Option<(String, String)>,
}

impl Registry {
    pub fn http() -> Registry {
        Registry::start(false, None)
    }

    /// TLS with a certificate signed by a CA made here (`ca_dir()` holds it),
    /// and optionally htpasswd basic auth.
    pub fn start(tls: bool, creds: Option<(&str, &str)>) -> Registry {
        need("docker-registry");
        need("skopeo");
        let dir = tempfile::Builder::new()
            .prefix("isola-registry-")
            .tempdir()
            .unwrap();
        let d = dir.path().display().to_string();
        let mut extra = String::new();
        if tls {
            need("openssl");
            std::fs::create_dir(dir.path().join("ca")).unwrap();
            sh(&format!(
                "cd {d} && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=isola-test-ca \
                 -keyout ca.key -out ca/ca.crt 2>/dev/null && \
                 openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null && \
                 printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext && \
                 openssl x509 -req -in server.csr -CA ca/ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.crt 2>/dev/null"
            ));
            extra += &format!("  tls:\n    certificate: {d}/server.crt\n    key: {d}/server.key\n");
        }
        let mut auth = String::new();
        if let Some((u, p)) = creds {
            need("htpasswd");
            sh(&format!("htpasswd -Bbn {u} {p} > {d}/htpasswd"));
            auth = format!("auth:\n  htpasswd:\n    realm: isola-test\n    path: {d}/htpasswd\n");
        }
        for _attempt in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}{auth}"
            );
            std::fs::write(dir.path().join("config.yml"), config).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(dir.path().join("config.yml"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
                .spawn()
                .expect("starting docker-registry");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Registry {
                        child,
                        port,
                        dir,
                        tls,
                        creds: creds.map(|(u, p)| (u.to_string(), p.to_string())),
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    fn skopeo_flags(&self, prefix: &str) -> String {
        let mut f = if self.tls {
            format!("--{prefix}cert-dir {} ", self.ca_dir().display())
        } else {
            format!("--{prefix}tls-verify=false ")
        };
        if let Some((u, p)) = &self.creds {
            f += &format!("--{prefix}creds {u}:{p} ");
        }
        f
    }

    /// Pushes `src` (a skopeo source like `oci:DIR:busybox:latest`) as `name`.
    pub fn push(&self, src: &str, name: &str) {
        sh(&format!(
            "skopeo copy -q --preserve-digests {} {src} docker://{}/{name}",
            self.skopeo_flags("dest-"),
            self.host()
        ));
    }

    /// The manifest digest the registry serves for `name`.
    pub fn digest(&self, name: &str) -> String {
        sh(&format!(
            "skopeo inspect --raw {} docker://{}/{name} | sha256sum",
            self.skopeo_flags(""),
            self.host()
        ))
        .split_whitespace()
        .next()
        .map(|h| format!("sha256:{h}"))
        .unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `oci:<lead's layout>:<name>` for skopeo.
pub fn layout_ref(name: &str) -> String {
    format!("oci:{}:{name}", images_layout().display())
}
