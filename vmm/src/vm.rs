//! Putting a VM together: KVM, memory, irqchip, kernel, devices, vCPUs.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{IoEventAddress, Kvm, VcpuFd, VmFd};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::arch::{cpu, layout, loader, memory, mptable, pvh};
use crate::config::{ConsoleMode, VmConfig};
use crate::devices::bus::Bus;
use crate::devices::legacy::i8042::I8042;
use crate::devices::legacy::power::PowerPort;
use crate::devices::legacy::serial::{ConsoleWriter, SerialConsole};
use crate::devices::{ExitNotifier, IrqLine};
use crate::exit::VmExitReason;
use crate::vcpu::VcpuRunner;
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
    vcpus: Vec<VcpuRunner>,
    exit_tx: ExitNotifier,
    exit_rx: Receiver<VmExitReason>,
    panicked: Arc<AtomicBool>,
    disk_files: Vec<(Arc<File>, bool)>,
    vsock_uds: Option<PathBuf>,
    // Held so the VM and memory outlive the vCPU threads.
    _vm_fd: Arc<VmFd>,
    _mem: GuestMemoryMmap,
}

/// Everything built so far, for the timing log.
fn stage(t0: Instant, what: &str) {
    tracing::debug!(
        "boot stage +{:.3} ms: {what}",
        t0.elapsed().as_secs_f64() * 1000.0
    );
}

impl Vm {
    pub fn new(cfg: &VmConfig) -> Result<Self, VmError> {
        let t0 = Instant::now();
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
        pio.insert(
            layout::SERIAL_PORT as u64,
            8,
            Arc::new(Mutex::new(SerialConsole::new(
                IrqLine(serial_irq),
                ConsoleWriter::new(sink, panicked.clone()),
            ))),
        )?;
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
        for (i, d) in cfg.disks.iter().enumerate() {
            let blk = Block::open(&d.path, d.read_only, i)?;
            disk_files.push((blk.file(), d.read_only));
            devices.push(Box::new(blk));
        }
        if let Some(uds) = &cfg.vsock_uds {
            devices.push(Box::new(Vsock::new(cfg.guest_cid, uds)?));
        }
        for fs in &cfg.filesystems {
            devices.push(Box::new(VhostUserFs::connect(&fs.socket, &fs.tag, &mem)?));
        }
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
            mmio.insert(
                base,
                layout::VIRTIO_MMIO_SIZE,
                Arc::new(Mutex::new(transport)),
            )?;
            cmdline_devices.push(format!("virtio_mmio.device=4K@{base:#x}:{irq}"));
        }
        stage(t0, "devices created");

        // Kernel, initramfs, command line, boot tables.
        let kernel = loader::load_kernel(&mem, &cfg.kernel)?;
        stage(t0, "kernel loaded");
        let mem_bytes = cfg.mem_mib << 20;
        let initramfs = match &cfg.initramfs {
            Some(p) => Some(loader::load_initramfs(
                &mem,
                p,
                kernel.kernel_end,
                memory::low_ram_end(mem_bytes),
            )?),
            None => None,
        };
        let cmdline = build_cmdline(cfg, &cmdline_devices);
        tracing::debug!("kernel command line: {cmdline}");
        let cmdline_addr = loader::load_command_line(&mem, &cmdline)?;
        let start_info = pvh::write_start_info(
            &mem,
            &pvh::PvhParams {
                cmdline_addr,
                initramfs,
                mem_bytes,
            },
        )?;
        mptable::setup_mptable(&mem, cfg.vcpus)?;
        stage(t0, "kernel, initramfs and boot tables loaded");

        let pio = Arc::new(pio);
        let mmio = Arc::new(mmio);
        let mut vcpus = Vec::new();
        for id in 0..cfg.vcpus {
            let fd: VcpuFd = vm_fd
                .create_vcpu(id as u64)
                .map_err(kvm_op("KVM_CREATE_VCPU"))?;
            cpu::setup_cpuid(&kvm, &fd, id, cfg.vcpus)?;
            cpu::setup_msrs(&fd)?;
            cpu::setup_fpu(&fd)?;
            cpu::setup_lapic(&fd)?;
            if id == 0 {
                cpu::setup_pvh_regs(&fd, &mem, kernel.pvh_entry.raw_value(), start_info)?;
            }
            vcpus.push(VcpuRunner {
                id,
                fd,
                pio: pio.clone(),
                mmio: mmio.clone(),
                exit: exit_tx.clone(),
            });
        }
        stage(t0, "vCPUs configured");
        Ok(Self {
            vcpus,
            exit_tx,
            exit_rx,
            panicked,
            disk_files,
            vsock_uds: cfg.vsock_uds.clone(),
            _vm_fd: vm_fd,
            _mem: mem,
        })
    }

    /// A handle other threads use to stop the VM.
    pub fn exit_notifier(&self) -> ExitNotifier {
        self.exit_tx.clone()
    }

    /// Start the vCPU threads.
    pub fn start(&mut self) -> Result<(), VmError> {
        for runner in self.vcpus.drain(..) {
            std::thread::Builder::new()
                .name(format!("vcpu{}", runner.id))
                .spawn(move || runner.run())
                .map_err(io_op("spawning a vCPU thread"))?;
        }
        Ok(())
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
