//! vm-level tests: real Linux guests (our kernel, our initramfs with the
//! agent as /init) under `isola-vmm` on a real KVM. On a host whose KVM
//! cannot run Linux guests, the whole binary re-runs itself once inside the
//! nested test host (see `support::testhost`); nothing is skipped.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::time::Duration;

use isola_protocol::{pattern_byte, ExecResult, Request, Response};
use isola_tests::guest::{busybox_disk, ext4_image, scratch_dir, virtiofsd, Guest, GuestOpts};
use isola_tests::testhost::run_here_or_in_testhost;
use isola_tests::{check, TestResult};
use libtest_mimic::{Arguments, Trial};
use sha2::{Digest, Sha256};

const EXIT_WAIT: Duration = Duration::from_secs(60);

/// A guest with busybox mounted at /bb, for running commands.
fn guest_with_busybox(name: &str, mut opts: GuestOpts) -> Guest {
    let dir = scratch_dir(&format!("{name}-disk"));
    opts.disks.insert(0, (busybox_disk(&dir), true));
    let g = Guest::boot(name, &opts);
    g.client()
        .expect_ok(Request::Mount {
            source: "/dev/vda".into(),
            target: "/bb".into(),
            fstype: "ext4".into(),
            readonly: true,
        })
        .expect("mount the busybox disk");
    g
}

fn sh(g: &Guest, script: &str) -> ExecResult {
    g.client()
        .exec(&["/bb/busybox", "sh", "-c", script], b"")
        .expect("exec in guest")
}

fn boot_ping_and_power_off() -> TestResult {
    let mut g = Guest::boot("ping", &GuestOpts::default());
    let mut c = g.client();
    let agent = c.handshake().map_err(|e| e.to_string())?;
    check(!agent.is_empty(), "agent reports a version")?;
    c.expect_ok(Request::Shutdown).map_err(|e| e.to_string())?;
    let st = g.wait_exit(EXIT_WAIT);
    check(st.code() == Some(0), format!("power-off exits 0, got {st}"))
}

/// The `isola-vmm --ping` contract: boot, wait for the agent, one line,
/// power off, exit 0, nothing left behind; debug logging shows the stages.
fn vmm_ping_prints_one_line_and_exits_0() -> TestResult {
    let out = Command::new(isola_tests::bin("isola-vmm"))
        .args(["--ping", "--cpus", "2", "--log-level", "debug"])
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(
        out.status.code() == Some(0),
        format!("exit {}: {stderr}", out.status),
    )?;
    let lines: Vec<&str> = stdout.lines().collect();
    let ms = lines
        .first()
        .and_then(|l| l.strip_prefix("agent ready in "))
        .and_then(|l| l.strip_suffix(" ms"))
        .and_then(|n| n.parse::<u64>().ok());
    check(
        lines.len() == 1 && ms.is_some(),
        format!("one line `agent ready in <ms> ms`, got {stdout:?}"),
    )?;
    for stage in [
        "guest memory registered",
        "vCPUs running",
        "agent announced itself",
        "VM stopped",
    ] {
        check(stderr.contains(stage), format!("debug log lacks {stage:?}"))?;
    }
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("isola-vmm-"))
        .collect();
    check(
        leftovers.is_empty(),
        format!("sockets left behind: {leftovers:?}"),
    )
}

fn exec_returns_output_and_status() -> TestResult {
    let g = guest_with_busybox("exec", GuestOpts::default());
    let r = sh(&g, "echo hi; echo oops >&2; exit 7");
    check(
        r.stdout == b"hi\n",
        format!("stdout {:?}", String::from_utf8_lossy(&r.stdout)),
    )?;
    check(
        r.stderr == b"oops\n",
        format!("stderr {:?}", String::from_utf8_lossy(&r.stderr)),
    )?;
    check(r.status == 7, format!("status {}", r.status))?;
    let r = g
        .client()
        .exec(&["/bb/busybox", "cat"], b"fed through stdin")
        .map_err(|e| e.to_string())?;
    check(
        r.stdout == b"fed through stdin",
        "stdin reaches the command",
    )?;
    let r = sh(&g, "kill -9 $$");
    check(
        r.status == 128 + 9,
        format!("killed by signal 9 → 137, got {}", r.status),
    )?;
    // A program that does not exist is an error, not a hang.
    let bad = g.client().exec(&["/no/such/program"], b"");
    check(
        bad.is_err() || bad.as_ref().is_ok_and(|r| r.status == 127),
        format!("missing program: {bad:?}"),
    )
}

