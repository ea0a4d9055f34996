//! A booted VM inside the supervisor process: the VMM runs on threads of
//! its own, the guest's agent is reached through the vsock bridge socket
//! in the container's directory.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use isola_protocol::{Request, AGENT_READY_PORT};
use isola_vmm::devices::ExitNotifier;
use isola_vmm::exit::VmExitReason;
use isola_vmm::host_check::{kvm_capability, KvmCapability};
use isola_vmm::virtio::vsock::host::guest_port_path;
use isola_vmm::{assets, ConsoleMode, DiskConfig, Vm, VmConfig};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::agent::{agent_error, connect_agent};
use super::template;
use super::volumes::{FsDaemons, Volume};
use super::{VmSize, VSOCK_SOCKET};
use crate::error::{Error, Result};
use crate::paths::SocketDir;

/// How long a guest may take from launch to its agent's READY. Generous:
/// under nested, emulated virtualization a boot takes seconds.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Boots tried before a guest that keeps resetting early is given up.
const BOOT_ATTEMPTS: u32 = 3;

/// Why one boot failed.
enum BootError {
    EarlyReset,
    /// The agent did not announce itself in time.
    Silent,
    /// The VM started from a template did not answer as it should: the
    /// template goes, and the VM boots instead.
    Template(PathBuf, Error),
    Other(Error),
}

impl From<Error> for BootError {
    fn from(e: Error) -> Self {
        BootError::Other(e)
    }
}

/// Guest CID of every container VM: each VM has its own bridge, so they
/// need not differ.
const GUEST_CID: u64 = 3;

/// Why the VM ended, once it has; set by the thread that runs it.
type EndState = Arc<(Mutex<Option<VmExitReason>>, Condvar)>;

pub struct Sandbox {
    exit: ExitNotifier,
    ended: EndState,
    /// The volumes' virtiofsd processes, killed if they outlive the VM.
    _daemons: FsDaemons,
    /// Held so the bridge's short path stays valid in this process.
    _sockets: SocketDir,
}

impl Sandbox {
    /// Boots the VM of the container whose directory is `dir`, with the
    /// image disk `disk` (if any) attached read-only, and waits for its agent.
    ///
    /// With `templates` (the root's template directory), a VM that a
    /// template can serve starts from one, made first if needed (see
    /// [`super::template`]); otherwise, or if that fails, it boots.
    pub fn boot(
        dir: &Path,
        disk: Option<&Path>,
        scratch: Option<&Path>,
        volumes: &[Volume],
        size: VmSize,
        console_log: Option<PathBuf>,
        templates: Option<&Path>,
    ) -> Result<Sandbox> {
        if let KvmCapability::NoHardware(why) = kvm_capability() {
            return Err(Error::Vm(format!(
                "vm isolation needs a KVM that runs Linux guests, and this host's does not \
                 ({why}); use --isolation=process, or run isola where VT-x/AMD-V is available"
            )));
        }
        let mut attempt = 1;
        let mut templates = templates.filter(|_| template::enabled());
        loop {
            let booted = Self::boot_once(
                dir,
                disk,
                scratch,
                volumes,
                size,
                console_log.clone(),
                templates,
            );
            let retried = match &booted {
                Err(BootError::EarlyReset) => attempt < BOOT_ATTEMPTS,
                Err(BootError::Silent) => attempt < 2,
                _ => false,
            };
            if let (true, Some(log)) = (retried, &console_log) {
                // Kept for whoever debugs it: the next boot writes anew.
                let _ = std::fs::rename(log, log.with_extension(format!("attempt{attempt}.log")));
            }
            match booted {
                // A guest that resets before its agent is up has run no
                // container code, so booting it again is safe. Emulated
                // virtualization (the nested test host) does this now and
                // then under load; real hardware should never.
                Err(BootError::EarlyReset) if attempt < BOOT_ATTEMPTS => {
                    tracing::warn!(
                        "the guest reset during boot (attempt {attempt}); booting again"
                    );
                    attempt += 1;
                }
                Err(BootError::EarlyReset) => {
                    return Err(Error::Vm(format!(
                        "the guest reset during boot {BOOT_ATTEMPTS} times in a row"
                    )))
                }
                // Likewise a guest whose agent never announced itself (seen
                // once among ten nested guests booting at once); one more try.
                Err(BootError::Silent) if attempt < 2 => {
                    tracing::warn!(
                        "the guest agent did not come up within {} s (attempt {attempt}); booting again",
                        BOOT_TIMEOUT.as_secs()
                    );
                    attempt += 1;
                }
                Err(BootError::Silent) => {
                    return Err(Error::Vm(format!(
                        "the guest agent did not come up within {} s",
                        BOOT_TIMEOUT.as_secs()
                    )))
                }
                Err(BootError::Template(t, e)) => {
                    tracing::warn!(
                        "the VM started from the template {} failed ({e}); dropping the \
                         template and booting",
                        t.display()
                    );
                    template::discard(&t);
                    templates = None;
                }
                Err(BootError::Other(e)) => return Err(e),
                Ok(s) => return Ok(s),
            }
        }
    }

