//! One run of the test host: gather the inputs, start QEMU, forward the command's output
//! live, watch the heartbeat, and turn what happened into an exit status.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::assets::Assets;
use crate::console::{ConsoleTail, ControlEvent, ControlParser};
use crate::qemu::{self, PortFds, QemuConfig};
use crate::spec::{self, Mode, RunSpec};
use crate::watchdog::{Stall, Watchdog, HEARTBEAT_SECS};
use crate::{initramfs, layout, signals};

/// Exit status when the outer guest stopped giving signs of life (like timeout(1)).
pub const EXIT_STALL: i32 = 124;
/// Exit status when the test host itself failed (QEMU died, the guest could not set up...).
pub const EXIT_FAILURE: i32 = 125;
/// Exit status when the command ran past `--time-limit` (as timeout(1) says it too).
pub const EXIT_TIMED_OUT: i32 = 124;

/// How long QEMU gets to power off after the command's exit status arrived.
const POWEROFF_GRACE: Duration = Duration::from_secs(20);
/// How long QEMU gets to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// Console lines shown when something goes wrong.
const TAIL_LINES: usize = 50;
/// The 9p message size (the virtio transport's limit in Linux 6.1 is about 512 KiB).
const MSIZE: u32 = 512_000;
/// PATH after the project's binary directories.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone)]
pub struct Options {
    pub qemu: PathBuf,
    pub cpus: u32,
    pub mem_mib: u32,
    pub stall_timeout: Duration,
    /// The longest the command may run; past it QEMU is stopped and the
    /// run fails (a hung test must not eat a CI run's whole budget).
    pub time_limit: Option<Duration>,
    pub keep_console: Option<PathBuf>,
    pub mode: Mode,
    /// The command (for [`Mode::Shell`]: the shell to start, empty for the default).
    pub argv: Vec<OsString>,
    /// The caller's working directory.
    pub cwd: PathBuf,
    /// The read-write work tree; found from `cwd` when `None`.
    pub workdir: Option<PathBuf>,
    /// More read-write shares.
    pub extra_shares: Vec<PathBuf>,
    /// Extra variables for the command (after the passed-through ones).
    pub extra_env: Vec<(String, OsString)>,
    /// Appended to the kernel command line.
    pub kernel_args: Vec<String>,
    /// `${ISOLA_CACHE:-/var/cache/isola}/testhost`.
    pub cache: PathBuf,
}

/// How a run ended.
#[derive(Debug)]
enum Outcome {
    Exited(u8),
    GuestError(String),
    QemuExited(ExitStatus),
    Stalled(Stall),
    TimedOut(Duration),
    Signal(i32),
}

enum Event {
    Control(ControlEvent),
    ControlClosed,
}

/// What a run came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The exit status for the caller.
    pub status: i32,
    /// The test host itself failed (its kernel died, QEMU exited, it
    /// stalled) before the command finished: nothing the command did.
    pub host_failed: bool,
}

