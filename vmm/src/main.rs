//! `isola-vmm`: boot a guest kernel under KVM. With `--ping`, wait for the
//! guest agent over vsock, report how long that took, and shut down.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use isola_protocol::{AgentClient, Request, AGENT_READY_PORT, AGENT_VSOCK_PORT};
use isola_vmm::devices::ExitNotifier;
use isola_vmm::host_check::{kvm_capability, KvmCapability};
use isola_vmm::virtio::vsock::host::{self as vsock_host, guest_port_path};
use isola_vmm::{assets, ConsoleMode, DiskConfig, FsConfig, Vm, VmConfig, VmExitReason};

#[derive(Parser, Debug)]
#[command(
    name = "isola-vmm",
    version,
    about = "Boot a Linux guest under KVM with virtio-blk and virtio-vsock",
    after_help = "Exit status: 0 guest powered off, 1 VMM error, 3 guest rebooted, \
                  4 guest kernel panic, 128+N stopped by signal N."
)]
struct Args {
    /// Uncompressed vmlinux with a PVH entry (default: the build's).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initramfs (uncompressed or compressed cpio; default: the build's).
    #[arg(long)]
    initramfs: Option<PathBuf>,
    /// Boot without an initramfs.
    #[arg(long, conflicts_with = "initramfs")]
    no_initramfs: bool,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 256)]
    mem: u64,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u8,
    /// Raw disk image, `PATH` or `PATH,ro`; repeatable (vda, vdb, ...).
    #[arg(long = "disk", value_name = "PATH[,ro]")]
    disks: Vec<String>,
    /// A virtio-fs device served by a vhost-user backend (virtiofsd)
    /// listening on SOCKET; the guest mounts it with `-t virtiofs TAG`.
    /// Repeatable.
    #[arg(long = "fs", value_name = "SOCKET,tag=TAG")]
    filesystems: Vec<String>,
    /// Host Unix socket bridged to the guest's vsock device.
    #[arg(long)]
    vsock_uds: Option<PathBuf>,
    /// Guest vsock CID.
    #[arg(long, default_value_t = 3)]
    cid: u64,
    /// Guest console: off, stdout, or a file path.
    #[arg(long, default_value = "off")]
    console: String,
    /// Appended to the kernel command line.
    #[arg(long, default_value = "")]
    cmdline_extra: String,
    /// Boot, wait for the agent to answer, print `agent ready in <ms> ms`,
    /// shut the guest down.
    #[arg(long)]
    ping: bool,
    /// With --ping: once the agent answers, save the VM to DIR (which must
    /// exist and be empty) instead of shutting it down.
    #[arg(long, value_name = "DIR", requires = "ping")]
    snapshot_to: Option<PathBuf>,
    /// Start from the VM saved in DIR instead of booting; the other
    /// options must describe the same machine (memory, vCPUs, devices).
    #[arg(long, value_name = "DIR", conflicts_with = "snapshot_to")]
    restore_from: Option<PathBuf>,
    /// How long --ping waits for the agent, in seconds.
    #[arg(long, default_value_t = 60)]
    ping_timeout: u64,
    /// Run even where /dev/kvm cannot run a standard Linux guest (for tiny
    /// test guests).
    #[arg(long)]
    force: bool,
    /// error, warn, info, debug or trace.
    #[arg(long, default_value = "warn")]
    log_level: String,
}

fn parse_disk(s: &str) -> Result<DiskConfig> {
    let (path, ro) = match s.rsplit_once(',') {
        Some((p, "ro")) => (p, true),
        Some((p, "rw")) => (p, false),
        Some((_, opt)) => bail!("unknown disk option {opt:?} in --disk {s:?} (use ro or rw)"),
        None => (s, false),
    };
    if path.is_empty() {
        bail!("empty path in --disk {s:?}");
    }
    Ok(DiskConfig {
        path: PathBuf::from(path),
        read_only: ro,
    })
}

fn parse_fs(s: &str) -> Result<FsConfig> {
    let Some((socket, tag)) = s.rsplit_once(",tag=") else {
        bail!("--fs {s:?}: expected SOCKET,tag=TAG");
    };
    if socket.is_empty() || tag.is_empty() {
        bail!("--fs {s:?}: empty socket path or tag");
    }
    Ok(FsConfig {
        socket: PathBuf::from(socket),
        tag: tag.to_string(),
    })
}

fn parse_console(s: &str) -> ConsoleMode {
    match s {
        "off" => ConsoleMode::Off,
        "stdout" => ConsoleMode::Stdout,
        path => ConsoleMode::File(PathBuf::from(path)),
    }
}