fn guest_sees_its_own_kernel_cpus_and_memory() -> TestResult {
    let g = guest_with_busybox(
        "smp",
        GuestOpts {
            cpus: Some(2),
            mem_mib: Some(384),
            ..Default::default()
        },
    );
    let r = sh(&g, "grep -c ^processor /proc/cpuinfo");
    check(
        r.stdout == b"2\n",
        format!("2 vCPUs online: {:?}", String::from_utf8_lossy(&r.stdout)),
    )?;
    let r = sh(&g, "awk '/MemTotal/ {print $2}' /proc/meminfo");
    let kib: u64 = String::from_utf8_lossy(&r.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    check(
        (300_000..=393_216).contains(&kib),
        format!("MemTotal {kib} KiB for a 384 MiB guest"),
    )?;
    let r = sh(&g, "uname -r");
    check(
        String::from_utf8_lossy(&r.stdout).starts_with("6.12"),
        format!(
            "guest kernel is ours: {:?}",
            String::from_utf8_lossy(&r.stdout)
        ),
    )
}

fn block_devices_read_only_and_read_write() -> TestResult {
    let dir = scratch_dir("blk");
    let ro_root = dir.join("ro");
    std::fs::create_dir_all(&ro_root).map_err(|e| e.to_string())?;
    std::fs::write(ro_root.join("hello.txt"), b"from the host\n").map_err(|e| e.to_string())?;
    let ro_img = dir.join("ro.ext4");
    ext4_image(&ro_img, &ro_root, 8);
    let rw_root = dir.join("rw");
    std::fs::create_dir_all(&rw_root).map_err(|e| e.to_string())?;
    let rw_img = dir.join("rw.ext4");
    ext4_image(&rw_img, &rw_root, 8);
    let ro_before = std::fs::read(&ro_img).map_err(|e| e.to_string())?;

    let mut g = guest_with_busybox(
        "blk",
        GuestOpts {
            disks: vec![(ro_img.clone(), true), (rw_img.clone(), false)],
            ..Default::default()
        },
    );
    let mut c = g.client();
    c.expect_ok(Request::Mount {
        source: "/dev/vdb".into(),
        target: "/ro".into(),
        fstype: "ext4".into(),
        readonly: true,
    })
    .map_err(|e| e.to_string())?;
    check(
        c.read_file("/ro/hello.txt").map_err(|e| e.to_string())? == b"from the host\n",
        "guest reads the read-only disk",
    )?;
    // The device itself refuses writes, whatever the guest's mount says.
    let r = sh(&g, "/bb/busybox dd if=/dev/zero of=/dev/vdb bs=512 count=1 seek=100 conv=fsync 2>&1; echo rc=$?");
    check(
        !String::from_utf8_lossy(&r.stdout).contains("rc=0"),
        format!(
            "raw write to the ro disk must fail: {}",
            String::from_utf8_lossy(&r.stdout)
        ),
    )?;
    c.expect_ok(Request::Mount {
        source: "/dev/vdc".into(),
        target: "/rw".into(),
        fstype: "ext4".into(),
        readonly: false,
    })
    .map_err(|e| e.to_string())?;
    c.expect_ok(Request::WriteFile {
        path: "/rw/out.txt".into(),
        data: b"written in the guest\n".to_vec(),
    })
    .map_err(|e| e.to_string())?;
    c.expect_ok(Request::Shutdown).map_err(|e| e.to_string())?;
    let st = g.wait_exit(EXIT_WAIT);
    check(st.code() == Some(0), format!("power-off exits 0, got {st}"))?;

    let out = Command::new("debugfs")
        .args(["-R", "cat /out.txt"])
        .arg(&rw_img)
        .output()
        .map_err(|e| e.to_string())?;
    check(
        out.stdout == b"written in the guest\n",
        format!(
            "host reads the guest's write: {:?}",
            String::from_utf8_lossy(&out.stdout)
        ),
    )?;
    let ro_after = std::fs::read(&ro_img).map_err(|e| e.to_string())?;
    check(ro_before == ro_after, "read-only image unchanged")
}

/// A host directory shared over virtio-fs: files cross in both directions
/// while the VM runs, and the guest sees later host changes.
fn virtio_fs_shares_a_host_directory_both_ways() -> TestResult {
    let dir = scratch_dir("vfs");
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).map_err(|e| e.to_string())?;
    std::fs::write(shared.join("from-host"), b"written on the host\n")
        .map_err(|e| e.to_string())?;
    let socket = dir.join("fs.sock");
    let mut daemon = virtiofsd(&shared, &socket);
    let mut g = guest_with_busybox(
        "vfs",
        GuestOpts {
            filesystems: vec![(socket.clone(), "shared".into())],
            ..Default::default()
        },
    );
    let mut c = g.client();
    c.expect_ok(Request::Mount {
        source: "shared".into(),
        target: "/shared".into(),
        fstype: "virtiofs".into(),
        readonly: false,
    })
    .map_err(|e| e.to_string())?;
    check(
        c.read_file("/shared/from-host")
            .map_err(|e| e.to_string())?
            == b"written on the host\n",
        "guest reads the host's file",
    )?;
    let r = sh(
        &g,
        "echo written in the guest > /shared/from-guest && /bb/busybox mkdir /shared/d && \
         /bb/busybox dd if=/dev/zero of=/shared/d/big bs=1M count=8 2>/dev/null && /bb/busybox sync && echo ok",
    );
    check(
        r.stdout == b"ok\n",
        format!("guest writes: {:?}", String::from_utf8_lossy(&r.stdout)),
    )?;
    check(
        std::fs::read(shared.join("from-guest")).map_err(|e| e.to_string())?
            == b"written in the guest\n",
        "host reads the guest's file while the VM runs",
    )?;
    let big = std::fs::metadata(shared.join("d/big")).map_err(|e| e.to_string())?;
    check(
        big.len() == 8 << 20,
        format!("8 MiB file from the guest, got {}", big.len()),
    )?;
    std::fs::write(shared.join("later"), b"after the mount\n").map_err(|e| e.to_string())?;
    let r = sh(&g, "/bb/busybox cat /shared/later");
    check(
        r.stdout == b"after the mount\n",
        format!(
            "guest sees a later host write: {:?}",
            String::from_utf8_lossy(&r.stdout)
        ),
    )?;
    c.expect_ok(Request::Shutdown).map_err(|e| e.to_string())?;
    let st = g.wait_exit(EXIT_WAIT);
    check(st.code() == Some(0), format!("power-off exits 0, got {st}"))?;
    check(
        daemon.exits_within(Duration::from_secs(10)),
        "virtiofsd ends with its VMM",
    )
}