/// Runs the command in the test host. Errors are problems found before QEMU
/// started (missing kernel, bad options...).
pub fn run(opts: &Options) -> Result<Finished> {
    let t0 = Instant::now();
    let version = qemu::check_version(&opts.qemu)?;
    tracing::debug!(?version, qemu = %opts.qemu.display(), "QEMU");
    let assets = Assets::locate(&opts.cache)?;
    let initrd = initramfs::build_cached(&assets, &opts.cache)?;

    let cwd = fs::canonicalize(&opts.cwd)
        .with_context(|| format!("working directory {}", opts.cwd.display()))?;
    let worktree = match &opts.workdir {
        Some(w) => fs::canonicalize(w).with_context(|| format!("--workdir {}", w.display()))?,
        None => layout::find_worktree(&cwd),
    };
    let mut dirs = vec![worktree.clone()];
    dirs.extend(opts.extra_shares.iter().cloned());
    let shares = layout::shares(&dirs)?;
    let target = layout::target_dir(
        &worktree,
        std::env::var_os("CARGO_TARGET_DIR")
            .as_deref()
            .map(Path::new),
    );
    tracing::debug!(worktree = %worktree.display(), ?shares, "layout");

    let argv = match (opts.mode, opts.argv.is_empty()) {
        (Mode::Shell, true) => vec![default_shell()],
        _ => opts.argv.clone(),
    };
    let env = command_env(opts, &assets, &layout::binary_dirs(&target));
    let run_spec = RunSpec {
        mode: opts.mode,
        cwd,
        env,
        argv,
        shares: shares.clone(),
        // The tree holding `<kver>/` goes over the host's /lib/modules, so modprobe finds
        // the test host kernel's modules there.
        modules_bind: fs::canonicalize("/lib")
            .ok()
            .map(|lib| lib.join("modules"))
            .zip(assets.modules_dir.parent().map(Path::to_path_buf))
            .map(|(dst, src)| (src, dst)),
        heartbeat_secs: HEARTBEAT_SECS,
        msize: MSIZE,
    }
    .render()?;
    let rundir = RunDir::create()?;
    let spec_file = rundir.path.join("spec");
    fs::write(&spec_file, &run_spec).with_context(|| format!("writing {}", spec_file.display()))?;

    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ctl_r, ctl_w) = pipe()?;
    let interactive = opts.mode == Mode::Shell;
    let config = QemuConfig {
        cpus: opts.cpus,
        mem_mib: opts.mem_mib,
        kernel: assets.boot_kernel().to_path_buf(),
        initrd,
        append: std::iter::once(qemu::KERNEL_APPEND)
            .chain(opts.kernel_args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        host_root: "/".into(),
        shares,
        ports: PortFds {
            stdout: out_w.as_raw_fd(),
            stderr: err_w.as_raw_fd(),
            ctl: ctl_w.as_raw_fd(),
        },
        spec_file,
        console_log: opts.keep_console.clone(),
        interactive,
    };
    let args = config.args();
    tracing::debug!(?args, "starting QEMU");

    signals::install().context("installing signal handlers")?;
    let mut cmd = Command::new(&opts.qemu);
    cmd.args(&args).stderr(Stdio::piped());
    if interactive {
        cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit());
    } else {
        // Its own process group: a Ctrl-C on the terminal reaches us, and we stop QEMU.
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0);
    }
    let inherited = [out_w.as_raw_fd(), err_w.as_raw_fd(), ctl_w.as_raw_fd()];
    // The closure runs in the child between fork and exec; the pipe ends above outlive it.
    // SAFETY: it only calls fcntl and prctl (async-signal-safe) on open descriptors,
    // and neither allocates nor takes locks.
    unsafe {
        cmd.pre_exec(move || {
            for fd in inherited {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", opts.qemu.display()))?;
    // Only QEMU holds the write ends now, so the readers see EOF when it exits.
    drop((out_w, err_w, ctl_w));
    tracing::info!(
        kernel = %assets.kernel_version,
        pid = child.id(),
        "test host starting ({:.2}s of preparation)",
        t0.elapsed().as_secs_f64()
    );

    let tail = Arc::new(Mutex::new(ConsoleTail::new(TAIL_LINES)));
    let mut readers = vec![
        forward(File::from(out_r), io::stdout, "stdout"),
        forward(File::from(err_r), io::stderr, "stderr"),
        read_qemu_stderr(child.stderr.take(), Arc::clone(&tail)),
    ];
    if let Some(stdout) = child.stdout.take() {
        readers.push(read_console(stdout, Arc::clone(&tail)));
    }
    let (tx, rx) = mpsc::channel();
    readers.push(read_control(File::from(ctl_r), tx));

    let outcome = supervise(&mut child, &rx, opts, t0);
    let host_failed = matches!(
        outcome,
        Outcome::GuestError(_) | Outcome::QemuExited(_) | Outcome::Stalled(_)
    );
    let status = finish(&mut child, outcome, &tail, opts, interactive);
    for reader in readers {
        let _ = reader.join();
    }
    tracing::info!("round trip {:.2}s", t0.elapsed().as_secs_f64());
    Ok(Finished {
        status,
        host_failed,
    })
}

/// Watches QEMU, the control channel, the watchdog and the signals until something ends
/// the run.
fn supervise(child: &mut Child, rx: &Receiver<Event>, opts: &Options, t0: Instant) -> Outcome {
    let mut dog = Watchdog::new(opts.stall_timeout, Instant::now());
    let mut control_open = true;
    loop {
        let event = if control_open {
            rx.recv_timeout(Duration::from_millis(200))
        } else {
            thread::sleep(Duration::from_millis(200));
            Err(RecvTimeoutError::Timeout)
        };
        match event {
            Ok(Event::Control(ev)) => {
                dog.beat(Instant::now());
                if let Some(outcome) = on_control(ev, t0) {
                    return outcome;
                }
            }
            Ok(Event::ControlClosed) | Err(RecvTimeoutError::Disconnected) => {
                control_open = false;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Some(sig) = signals::pending() {
            return Outcome::Signal(sig);
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                // The exit marker may still be on its way through the reader thread.
                return drain_control(rx, control_open).unwrap_or(Outcome::QemuExited(status));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "waiting for QEMU"),
        }
        if let Some(stall) = dog.check(Instant::now()) {
            return Outcome::Stalled(stall);
        }
        if let Some(limit) = opts.time_limit.filter(|l| t0.elapsed() > *l) {
            return Outcome::TimedOut(limit);
        }
    }
}

fn on_control(ev: ControlEvent, t0: Instant) -> Option<Outcome> {
    match ev {
        ControlEvent::Heartbeat => None,
        ControlEvent::Ready => {
            tracing::info!("test host ready after {:.2}s", t0.elapsed().as_secs_f64());
            None
        }
        ControlEvent::Exit(n) => {
            tracing::info!(
                "command exited with {n} after {:.2}s",
                t0.elapsed().as_secs_f64()
            );
            Some(Outcome::Exited(n))
        }
        ControlEvent::Error(msg) => Some(Outcome::GuestError(msg)),
        ControlEvent::Unknown(line) => {
            tracing::debug!(%line, "unexpected control line");
            None
        }
    }
}

/// After QEMU exited: the control events still queued, up to the end of the channel.
fn drain_control(rx: &Receiver<Event>, open: bool) -> Option<Outcome> {
    if !open {
        return None;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Event::Control(ControlEvent::Exit(n))) => return Some(Outcome::Exited(n)),
            Ok(Event::Control(ControlEvent::Error(m))) => return Some(Outcome::GuestError(m)),
            Ok(Event::Control(_)) => {}
            Ok(Event::ControlClosed) | Err(_) => return None,
        }
    }
    None
}

/// Stops QEMU as the outcome requires and reports; returns the exit status.
fn finish(
    child: &mut Child,
    outcome: Outcome,
    tail: &Mutex<ConsoleTail>,
    opts: &Options,
    interactive: bool,
) -> i32 {
    let (status, problem) = match outcome {
        Outcome::Exited(n) => {
            if !wait_for_exit(child, POWEROFF_GRACE) {
                tracing::warn!("the test host did not power off; stopping QEMU");
                terminate(child);
            }
            (i32::from(n), None)
        }
        Outcome::GuestError(msg) => {
            if !wait_for_exit(child, POWEROFF_GRACE) {
                terminate(child);
            }
            (EXIT_FAILURE, Some(format!("the test host failed: {msg}")))
        }
        Outcome::QemuExited(st) => (
            EXIT_FAILURE,
            Some(format!("QEMU exited ({st}) before the command finished")),
        ),
        Outcome::Stalled(stall) => {
            terminate(child);
            let what = if stall.booted {
                "the test host stalled: no heartbeat"
            } else {
                "the test host did not boot: no heartbeat"
            };
            (
                EXIT_STALL,
                Some(format!(
                    "{what} for {:.1}s (--stall-timeout {}s); QEMU killed",
                    stall.silent_for.as_secs_f64(),
                    opts.stall_timeout.as_secs()
                )),
            )
        }
        Outcome::TimedOut(limit) => {
            terminate(child);
            (
                EXIT_TIMED_OUT,
                Some(format!(
                    "the command ran past --time-limit {}s; QEMU stopped",
                    limit.as_secs()
                )),
            )
        }
        Outcome::Signal(sig) => {
            terminate(child);
            (
                128 + sig,
                Some(format!("interrupted by signal {sig}; QEMU stopped")),
            )
        }
    };
    if let Some(problem) = problem {
        let mut err = io::stderr().lock();
        if !interactive {
            let lines = tail.lock().map(|t| t.lines()).unwrap_or_default();
            let _ = writeln!(
                err,
                "---- last {} lines of the test host console ----",
                lines.len()
            );
            for line in lines {
                let _ = writeln!(err, "{line}");
            }
            let _ = writeln!(err, "---- end of console ----");
        }
        if let Some(log) = &opts.keep_console {
            let _ = writeln!(err, "isola-testhost: full console log in {}", log.display());
        }
        let _ = writeln!(err, "isola-testhost: error: {problem}");
    }
    status
}

/// Waits up to `limit` for QEMU to exit by itself; true if it did.
fn wait_for_exit(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline && signals::pending().is_none() => {
                thread::sleep(Duration::from_millis(50));
            }
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "waiting for QEMU");
                return false;
            }
        }
    }
}

