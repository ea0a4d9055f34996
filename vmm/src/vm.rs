//! Putting a VM together: KVM, memory, irqchip, kernel, devices, vCPUs.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{IoEventAddress, Kvm, VcpuFd, VmFd};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::Killable;

use crate::arch::{cpu, layout, loader, memory, mptable, pvh};
use crate::config::{ConsoleMode, VmConfig};
use crate::devices::bus::Bus;
use crate::devices::legacy::i8042::I8042;
use crate::devices::legacy::power::PowerPort;
use crate::devices::legacy::serial::{ConsoleWriter, SerialConsole, SerialRegs};
use crate::devices::{ExitNotifier, IrqLine};
use crate::exit::VmExitReason;
use crate::snapshot::{
    guest_ram, vcpu_state, MachineState, SnapshotError, VcpuState, VmState, FORMAT_VERSION,
    MEMORY_FILE,
};
use crate::vcpu::{install_kick_handler, kick_signal, Handover, VcpuRunner};
use crate::virtio::block::Block;
use crate::virtio::fs::VhostUserFs;
use crate::virtio::mmio::{MmioTransport, REG_QUEUE_NOTIFY};
use crate::virtio::vsock::Vsock;
use crate::virtio::VirtioDevice;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot open /dev/kvm: {0}")]
    Kvm(kvm_ioctls::Error),
    #[error("KVM refused {what}: {source}")]
    KvmOp {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    #[error(transparent)]
    Load(#[from] loader::LoadError),
    #[error(transparent)]
    Cpu(#[from] cpu::CpuError),
    #[error(transparent)]
    MpTable(#[from] mptable::MpTableError),
    #[error("guest memory: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
    #[error(transparent)]
    Block(#[from] crate::virtio::block::device::BlockError),
    #[error(transparent)]
    Vsock(#[from] crate::virtio::vsock::device::VsockError),
    #[error(transparent)]
    Fs(#[from] crate::virtio::fs::FsError),
    #[error(transparent)]
    Transport(#[from] crate::virtio::mmio::TransportError),
    #[error(transparent)]
    Bus(#[from] crate::devices::bus::BusOverlap),
    #[error("cannot open console file {path}: {source}")]
    Console {
        path: String,
        source: std::io::Error,
    },
    #[error("snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

fn kvm_op(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::KvmOp { what, source }
}

fn io_op(what: &'static str) -> impl FnOnce(std::io::Error) -> VmError {
    move |source| VmError::Io { what, source }
}

pub struct Vm {
    kvm: Kvm,
    vm_fd: Arc<VmFd>,
    mem: GuestMemoryMmap,
    mem_mib: u64,
    vcpus: Vec<VcpuRunner>,
    vcpu_count: u8,
    threads: Vec<(u8, JoinHandle<()>)>,
    handover: Arc<Handover>,
    handed_over: Receiver<(u8, VcpuFd)>,
    exit_tx: ExitNotifier,
    exit_rx: Receiver<VmExitReason>,
    panicked: Arc<AtomicBool>,
    disk_files: Vec<(Arc<File>, bool)>,
    vsock_uds: Option<PathBuf>,
    serial: Arc<Mutex<SerialConsole>>,
    transports: Vec<Arc<Mutex<MmioTransport>>>,
    vsock_in_flight: Option<Arc<AtomicUsize>>,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
}

/// Everything built so far, for the timing log.
fn stage(t0: Instant, what: &str) {
    tracing::debug!(
        "boot stage +{:.3} ms: {what}",
        t0.elapsed().as_secs_f64() * 1000.0
    );
}

/// How long a snapshot waits for the vsock bridge to have nothing in flight.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// Checks, 10 ms apart, that must all find the bridge idle.
const IDLE_ROUNDS: u32 = 3;
/// How long a snapshot gives KVM to inject an interrupt a stopping device
/// raised.
const IRQFD_SETTLE: Duration = Duration::from_millis(10);
/// How long a snapshot waits for the vCPUs to leave the guest.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(2);

impl Vm {
    /// A VM that boots `cfg.kernel` from its entry point.
    pub fn new(cfg: &VmConfig) -> Result<Self, VmError> {
        let t0 = Instant::now();
        let (mut vm, cmdline_devices) = Self::build(cfg, None, t0)?;
        match vm.load_and_set_up_vcpus(cfg, &cmdline_devices, t0) {
            Ok(()) => Ok(vm),
            Err(e) => {
                // The vsock socket is bound already; nothing else is left.
                vm.teardown();
                Err(e)
            }
        }
    }

    fn load_and_set_up_vcpus(
        &mut self,
        cfg: &VmConfig,
        cmdline_devices: &[String],
        t0: Instant,
    ) -> Result<(), VmError> {
        // Kernel, initramfs, command line, boot tables.
        let kernel = loader::load_kernel(&self.mem, &cfg.kernel)?;
        stage(t0, "kernel loaded");
        let mem_bytes = cfg.mem_mib << 20;
        let initramfs = match &cfg.initramfs {
            Some(p) => Some(loader::load_initramfs(
                &self.mem,
                p,
                kernel.kernel_end,
                memory::low_ram_end(mem_bytes),
            )?),
            None => None,
        };
        let cmdline = build_cmdline(cfg, cmdline_devices);
        tracing::debug!("kernel command line: {cmdline}");
        let cmdline_addr = loader::load_command_line(&self.mem, &cmdline)?;
        let start_info = pvh::write_start_info(
            &self.mem,
            &pvh::PvhParams {
                cmdline_addr,
                initramfs,
                mem_bytes,
            },
        )?;
        mptable::setup_mptable(&self.mem, cfg.vcpus)?;
        stage(t0, "kernel, initramfs and boot tables loaded");

        for id in 0..cfg.vcpus {
            let fd = self.create_vcpu(id)?;
            cpu::setup_msrs(&fd)?;
            cpu::setup_fpu(&fd)?;
            cpu::setup_lapic(&fd)?;
            if id == 0 {
                cpu::setup_pvh_regs(&fd, &self.mem, kernel.pvh_entry.raw_value(), start_info)?;
            }
            self.add_runner(id, fd);
        }
        stage(t0, "vCPUs configured");
        Ok(())
    }

    /// A VM that continues where the one saved in `dir` (by
    /// [`Vm::snapshot`]) stood. `cfg` must describe the same machine: the
    /// same memory, vCPUs and devices in the same order; its disks and
    /// sockets may be other files (another container's).
    pub fn restore(cfg: &VmConfig, dir: &Path) -> Result<Self, VmError> {
        let t0 = Instant::now();
        let state = VmState::read(dir)?;
        if state.mem_mib != cfg.mem_mib || state.vcpus.len() != cfg.vcpus as usize {
            return Err(SnapshotError::Mismatch(format!(
                "saved with {} MiB and {} vCPUs, asked for {} MiB and {}",
                state.mem_mib,
                state.vcpus.len(),
                cfg.mem_mib,
                cfg.vcpus
            ))
            .into());
        }
        let (mut vm, _) = Self::build(cfg, Some(&state.serial), t0)?;
        match vm.restore_state(&state, dir, t0) {
            Ok(()) => Ok(vm),
            Err(e) => {
                vm.teardown();
                Err(e)
            }
        }
    }

    fn restore_state(&mut self, state: &VmState, dir: &Path, t0: Instant) -> Result<(), VmError> {
        if self.transports.len() != state.devices.len() {
            return Err(SnapshotError::Mismatch(format!(
                "{} devices saved, {} configured",
                state.devices.len(),
                self.transports.len()
            ))
            .into());
        }
        let bytes = guest_ram::load(&self.mem, &dir.join(MEMORY_FILE))?;
        stage(t0, &format!("guest RAM read ({} MiB)", bytes >> 20));
        state.machine.restore(&self.vm_fd)?;
        // Device workers start here and may read the rings at once: RAM
        // is already in place.
        for (t, s) in self.transports.iter().zip(&state.devices) {
            t.lock()
                .unwrap_or_else(|p| p.into_inner())
                .restore(s)
                .map_err(SnapshotError::from)?;
        }
        stage(t0, "irqchip, clock and devices restored");
        for (id, s) in state.vcpus.iter().enumerate() {
            let fd = self.create_vcpu(id as u8)?;
            s.restore(&self.kvm, &fd)?;
            self.add_runner(id as u8, fd);
        }
        stage(t0, "vCPUs restored");
        Ok(())
    }

    /// The machine without anything loaded into it: KVM, RAM, irqchip,
    /// legacy and virtio devices. Also returns the devices' command-line
    /// entries.
    fn build(
        cfg: &VmConfig,
        serial_regs: Option<&SerialRegs>,
        t0: Instant,
    ) -> Result<(Self, Vec<String>), VmError> {
        if cfg.vcpus == 0 || cfg.vcpus > VmConfig::MAX_VCPUS {
            return Err(VmError::Config(format!(
                "--cpus must be 1..={}, got {}",
                VmConfig::MAX_VCPUS,
                cfg.vcpus
            )));
        }
        let kvm = Kvm::new().map_err(VmError::Kvm)?;
        let vm_fd = Arc::new(kvm.create_vm().map_err(kvm_op("KVM_CREATE_VM"))?);
        stage(t0, "KVM VM created");

        // Memory first: creating the irqchip before any memory slot exists
        // costs several milliseconds on some hosts.
        let backing = if cfg.filesystems.is_empty() {
            memory::Backing::Anonymous
        } else {
            memory::Backing::SharedMemfd
        };
        let mem = memory::create_guest_memory(cfg.mem_mib, backing)?;
        for (slot, region) in mem.iter().enumerate() {
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                guest_phys_addr: region.start_addr().raw_value(),
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
                flags: 0,
            };
            // SAFETY: the region is a live mapping owned by `mem`, which the
            // Vm keeps for as long as the VM exists.
            unsafe { vm_fd.set_user_memory_region(r) }
                .map_err(kvm_op("KVM_SET_USER_MEMORY_REGION"))?;
        }
        stage(t0, "guest memory registered");
        vm_fd
            .set_tss_address(layout::KVM_TSS_ADDR)
            .map_err(kvm_op("KVM_SET_TSS_ADDR"))?;
        vm_fd
            .create_irq_chip()
            .map_err(kvm_op("KVM_CREATE_IRQCHIP"))?;
        vm_fd
            .create_pit2(kvm_pit_config {
                flags: KVM_PIT_SPEAKER_DUMMY,
                ..Default::default()
            })
            .map_err(kvm_op("KVM_CREATE_PIT2"))?;
        stage(t0, "irqchip and PIT created");

        let (tx, exit_rx) = channel();
        let exit_tx = ExitNotifier::new(tx);
        let panicked = Arc::new(AtomicBool::new(false));

        // Legacy devices.
        let mut pio = Bus::default();
        let sink: Option<Box<dyn Write + Send>> = match &cfg.console {
            ConsoleMode::Off => None,
            ConsoleMode::Stdout => Some(Box::new(std::io::stdout())),
            ConsoleMode::File(p) => Some(Box::new(
                File::options()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| VmError::Console {
                        path: p.display().to_string(),
                        source,
                    })?,
            )),
        };
        let serial_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(io_op("eventfd"))?;
        vm_fd
            .register_irqfd(&serial_irq, layout::SERIAL_IRQ)
            .map_err(kvm_op("KVM_IRQFD (serial)"))?;
        let writer = ConsoleWriter::new(sink, panicked.clone());
        let serial = Arc::new(Mutex::new(match serial_regs {
            None => SerialConsole::new(IrqLine(serial_irq), writer),
            Some(regs) => SerialConsole::restored(IrqLine(serial_irq), writer, regs)
                .map_err(io_op("restoring the serial console"))?,
        }));
        pio.insert(layout::SERIAL_PORT as u64, 8, serial.clone())?;
        pio.insert(
            layout::I8042_DATA_PORT as u64,
            5,
            Arc::new(Mutex::new(I8042::new(exit_tx.clone()))),
        )?;
        pio.insert(
            layout::POWER_PORT as u64,
            1,
            Arc::new(Mutex::new(PowerPort::new(exit_tx.clone()))),
        )?;

        // virtio devices: disks in order (vda, vdb, ...), then vsock, then file systems.
        let mut mmio = Bus::default();
        let mut cmdline_devices = Vec::new();
        let mut disk_files = Vec::new();
        let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
        let mut vsock_in_flight = None;
        for (i, d) in cfg.disks.iter().enumerate() {
            let blk = Block::open(&d.path, d.read_only, i)?;
            disk_files.push((blk.file(), d.read_only));
            devices.push(Box::new(blk));
        }
        if let Some(uds) = &cfg.vsock_uds {
            let vsock = Vsock::new(cfg.guest_cid, uds)?;
            vsock_in_flight = Some(vsock.in_flight());
            devices.push(Box::new(vsock));
        }
        for fs in &cfg.filesystems {
            devices.push(Box::new(VhostUserFs::connect(&fs.socket, &fs.tag, &mem)?));
        }
        let mut transports = Vec::new();
        for (i, dev) in devices.into_iter().enumerate() {
            let base = layout::VIRTIO_MMIO_BASE + i as u64 * layout::VIRTIO_MMIO_SIZE;
            let irq = layout::VIRTIO_IRQ_BASE + i as u32;
            if irq > layout::MAX_IRQ {
                return Err(VmError::Config("too many virtio devices".into()));
            }
            let irqfd = EventFd::new(libc::EFD_NONBLOCK).map_err(io_op("eventfd"))?;
            vm_fd
                .register_irqfd(&irqfd, irq)
                .map_err(kvm_op("KVM_IRQFD (virtio)"))?;
            let transport = MmioTransport::new(dev, mem.clone(), irqfd)?;
            for (q, kick) in transport.kick_fds().iter().enumerate() {
                vm_fd
                    .register_ioevent(
                        kick,
                        &IoEventAddress::Mmio(base + REG_QUEUE_NOTIFY),
                        q as u32,
                    )
                    .map_err(kvm_op("KVM_IOEVENTFD"))?;
            }
            let transport = Arc::new(Mutex::new(transport));
            transports.push(transport.clone());
            mmio.insert(base, layout::VIRTIO_MMIO_SIZE, transport)?;
            cmdline_devices.push(format!("virtio_mmio.device=4K@{base:#x}:{irq}"));
        }
        stage(t0, "devices created");

        let (to, handed_over) = channel();
        Ok((
            Self {
                kvm,
                vm_fd,
                mem,
                mem_mib: cfg.mem_mib,
                vcpus: Vec::new(),
                vcpu_count: cfg.vcpus,
                threads: Vec::new(),
                handover: Arc::new(Handover::new(to)),
                handed_over,
                exit_tx,
                exit_rx,
                panicked,
                disk_files,
                vsock_uds: cfg.vsock_uds.clone(),
                serial,
                transports,
                vsock_in_flight,
                pio: Arc::new(pio),
                mmio: Arc::new(mmio),
            },
            cmdline_devices,
        ))
    }

    fn create_vcpu(&self, id: u8) -> Result<VcpuFd, VmError> {
        let fd: VcpuFd = self
            .vm_fd
            .create_vcpu(id as u64)
            .map_err(kvm_op("KVM_CREATE_VCPU"))?;
        cpu::setup_cpuid(&self.kvm, &fd, id, self.vcpu_count)?;
        Ok(fd)
    }

    fn add_runner(&mut self, id: u8, fd: VcpuFd) {
        self.vcpus.push(VcpuRunner {
            id,
            fd,
            pio: self.pio.clone(),
            mmio: self.mmio.clone(),
            exit: self.exit_tx.clone(),
            handover: self.handover.clone(),
        });
    }

    /// A handle other threads use to stop the VM.
    pub fn exit_notifier(&self) -> ExitNotifier {
        self.exit_tx.clone()
    }

    /// Start the vCPU threads.
    pub fn start(&mut self) -> Result<(), VmError> {
        install_kick_handler().map_err(io_op("installing the vCPU kick handler"))?;
        for runner in self.vcpus.drain(..) {
            let id = runner.id;
            let handle = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn(move || runner.run())
                .map_err(io_op("spawning a vCPU thread"))?;
            self.threads.push((id, handle));
        }
        Ok(())
    }

    /// Saves the running VM to `dir` (which must exist): once the vsock
    /// bridge has nothing in flight, the vCPUs leave the guest for good,
    /// the devices stop, and their state and guest RAM are written. The
    /// VM does not run again; [`Vm::restore`] makes new ones from `dir`.
    /// Returns how many bytes of RAM were written.
    pub fn snapshot(&mut self, dir: &Path) -> Result<u64, VmError> {
        let t0 = Instant::now();
        if let Some(in_flight) = &self.vsock_in_flight {
            // The worker updates the count after each round of work, so a
            // zero only counts once it has held for a while: a host socket
            // closed just now may not have been seen yet.
            let deadline = Instant::now() + IDLE_TIMEOUT;
            let mut quiet = 0;
            while quiet < IDLE_ROUNDS {
                let n = in_flight.load(Ordering::Relaxed);
                quiet = if n == 0 { quiet + 1 } else { 0 };
                if n != 0 && Instant::now() >= deadline {
                    return Err(SnapshotError::Busy(n).into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let fds = self.pause_vcpus()?;
        stage(t0, "snapshot: vCPUs out of the guest");
        // Devices first: a worker that completes a request before it stops
        // raises its interrupt, which must be in the irqchip state read
        // after it. KVM injects an irqfd's interrupt from a work queue, so
        // that gets a moment to land.
        let devices = self
            .transports
            .iter()
            .map(|t| t.lock().unwrap_or_else(|p| p.into_inner()).save())
            .collect::<Result<Vec<_>, _>>()
            .map_err(SnapshotError::from)?;
        std::thread::sleep(IRQFD_SETTLE);
        let machine = MachineState::save(&self.vm_fd)?;
        let msr_indices = vcpu_state::msr_indices(&self.kvm)?;
        let vcpus = fds
            .iter()
            .map(|fd| VcpuState::save(&self.kvm, fd, &msr_indices))
            .collect::<Result<Vec<_>, _>>()?;
        let serial = self.serial.lock().unwrap_or_else(|p| p.into_inner()).regs();
        stage(t0, "snapshot: device state read");
        let written = guest_ram::save(&self.mem, &dir.join(MEMORY_FILE))?;
        VmState {
            version: FORMAT_VERSION,
            mem_mib: self.mem_mib,
            machine,
            vcpus,
            serial,
            devices,
        }
        .write(dir)?;
        stage(
            t0,
            &format!("snapshot: written ({} MiB of RAM)", written >> 20),
        );
        Ok(written)
    }

    /// Takes every vCPU out of the guest and back from its thread, by id.
    fn pause_vcpus(&mut self) -> Result<Vec<VcpuFd>, VmError> {
        self.handover.request();
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        let mut fds: Vec<Option<VcpuFd>> = (0..self.vcpu_count).map(|_| None).collect();
        let mut missing = self.threads.len();
        if missing != self.vcpu_count as usize {
            return Err(VmError::Config(
                "snapshot of a VM that was not started".into(),
            ));
        }
        while missing > 0 {
            if self.exit_tx.stopping() {
                return Err(VmError::Config("the VM stopped during a snapshot".into()));
            }
            for (id, handle) in &self.threads {
                if fds[*id as usize].is_none() {
                    // A vCPU inside KVM_RUN sees the flag only once the
                    // signal interrupts it; again each round, as one sent
                    // just before its entry would be missed.
                    let _ = handle.kill(kick_signal());
                }
            }
            match self.handed_over.recv_timeout(Duration::from_millis(2)) {
                Ok((id, fd)) => {
                    if let Some(slot) = fds.get_mut(id as usize) {
                        if slot.replace(fd).is_none() {
                            missing -= 1;
                        }
                    }
                }
                Err(_) if Instant::now() >= deadline => {
                    return Err(SnapshotError::PauseTimeout(PAUSE_TIMEOUT.as_millis()).into())
                }
                Err(_) => {}
            }
        }
        Ok(fds.into_iter().flatten().collect())
    }

    /// Why the VM stopped, if it has, without waiting.
    pub fn try_ended(&self) -> Option<VmExitReason> {
        self.exit_rx.try_recv().ok()
    }

    /// Stops the VM from another thread of this process and waits briefly
    /// for its vCPU threads to leave the guest (a process that lives on
    /// must not keep a guest running on threads nobody watches).
    pub fn stop(&self) {
        self.exit_tx.notify(VmExitReason::Terminated(0));
        self.halt_vcpus();
    }

    /// Once the VM is stopping (see [`ExitNotifier`]), takes the vCPUs out
    /// of the guest and waits briefly for their threads to end.
    pub fn halt_vcpus(&self) {
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        // A kick that lands just before a vCPU enters KVM_RUN is lost, so
        // kick until every thread has ended.
        while self.threads.iter().any(|(_, h)| !h.is_finished()) && Instant::now() < deadline {
            for (_, h) in &self.threads {
                if !h.is_finished() {
                    let _ = h.kill(kick_signal());
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Block until the VM must stop, and say why.
    pub fn wait(&self) -> VmExitReason {
        let reason = self
            .exit_rx
            .recv()
            .unwrap_or_else(|_| VmExitReason::Error("all exit senders vanished".into()));
        match reason {
            VmExitReason::Reset if self.panicked.load(Ordering::SeqCst) => VmExitReason::Panic,
            other => other,
        }
    }

    /// Make writes durable and remove what we created on the host. The vCPU
    /// threads are not joined: the process exits next.
    pub fn teardown(&self) {
        for (f, ro) in &self.disk_files {
            if !ro {
                if let Err(e) = f.sync_all() {
                    tracing::warn!("fsync of a disk image failed: {e}");
                }
            }
        }
        if let Some(p) = &self.vsock_uds {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn build_cmdline(cfg: &VmConfig, devices: &[String]) -> String {
    let mut parts: Vec<String> = vec![
        "console=ttyS0".into(),
        // Off: only emergencies (a panic) reach the UART, which costs nothing
        // on the boot path but lets us tell a panic from a reboot.
        match cfg.console {
            ConsoleMode::Off => "loglevel=1".into(),
            _ => "loglevel=6".into(),
        },
        "reboot=k".into(),
        "panic=-1".into(),
        "nomodule".into(),
        "io_delay=none".into(),
        "8250.nr_uarts=1".into(),
        "rdinit=/init".into(),
    ];
    parts.extend(devices.iter().cloned());
    if !cfg.cmdline_extra.trim().is_empty() {
        parts.push(cfg.cmdline_extra.trim().to_string());
    }
    parts.join(" ")
}