fn init_logging(level: &str) -> Result<()> {
    // virtio-queue logs an error for every malformed ring access, which a
    // hostile guest can repeat at will; at the quiet levels those are off
    // (the VMM's own debug log says the same, rate-free).
    let spec = if matches!(level, "error" | "warn" | "info") {
        format!("{level},virtio_queue=off")
    } else {
        level.to_string()
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .with_context(|| format!("bad --log-level {level:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .init();
    Ok(())
}

/// The signals that stop the VM.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, filled in by sigemptyset/sigaddset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; these calls only write to it.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
    }
    set
}

/// Block the stop signals before any thread exists (threads inherit the
/// mask), so one arriving while the VM is being built stays pending instead
/// of killing us with the vsock socket left behind.
fn block_stop_signals() -> Result<()> {
    let set = stop_signals();
    // SAFETY: `set` is a valid sigset_t; only this thread's mask changes.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        bail!("pthread_sigmask failed: {rc}");
    }
    Ok(())
}

/// Turn the (blocked) stop signals into a VM exit on a thread of their
/// own, so that teardown runs in one place.
fn handle_signals(exit: ExitNotifier) -> Result<()> {
    let set = stop_signals();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig = 0;
            // SAFETY: `set` is valid and `sig` is a valid out-pointer.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                exit.notify(VmExitReason::Terminated(sig));
                return;
            }
        })
        .context("spawning the signal thread")?;
    Ok(())
}