/// SIGTERM (QEMU then restores the terminal), SIGKILL if it does not go.
fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with the pid of our own child, which has not been reaped yet (try_wait
        // above returned None), so the pid cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    if let Err(e) = child.kill() {
        tracing::warn!(error = %e, "killing QEMU");
    }
    let _ = child.wait();
}

/// The command's environment: a clean one with PATH, HOME, the marker variable and the
/// kernel's location, then the variables passed through, then `--env`; later wins.
fn command_env(opts: &Options, assets: &Assets, bin_dirs: &[PathBuf]) -> Vec<(String, OsString)> {
    let mut path = OsString::new();
    for dir in bin_dirs {
        path.push(dir);
        path.push(":");
    }
    path.push(SYSTEM_PATH);
    let term = match opts.mode {
        Mode::Shell => std::env::var_os("TERM").unwrap_or_else(|| "vt100".into()),
        Mode::Command => "dumb".into(),
    };
    let mut env: Vec<(String, OsString)> = vec![
        ("PATH".into(), path),
        ("HOME".into(), "/root".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TERM".into(), term),
        ("USER".into(), "root".into()),
    ];
    env.extend(spec::select_env(std::env::vars_os()));
    env.push((spec::IN_TESTHOST_ENV.into(), "1".into()));
    env.push((
        "ISOLA_TESTHOST_KERNEL".into(),
        assets.vmlinuz.clone().into(),
    ));
    if let Some(vmlinux) = &assets.vmlinux {
        env.push(("ISOLA_TESTHOST_VMLINUX".into(), vmlinux.clone().into()));
    }
    env.push((
        "ISOLA_TESTHOST_KERNEL_VERSION".into(),
        assets.kernel_version.clone().into(),
    ));
    env.extend(opts.extra_env.iter().cloned());
    // Keep the last value of each name, in first-seen order.
    let mut out: Vec<(String, OsString)> = Vec::with_capacity(env.len());
    for (k, v) in env {
        match out.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

fn default_shell() -> OsString {
    if Path::new("/bin/bash").exists() {
        "/bin/bash".into()
    } else {
        "/bin/sh".into()
    }
}

/// A pipe whose ends are close-on-exec (QEMU gets its end through `pre_exec`).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two descriptors into the two-element array we pass.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Copies a port's bytes to our stdout/stderr as they come. Keeps draining even if our
/// side is closed, so the guest never blocks on a full pipe.
fn forward<W, F>(mut from: File, to: F, name: &'static str) -> JoinHandle<()>
where
    W: Write,
    F: Fn() -> W + Send + 'static,
{
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = to();
        let mut broken = false;
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) if !broken => {
                    if let Err(e) = out.write_all(&buf[..n]).and_then(|()| out.flush()) {
                        tracing::debug!(error = %e, "{name} closed; discarding the rest");
                        broken = true;
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading the command's {name}");
                    break;
                }
            }
        }
    })
}

