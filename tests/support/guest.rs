//! Booting real Linux guests with `isola-vmm` and talking to their agent.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use isola_protocol::{AgentClient, AGENT_VSOCK_PORT};
use isola_vmm::virtio::vsock::host as vsock_host;

/// How long a guest may take to answer; generous because the test host
/// runs the guests under nested, emulated virtualization.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long one read or write on a guest stream may block.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(300);

/// A fresh scratch directory inside the work tree (visible in the test
/// host at the same path).
pub fn scratch_dir(name: &str) -> PathBuf {
    let base = crate::profile_dir().join("test-scratch");
    let dir = base.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[derive(Default, Clone)]
pub struct GuestOpts {
    pub mem_mib: Option<u64>,
    pub cpus: Option<u8>,
    /// (path, read_only)
    pub disks: Vec<(PathBuf, bool)>,
    pub cmdline_extra: Option<String>,
    pub no_initramfs: bool,
    /// (vhost-user socket, tag) of virtio-fs devices.
    pub filesystems: Vec<(PathBuf, String)>,
    /// Start from this snapshot instead of booting.
    pub restore_from: Option<PathBuf>,
}

pub struct Guest {
    pub child: Child,
    pub uds: PathBuf,
    pub console: PathBuf,
    pub dir: PathBuf,
}

impl Guest {
    /// Start a VM (does not wait for the agent).
    pub fn spawn(name: &str, opts: &GuestOpts) -> Guest {
        let dir = scratch_dir(&format!("{name}-vm"));
        let uds = dir.join("vsock.sock");
        let console = dir.join("console.log");
        let mut cmd = Command::new(crate::bin("isola-vmm"));
        cmd.arg("--vsock-uds")
            .arg(&uds)
            .arg("--console")
            .arg(&console)
            .arg("--mem")
            .arg(opts.mem_mib.unwrap_or(256).to_string())
            .arg("--cpus")
            .arg(opts.cpus.unwrap_or(1).to_string());
        for (p, ro) in &opts.disks {
            let mut s = p.display().to_string();
            if *ro {
                s.push_str(",ro");
            }
            cmd.arg("--disk").arg(s);
        }
        for (socket, tag) in &opts.filesystems {
            cmd.arg("--fs")
                .arg(format!("{},tag={tag}", socket.display()));
        }
        if let Some(extra) = &opts.cmdline_extra {
            cmd.arg("--cmdline-extra").arg(extra);
        }
        if opts.no_initramfs {
            cmd.arg("--no-initramfs");
        }
        if let Some(dir) = &opts.restore_from {
            cmd.arg("--restore-from").arg(dir);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn isola-vmm");
        Guest {
            child,
            uds,
            console,
            dir,
        }
    }

    /// Start a VM and wait until its agent answers a ping.
    pub fn boot(name: &str, opts: &GuestOpts) -> Guest {
        let mut g = Guest::spawn(name, opts);
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Ok(mut c) = g.try_client() {
                if c.ping().is_ok() {
                    return g;
                }
            }
            if let Ok(Some(status)) = g.child.try_wait() {
                panic!(
                    "VMM exited with {status} before the agent answered: {}\nconsole:\n{}",
                    g.stderr_text(),
                    g.console_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "agent did not answer within {BOOT_TIMEOUT:?}; console:\n{}",
                g.console_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A stream to guest port `port` through the VMM's vsock bridge. Reads
    /// and writes both time out, so a stalled guest fails a test instead of
    /// hanging it.
    pub fn connect(&self, port: u32) -> std::io::Result<UnixStream> {
        let s = vsock_host::connect(&self.uds, port, STREAM_TIMEOUT)?;
        s.set_write_timeout(Some(STREAM_TIMEOUT))?;
        Ok(s)
    }

    pub fn try_client(&self) -> std::io::Result<AgentClient<UnixStream>> {
        Ok(AgentClient::new(self.connect(AGENT_VSOCK_PORT)?))
    }

    pub fn client(&self) -> AgentClient<UnixStream> {
        self.try_client().expect("connect to the agent")
    }

    pub fn console_text(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// Wait for the VMM to exit, killing it after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "VMM did not exit within {timeout:?}; console:\n{}",
                    self.console_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr_text(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(e) = self.child.stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A running virtiofsd; killed on drop if still there.
pub struct Virtiofsd(Child);

impl Virtiofsd {
    /// Whether it exits on its own within `timeout` (it should once its
    /// VMM has gone).
    pub fn exits_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Virtiofsd {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A virtiofsd serving `shared` on `socket`; returns once the socket is up.
pub fn virtiofsd(shared: &Path, socket: &Path) -> Virtiofsd {
    let bin = isola_vmm::assets::default_virtiofsd()
        .expect("virtiofsd (./build.sh installs it into build/)");
    let child = Command::new(bin)
        .arg("--socket-path")
        .arg(socket)
        .arg("--shared-dir")
        .arg(shared)
        .args(["--sandbox", "namespace", "--cache", "auto"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn virtiofsd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "virtiofsd did not create its socket"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Virtiofsd(child)
}

/// An ext4 image of `size_mib` holding the files of `dir`, made with mke2fs.
pub fn ext4_image(path: &Path, dir: &Path, size_mib: u64) {
    let out = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(dir)
        .arg(path)
        .arg(format!("{size_mib}M"))
        .output()
        .expect("run mke2fs (e2fsprogs)");
    assert!(
        out.status.success(),
        "mke2fs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An ext4 disk holding a static busybox at /busybox, for running commands
/// in a guest whose initramfs holds only the agent.
pub fn busybox_disk(dir: &Path) -> PathBuf {
    let root = dir.join("bbroot");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("busybox"))
        .expect("copy /bin/busybox (busybox-static)");
    let img = dir.join("busybox.ext4");
    ext4_image(&img, &root, 16);
    img
}