fn two_vms_at_once() -> TestResult {
    let a = std::thread::spawn(|| {
        let g = guest_with_busybox("two-a", GuestOpts::default());
        sh(&g, "hostname one; echo a-$(hostname)").stdout
    });
    let b = std::thread::spawn(|| {
        let g = guest_with_busybox("two-b", GuestOpts::default());
        sh(&g, "hostname two; echo b-$(hostname)").stdout
    });
    let (a, b) = (a.join(), b.join());
    check(
        a.as_deref().ok() == Some(&b"a-one\n"[..]) && b.as_deref().ok() == Some(&b"b-two\n"[..]),
        "both VMs answer, each with its own state",
    )
}

fn hundred_vsock_streams_one_moving_64_mib() -> TestResult {
    let g = Guest::boot("streams", &GuestOpts::default());
    const BIG: u64 = 64 << 20;
    std::thread::scope(|s| -> TestResult {
        let big = s.spawn(|| -> Result<(), String> {
            let mut c = g.client();
            match c
                .call(Request::HashStream { len: BIG })
                .map_err(|e| e.to_string())?
            {
                Response::Ok => {}
                other => return Err(format!("HashStream: {other:?}")),
            }
            let mut hasher = Sha256::new();
            let mut chunk = vec![0u8; 1 << 20];
            let mut sent = 0u64;
            while sent < BIG {
                for (i, b) in chunk.iter_mut().enumerate() {
                    *b = pattern_byte(sent + i as u64) ^ 0x5a;
                }
                hasher.update(&chunk);
                c.stream().write_all(&chunk).map_err(|e| e.to_string())?;
                sent += chunk.len() as u64;
            }
            let want = format!("{:x}", hasher.finalize());
            match c.read_reply(1).map_err(|e| e.to_string())? {
                Response::Hash { sha256 } if sha256 == want => Ok(()),
                other => Err(format!("sha256 mismatch: {other:?} want {want}")),
            }
        });
        let back = s.spawn(|| -> Result<(), String> {
            const LEN: u64 = 8 << 20;
            let mut c = g.client();
            match c
                .call(Request::GenerateStream { len: LEN })
                .map_err(|e| e.to_string())?
            {
                Response::Ok => {}
                other => return Err(format!("GenerateStream: {other:?}")),
            }
            let mut got = Vec::new();
            c.stream()
                .read_to_end(&mut got)
                .map_err(|e| e.to_string())?;
            if got.len() as u64 != LEN {
                return Err(format!("got {} of {LEN} bytes", got.len()));
            }
            match got
                .iter()
                .enumerate()
                .find(|(i, b)| **b != pattern_byte(*i as u64))
            {
                Some((i, _)) => Err(format!("guest→host byte {i} corrupted")),
                None => Ok(()),
            }
        });
        let small: Vec<_> = (0..98)
            .map(|i| {
                let g = &g;
                s.spawn(move || -> Result<(), String> {
                    let mut c = g.try_client().map_err(|e| format!("stream {i}: {e}"))?;
                    for _ in 0..3 {
                        c.ping().map_err(|e| format!("stream {i}: {e}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in small {
            h.join().map_err(|_| "stream thread panicked")??;
        }
        back.join().map_err(|_| "generate thread panicked")??;
        big.join().map_err(|_| "hash thread panicked")??;
        Ok(())
    })
    .map_err(|e| {
        let why = e.message().unwrap_or("failed").to_owned();
        format!("{why}\nguest console:\n{}", g.console_text()).into()
    })
}

fn guest_connects_to_the_host() -> TestResult {
    let g = Guest::boot("g2h", &GuestOpts::default());
    let path = isola_vmm::virtio::vsock::host::guest_port_path(&g.uds, 7000);
    let listener = UnixListener::bind(&path).map_err(|e| e.to_string())?;
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read");
        got
    });
    g.client()
        .expect_ok(Request::ConnectHost {
            port: 7000,
            payload: b"hello host".to_vec(),
        })
        .map_err(|e| e.to_string())?;
    let got = t.join().map_err(|_| "listener panicked")?;
    check(
        got == b"hello host",
        format!("host got {:?}", String::from_utf8_lossy(&got)),
    )?;
    // Nobody listens on 7001: the guest's connect is refused, not hung.
    let r = g.client().expect_ok(Request::ConnectHost {
        port: 7001,
        payload: b"x".to_vec(),
    });
    check(r.is_err(), "connect to a port nobody listens on fails")
}

fn guest_reboot_ends_the_vm_with_status_3() -> TestResult {
    let mut g = Guest::boot("reboot", &GuestOpts::default());
    g.client()
        .expect_ok(Request::Reboot)
        .map_err(|e| e.to_string())?;
    let st = g.wait_exit(EXIT_WAIT);
    check(st.code() == Some(3), format!("reboot exits 3, got {st}"))
}

fn guest_kernel_panic_ends_the_vm_with_status_4() -> TestResult {
    // No initramfs and no root device: the kernel panics at boot.
    let mut g = Guest::spawn(
        "panic",
        &GuestOpts {
            no_initramfs: true,
            ..Default::default()
        },
    );
    let st = g.wait_exit(Duration::from_secs(120));
    check(
        st.code() == Some(4),
        format!("panic exits 4, got {st}: {}", g.stderr_text()),
    )
}

fn sigterm_stops_the_vmm_cleanly() -> TestResult {
    let mut g = Guest::boot("sigterm", &GuestOpts::default());
    // SAFETY: sending a signal to our own child process.
    let rc = unsafe { libc::kill(g.child.id() as i32, libc::SIGTERM) };
    check(rc == 0, "kill(SIGTERM)")?;
    let st = g.wait_exit(EXIT_WAIT);
    check(
        st.code() == Some(143),
        format!("SIGTERM exits 143, got {st}"),
    )?;
    check(!g.uds.exists(), "the vsock socket is removed")
}

fn malformed_agent_traffic_does_not_kill_the_agent() -> TestResult {
    let g = Guest::boot("garbage", &GuestOpts::default());
    // A frame claiming 4 GiB, then garbage JSON, then a truncated frame.
    for junk in [
        &[0xff, 0xff, 0xff, 0xff][..],
        &[0, 0, 0, 3, b'}', b'}', b'}'][..],
        &[0, 0, 1, 0, b'{'][..],
    ] {
        let mut s = g
            .connect(isola_protocol::AGENT_VSOCK_PORT)
            .map_err(|e| e.to_string())?;
        s.write_all(junk).map_err(|e| e.to_string())?;
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    g.client()
        .ping()
        .map_err(|e| format!("agent died after garbage: {e}").into())
}

/// Two ext4 disks of one size: `name` holds busybox and a file `name`.
fn busybox_disk_named(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let root = dir.join(format!("{name}-root"));
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("busybox")).expect("copy busybox");
    std::fs::write(root.join(name), name).expect("write marker");
    let img = dir.join(format!("{name}.ext4"));
    isola_tests::guest::ext4_image(&img, &root, 16);
    img
}

/// Snapshot a booted guest, start two guests from it at once on other
/// disks, and check each continues as a guest of its own: the agent
/// answers, the disk read is the new one (block caches dropped), the clock
/// is the host's, and the two draw different random numbers (RNG reseeded).
/// A damaged or mismatched snapshot is refused with a clear error.
fn snapshot_then_two_restored_guests_each_their_own() -> TestResult {
    let dir = scratch_dir("snapshot");
    let snap = dir.join("snap");
    std::fs::create_dir_all(&snap).map_err(|e| e.to_string())?;
    let template_disk = busybox_disk_named(&dir, "template");
    let out = Command::new(isola_tests::bin("isola-vmm"))
        .args(["--ping", "--cpus", "2", "--mem", "256"])
        .arg("--disk")
        .arg(format!("{},ro", template_disk.display()))
        .arg("--snapshot-to")
        .arg(&snap)
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    check(
        out.status.code() == Some(0) && stdout.contains("snapshot written to"),
        format!(
            "snapshot: exit {}: {stdout} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    )?;

    let mut guests = Vec::new();
    for name in ["one", "two"] {
        let disk = busybox_disk_named(&dir, name);
        let opts = GuestOpts {
            mem_mib: Some(256),
            cpus: Some(2),
            disks: vec![(disk, true)],
            restore_from: Some(snap.clone()),
            ..Default::default()
        };
        guests.push((name, Guest::spawn(&format!("restored-{name}"), &opts)));
    }
    let mut randoms = Vec::new();
    for (name, g) in &mut guests {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut c = loop {
            let answered = g
                .try_client()
                .ok()
                .and_then(|mut c| c.handshake().ok().map(|_| c));
            match answered {
                Some(c) => break c,
                None if std::time::Instant::now() > deadline => {
                    return Err(format!(
                        "restored guest {name} never answered: {}",
                        g.stderr_text()
                    )
                    .into())
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?;
        c.expect_ok(Request::Restored {
            unix_time_ns: now.as_nanos() as u64,
            entropy: std::fs::read("/proc/sys/kernel/random/uuid")
                .map_err(|e| e.to_string())?
                .repeat(2),
        })
        .map_err(|e| format!("{name}: Restored: {e}"))?;
        c.expect_ok(Request::Mount {
            source: "/dev/vda".into(),
            target: "/bb".into(),
            fstype: "ext4".into(),
            readonly: true,
        })
        .map_err(|e| format!("{name}: mount: {e}"))?;
        let r = sh(
            g,
            &format!(
                "cat /bb/{name}; echo; ls /bb; date +%s; /bb/busybox od -An -tx1 -N16 /dev/urandom"
            ),
        );
        let text = String::from_utf8_lossy(&r.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        check(
            r.status == 0 && lines.first() == Some(&*name),
            format!("{name}: reads its own disk: {text:?}"),
        )?;
        check(
            !text.contains("template"),
            format!("{name}: sees the template's disk: {text:?}"),
        )?;
        let guest_secs: u64 = lines
            .get(lines.len().saturating_sub(2))
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| format!("{name}: no date in {text:?}"))?;
        check(
            guest_secs.abs_diff(now.as_secs()) < 60,
            format!("{name}: guest clock {guest_secs}, host {}", now.as_secs()),
        )?;
        randoms.push(lines.last().map(|l| l.to_string()).unwrap_or_default());
        c.expect_ok(Request::Shutdown).map_err(|e| e.to_string())?;
    }
    check(
        randoms[0] != randoms[1] && !randoms[0].is_empty(),
        format!("restored guests share random numbers: {randoms:?}"),
    )?;
    for (name, g) in &mut guests {
        let st = g.wait_exit(EXIT_WAIT);
        check(
            st.code() == Some(0),
            format!("{name}: power-off exits 0, got {st}"),
        )?;
    }

    // Asked for another machine: refused, nothing started.
    let refused = |extra: &[&str]| -> Result<String, String> {
        let out = Command::new(isola_tests::bin("isola-vmm"))
            .args(["--ping", "--cpus", "2"])
            .args(extra)
            .arg("--disk")
            .arg(format!("{},ro", template_disk.display()))
            .arg("--restore-from")
            .arg(&snap)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.code() != Some(1) {
            return Err(format!("restore {extra:?} exited {}", out.status));
        }
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let e = refused(&["--mem", "512"])?;
    check(
        e.contains("saved with 256 MiB"),
        format!("mismatch error: {e}"),
    )?;
    // A damaged memory file.
    let mem = snap.join("memory");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&mem)
        .and_then(|f| f.set_len(4096))
        .map_err(|e| e.to_string())?;
    let e = refused(&["--mem", "256"])?;
    check(
        e.contains("memory file holds 4096 bytes"),
        format!("damage error: {e}"),
    )?;
    // A damaged state file.
    std::fs::write(snap.join("vm.json"), b"{\"version\": 1, \"mem_mib\": ")
        .map_err(|e| e.to_string())?;
    let e = refused(&["--mem", "256"])?;
    check(
        e.contains("snapshot state file"),
        format!("state error: {e}"),
    )
}

fn main() {
    run_here_or_in_testhost();
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test("boot_ping_and_power_off", boot_ping_and_power_off),
        Trial::test(
            "vmm_ping_prints_one_line_and_exits_0",
            vmm_ping_prints_one_line_and_exits_0,
        ),
        Trial::test(
            "exec_returns_output_and_status",
            exec_returns_output_and_status,
        ),
        Trial::test(
            "guest_sees_its_own_kernel_cpus_and_memory",
            guest_sees_its_own_kernel_cpus_and_memory,
        ),
        Trial::test(
            "block_devices_read_only_and_read_write",
            block_devices_read_only_and_read_write,
        ),
        Trial::test(
            "virtio_fs_shares_a_host_directory_both_ways",
            virtio_fs_shares_a_host_directory_both_ways,
        ),
        Trial::test("two_vms_at_once", two_vms_at_once),
        Trial::test(
            "snapshot_then_two_restored_guests_each_their_own",
            snapshot_then_two_restored_guests_each_their_own,
        ),
        Trial::test(
            "hundred_vsock_streams_one_moving_64_mib",
            hundred_vsock_streams_one_moving_64_mib,
        ),
        Trial::test("guest_connects_to_the_host", guest_connects_to_the_host),
        Trial::test(
            "guest_reboot_ends_the_vm_with_status_3",
            guest_reboot_ends_the_vm_with_status_3,
        ),
        Trial::test(
            "guest_kernel_panic_ends_the_vm_with_status_4",
            guest_kernel_panic_ends_the_vm_with_status_4,
        ),
        Trial::test(
            "sigterm_stops_the_vmm_cleanly",
            sigterm_stops_the_vmm_cleanly,
        ),
        Trial::test(
            "malformed_agent_traffic_does_not_kill_the_agent",
            malformed_agent_traffic_does_not_kill_the_agent,
        ),
    ];
    libtest_mimic::run(&args, tests).exit();
}