fn read_control(mut from: File, tx: mpsc::Sender<Event>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut parser = ControlParser::new();
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    for ev in parser.feed(&buf[..n]) {
                        if tx.send(Event::Control(ev)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading the control channel");
                    break;
                }
            }
        }
        let _ = tx.send(Event::ControlClosed);
    })
}

fn read_console<R: Read + Send + 'static>(
    mut from: R,
    tail: Arc<Mutex<ConsoleTail>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let lines = match tail.lock() {
                        Ok(mut t) => t.push(&buf[..n]),
                        Err(_) => break,
                    };
                    for line in lines {
                        tracing::debug!(target: "isola_testhost::console", "{line}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    })
}

fn read_qemu_stderr<R: Read + Send + 'static>(
    from: Option<R>,
    tail: Arc<Mutex<ConsoleTail>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let Some(from) = from else { return };
        let mut reader = BufReader::new(from);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end();
            if qemu::is_noise(line) {
                tracing::debug!("{line}");
                continue;
            }
            tracing::warn!("{line}");
            if let Ok(mut t) = tail.lock() {
                t.note(&format!("[qemu] {line}"));
            }
        }
    })
}

/// A private temporary directory for the run's files, removed on drop.
struct RunDir {
    path: PathBuf,
}

const RUNDIR_PREFIX: &str = "isola-testhost.";

impl RunDir {
    fn create() -> Result<Self> {
        let base = std::env::temp_dir();
        remove_orphaned_rundirs(&base);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = base.join(format!("{RUNDIR_PREFIX}{}.{nanos:x}", std::process::id()));
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }
}

/// Run directories left by runs that were killed (SIGKILL skips the cleanup): those whose
/// process is gone.
fn remove_orphaned_rundirs(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(RUNDIR_PREFIX))
            .and_then(|rest| rest.split('.').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