    fn boot_once(
        dir: &Path,
        disk: Option<&Path>,
        scratch: Option<&Path>,
        volumes: &[Volume],
        size: VmSize,
        console_log: Option<PathBuf>,
        templates: Option<&Path>,
    ) -> std::result::Result<Sandbox, BootError> {
        let not_found = |what: &str| {
            Error::Vm(format!(
                "no guest {what} found (looked in {}); run the README's build",
                assets::searched()
            ))
        };
        let kernel = assets::default_kernel().ok_or_else(|| not_found("kernel"))?;
        let initramfs = assets::default_initramfs().ok_or_else(|| not_found("initramfs"))?;
        let sockets = SocketDir::open(dir).map_err(Error::io(dir))?;
        let uds = sockets.path(VSOCK_SOCKET);
        let ready_path = guest_port_path(&uds, AGENT_READY_PORT);
        let _ = std::fs::remove_file(&ready_path);
        let ready =
            UnixListener::bind(&ready_path).map_err(Error::io(dir.join("vsock.sock_1025")))?;
        // Per boot: a virtiofsd ends when its VMM hangs up.
        let (daemons, filesystems) = FsDaemons::start(dir, &sockets, volumes)?;

        let config = VmConfig {
            kernel,
            initramfs: Some(initramfs),
            mem_mib: size.mem_mib,
            vcpus: size.vcpus,
            // vda: the image (IMAGE_DEVICE); vdb: the writable layer's disk
            // (SCRATCH_DEVICE), if any. A root shared over virtio-fs has
            // neither.
            disks: disk
                .map(|d| DiskConfig {
                    path: d.to_path_buf(),
                    read_only: true,
                })
                .into_iter()
                .chain(scratch.map(|s| DiskConfig {
                    path: s.to_path_buf(),
                    read_only: false,
                }))
                .collect(),
            vsock_uds: Some(uds),
            filesystems,
            guest_cid: GUEST_CID,
            console: console_log.map_or(ConsoleMode::Off, ConsoleMode::File),
            // A debugging aid, like ISOLA_VM_CONSOLE: say `printk.time=1
            // isola.log=debug` to see where a guest spends its time.
            cmdline_extra: std::env::var("ISOLA_VM_CMDLINE").unwrap_or_default(),
        };
        let template = match templates.zip(template::key(&config)) {
            Some((templates, key)) => match Self::from_template(&config, templates, &key, &ready) {
                Ok(found) => Some(found),
                Err(e) => {
                    tracing::warn!("cannot start from a template ({e}); booting instead");
                    None
                }
            },
            None => None,
        };
        let (mut vm, restored_from) = match template {
            Some((vm, from)) => (vm, Some(from)),
            None => (
                Vm::new(&config).map_err(|e| Error::Vm(format!("cannot build the VM: {e}")))?,
                None,
            ),
        };
        let exit = vm.exit_notifier();
        vm.start()
            .map_err(|e| Error::Vm(format!("cannot start the VM: {e}")))?;
        let ended: EndState = Arc::new((Mutex::new(None), Condvar::new()));
        let state = Arc::clone(&ended);
        std::thread::Builder::new()
            .name("vm".into())
            .spawn(move || {
                let reason = vm.wait();
                // This process may live on (a VM that failed to come up is
                // followed by another boot): no guest may keep running.
                vm.halt_vcpus();
                vm.teardown();
                let (lock, cvar) = &*state;
                *lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                cvar.notify_all();
            })
            .map_err(Error::io("vm thread"))?;
        let sandbox = Sandbox {
            exit,
            ended,
            _daemons: daemons,
            _sockets: sockets,
        };
        let waited = match restored_from {
            None => sandbox.wait_ready(&ready),
            Some(from) => settle_restored(dir).map_err(|e| BootError::Template(from, e)),
        };
        let _ = std::fs::remove_file(&ready_path);
        match waited {
            Ok(()) => Ok(sandbox),
            Err(e) => {
                sandbox.stop();
                Err(e)
            }
        }
    }

    /// A VM restored from the template for `config` (made first if there
    /// is none), and the template's directory.
    fn from_template(
        config: &VmConfig,
        templates: &Path,
        key: &str,
        ready: &UnixListener,
    ) -> Result<(Vm, PathBuf)> {
        let t0 = Instant::now();
        let dir = template::ensure(templates, key, |into| make_template(config, ready, into))?;
        match Vm::restore(config, &dir) {
            Ok(vm) => {
                tracing::debug!(
                    "VM restored from {} in {} ms",
                    dir.display(),
                    t0.elapsed().as_millis()
                );
                Ok((vm, dir))
            }
            Err(e) => {
                // Only the template's own fault (its files, or a machine
                // other than its key says) drops it; this container's disk
                // or socket failing does not.
                if matches!(e, isola_vmm::VmError::Snapshot(_)) {
                    template::discard(&dir);
                }
                Err(Error::Vm(format!(
                    "cannot restore the template {}: {e}",
                    dir.display()
                )))
            }
        }
    }