/// Bind the listener the agent announces itself to (`<uds>_1025`).
fn ready_listener(uds: &Path) -> Result<UnixListener> {
    let p = guest_port_path(uds, AGENT_READY_PORT);
    let _ = std::fs::remove_file(&p);
    let l = UnixListener::bind(&p).with_context(|| format!("binding {}", p.display()))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// When `--ping` starts polling the agent port if no READY came.
const FALLBACK_POLL_AFTER: Duration = Duration::from_secs(10);

/// Wait for the agent: its READY announcement normally; a slow poll of
/// the agent port as a fallback (an agent that does not announce itself).
/// What --ping does once the agent answers.
enum OnReady {
    Shutdown,
    /// Leave the guest running and tell the main thread (which snapshots).
    Report(std::sync::mpsc::Sender<()>),
}

/// How --ping finds the agent.
struct PingPlan {
    timeout: Duration,
    /// Poll the agent port from the start: a restored guest announced
    /// itself before its snapshot, never again.
    poll_at_once: bool,
    on_ready: OnReady,
}

fn ping(uds: PathBuf, ready: UnixListener, t0: Instant, plan: PingPlan, exit: ExitNotifier) {
    let deadline = t0 + plan.timeout;
    let poll_after = if plan.poll_at_once {
        Duration::ZERO
    } else {
        FALLBACK_POLL_AFTER
    };
    let mut last_poll = Instant::now();
    loop {
        // The VM ended (a signal, a panic): nobody waits for the agent now.
        if exit.stopping() {
            return;
        }
        let announced = match ready.accept() {
            Ok((mut s, _)) => {
                // The guest controls this stream: never wait on it for long.
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut line = [0u8; 16];
                let n = s.read(&mut line).unwrap_or(0);
                tracing::debug!(
                    "agent announced itself at +{} ms: {:?}",
                    t0.elapsed().as_millis(),
                    String::from_utf8_lossy(&line[..n])
                );
                true
            }
            Err(_) => false,
        };
        // Polling is only the fallback for an agent that never announces
        // itself: it starts late, so it cannot beat a slow announcement.
        let poll_due = t0.elapsed() >= poll_after
            && (plan.poll_at_once || last_poll.elapsed() >= Duration::from_millis(250));
        if announced || poll_due {
            last_poll = Instant::now();
            // The guest controls the other end: an agent that accepts and
            // then says nothing must not hold --ping past its deadline.
            match vsock_host::connect(&uds, AGENT_VSOCK_PORT, Duration::from_secs(10)) {
                Ok(stream) => {
                    let mut client = AgentClient::new(stream);
                    // The version handshake is the agent's first answer; a
                    // separate ping would only add a round trip.
                    match client.handshake() {
                        Ok(_) => {
                            println!("agent ready in {} ms", t0.elapsed().as_millis());
                            match plan.on_ready {
                                OnReady::Shutdown => {
                                    if let Err(e) = client.expect_ok(Request::Shutdown) {
                                        exit.notify(VmExitReason::Error(format!(
                                            "shutdown request: {e}"
                                        )));
                                    }
                                }
                                OnReady::Report(tx) => {
                                    drop(client);
                                    let _ = tx.send(());
                                }
                            }
                            return;
                        }
                        Err(e) => tracing::debug!("agent not ready: {e}"),
                    }
                }
                Err(e) => tracing::trace!("agent not reachable yet: {e}"),
            }
        }
        if Instant::now() > deadline {
            exit.notify(VmExitReason::Error(format!(
                "the guest agent did not answer within {} s",
                plan.timeout.as_secs()
            )));
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn main() {
    let t0 = Instant::now();
    let args = Args::parse();
    match run(args, t0) {
        Ok(reason) => {
            if reason != VmExitReason::PowerOff {
                eprintln!("isola-vmm: {reason}");
            }
            std::process::exit(reason.exit_code());
        }
        Err(e) => {
            eprintln!("isola-vmm: error: {}", error_chain(&e));
            std::process::exit(1);
        }
    }
}

/// `e` and its causes, `: `-separated, leaving out a cause whose text is
/// already there: our error types (and linux-loader's) print their source
/// themselves, so `{:#}` would repeat it.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

/// Use the hard limit on open files: each vsock stream holds a host socket.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write `lim`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn run(args: Args, t0: Instant) -> Result<VmExitReason> {
    block_stop_signals()?;
    raise_fd_limit();
    init_logging(&args.log_level)?;
    if let KvmCapability::NoHardware(why) = kvm_capability() {
        if !args.force {
            bail!(
                "this host's /dev/kvm cannot run a standard Linux guest ({why}): its kernel \
                 would be software-emulated and stall. Run it one level down in the test host, \
                 e.g. `isola-testhost -- isola-vmm --ping`, or pass --force for tiny test guests."
            );
        }
        tracing::warn!("running without hardware virtualization ({why}) because of --force");
    }
    let kernel = match args.kernel {
        Some(k) => k,
        None => assets::default_kernel().with_context(|| {
            format!(
                "no guest kernel given and none found (looked in {}); run the README's build or pass --kernel",
                assets::searched()
            )
        })?,
    };
    let initramfs = if args.no_initramfs {
        None
    } else {
        match args.initramfs {
            Some(i) => Some(i),
            None => Some(assets::default_initramfs().with_context(|| {
                format!(
                    "no initramfs given and none found (looked in {}); pass --initramfs or --no-initramfs",
                    assets::searched()
                )
            })?),
        }
    };
    let disks = args
        .disks
        .iter()
        .map(|d| parse_disk(d))
        .collect::<Result<Vec<_>>>()?;
    let mut own_socket = None;
    let vsock_uds = match (args.vsock_uds, args.ping) {
        (Some(p), _) => Some(p),
        (None, true) => {
            let p = std::env::temp_dir().join(format!("isola-vmm-{}.vsock", std::process::id()));
            own_socket = Some(p.clone());
            Some(p)
        }
        (None, false) => None,
    };
    let cfg = VmConfig {
        kernel,
        initramfs,
        mem_mib: args.mem,
        vcpus: args.cpus,
        disks,
        vsock_uds: vsock_uds.clone(),
        filesystems: args
            .filesystems
            .iter()
            .map(|f| parse_fs(f))
            .collect::<Result<Vec<_>>>()?,
        guest_cid: args.cid,
        console: parse_console(&args.console),
        cmdline_extra: args.cmdline_extra,
    };
    let mut vm = match &args.restore_from {
        Some(dir) => Vm::restore(&cfg, dir)
            .with_context(|| format!("cannot restore the VM saved in {}", dir.display()))?,
        None => Vm::new(&cfg).context("cannot build the VM")?,
    };
    let mut snapshot_ready = None;
    handle_signals(vm.exit_notifier())?;
    let mut ready_socket = None;
    if args.ping {
        if let Some(uds) = vsock_uds {
            let ready = ready_listener(&uds)?;
            ready_socket = Some(guest_port_path(&uds, AGENT_READY_PORT));
            let exit = vm.exit_notifier();
            let on_ready = if args.snapshot_to.is_some() {
                let (tx, rx) = std::sync::mpsc::channel();
                snapshot_ready = Some(rx);
                OnReady::Report(tx)
            } else {
                OnReady::Shutdown
            };
            let plan = PingPlan {
                timeout: Duration::from_secs(args.ping_timeout),
                poll_at_once: args.restore_from.is_some(),
                on_ready,
            };
            std::thread::Builder::new()
                .name("ping".into())
                .spawn(move || ping(uds, ready, t0, plan, exit))
                .context("spawning the ping thread")?;
        }
    }
    vm.start()?;
    tracing::debug!(
        "boot stage +{:.3} ms: vCPUs running",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    if let (Some(rx), Some(dir)) = (snapshot_ready, &args.snapshot_to) {
        // The ping thread drops its sender without sending when the VM
        // ended first; its reason is then waiting below.
        if rx.recv().is_ok() {
            let saved = vm.snapshot(dir);
            vm.teardown();
            for p in own_socket.into_iter().chain(ready_socket) {
                let _ = std::fs::remove_file(p);
            }
            let bytes = saved.context("cannot save the VM")?;
            println!(
                "snapshot written to {} ({} MiB of RAM)",
                dir.display(),
                bytes >> 20
            );
            return Ok(VmExitReason::PowerOff);
        }
    }
    let reason = vm.wait();
    tracing::debug!(
        "boot stage +{:.3} ms: VM stopped: {reason}",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    vm.teardown();
    for p in own_socket.into_iter().chain(ready_socket) {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::io::stdout().flush();
    Ok(reason)
}