    /// Waits for the agent's READY line, or the VM's early end.
    fn wait_ready(&self, ready: &UnixListener) -> std::result::Result<(), BootError> {
        match await_announcement(ready, || self.ended()) {
            // The line's content does not matter; the connection is the
            // announcement.
            Announcement::Ready(_) => Ok(()),
            Announcement::Ended(VmExitReason::Reset) => Err(BootError::EarlyReset),
            Announcement::Ended(reason) => Err(BootError::Other(Error::Vm(format!(
                "the VM stopped before its agent was up: {reason}"
            )))),
            Announcement::TimedOut => Err(BootError::Silent),
        }
    }

    /// Why the VM ended, if it has.
    pub fn ended(&self) -> Option<VmExitReason> {
        self.ended
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A receiver that gets the reason once the VM ends.
    pub fn end_watch(&self) -> Receiver<VmExitReason> {
        let (tx, rx) = mpsc::channel();
        let state = Arc::clone(&self.ended);
        std::thread::spawn(move || {
            let (lock, cvar) = &*state;
            let mut reason = lock.lock().unwrap_or_else(|p| p.into_inner());
            while reason.is_none() {
                reason = cvar.wait(reason).unwrap_or_else(|p| p.into_inner());
            }
            if let Some(r) = reason.clone() {
                let _ = tx.send(r);
            }
        });
        rx
    }

    /// Stops the VM (its vCPUs leave the guest, the bridge socket goes) and
    /// waits briefly for its teardown.
    pub fn stop(&self) {
        self.exit.notify(VmExitReason::Terminated(0));
        let (lock, cvar) = &*self.ended;
        let reason = lock.lock().unwrap_or_else(|p| p.into_inner());
        let _ = cvar.wait_timeout_while(reason, Duration::from_secs(5), |r| r.is_none());
    }
}

/// How waiting for the agent's READY ended.
enum Announcement {
    Ready(UnixStream),
    Ended(VmExitReason),
    TimedOut,
}

/// Waits up to [`BOOT_TIMEOUT`] for the agent to connect to `ready`,
/// watching `ended` for the VM's early end.
fn await_announcement(
    ready: &UnixListener,
    ended: impl Fn() -> Option<VmExitReason>,
) -> Announcement {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        if let Some(reason) = ended() {
            return Announcement::Ended(reason);
        }
        if Instant::now() >= deadline {
            return Announcement::TimedOut;
        }
        let mut fds = [PollFd::new(ready, PollFlags::IN)];
        let tick = Timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        if poll(&mut fds, Some(&tick)).unwrap_or(0) > 0 {
            if let Ok((stream, _)) = ready.accept() {
                return Announcement::Ready(stream);
            }
        }
    }
}

/// Boots a VM as `config` describes, waits for its agent's READY, and
/// saves it into `into`; the VM ends there.
fn make_template(config: &VmConfig, ready: &UnixListener, into: &Path) -> Result<()> {
    let t0 = Instant::now();
    let vm_error = |what: &str| {
        let what = what.to_owned();
        move |e: isola_vmm::VmError| Error::Vm(format!("{what}: {e}"))
    };
    let mut vm = Vm::new(config).map_err(vm_error("cannot build the template's VM"))?;
    vm.start()
        .map_err(vm_error("cannot start the template's VM"))?;
    let made = (|| {
        match await_announcement(ready, || vm.try_ended()) {
            Announcement::Ready(mut announced) => {
                // Read to the agent's close, so that the stream is done on
                // the guest's side too before the snapshot.
                let _ = announced.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = std::io::copy(&mut announced, &mut std::io::sink());
            }
            Announcement::Ended(reason) => {
                return Err(Error::Vm(format!(
                    "the template's VM stopped before its agent was up: {reason}"
                )))
            }
            Announcement::TimedOut => {
                return Err(Error::Vm(format!(
                    "the template's agent did not come up within {} s",
                    BOOT_TIMEOUT.as_secs()
                )))
            }
        }
        let booted = t0.elapsed();
        let bytes = vm
            .snapshot(into)
            .map_err(vm_error("cannot save the template"))?;
        tracing::info!(
            "made a VM template in {}: booted in {} ms, saved {} MiB of RAM in {} ms",
            into.display(),
            booted.as_millis(),
            bytes >> 20,
            (t0.elapsed() - booted).as_millis()
        );
        Ok(())
    })();
    vm.stop();
    vm.teardown();
    made
}

/// The restored guest's first request: its clock, RNG and block caches
/// (see [`Request::Restored`]). Its answer is also the sign that the agent
/// lives on in the restored VM.
fn settle_restored(dir: &Path) -> Result<()> {
    let mut agent = connect_agent(dir)?;
    agent
        .stream()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(Error::io(dir))?;
    agent.handshake().map_err(agent_error)?;
    agent
        .expect_ok(Request::Restored {
            unix_time_ns: template::now_ns(),
            entropy: template::entropy()?,
        })
        .map_err(agent_error)
}
