//! The contract between a virtio device and its transport.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

pub const INT_VRING: u32 = 1;
pub const INT_CONFIG: u32 = 2;

/// The device's interrupt: a status word the driver reads and acks over
/// MMIO, and an irqfd that injects the interrupt.
pub struct Interrupt {
    status: AtomicU32,
    irqfd: EventFd,
    /// Set for devices whose backend injects the interrupt itself through
    /// the irqfd (vhost-user): the status then always shows "used buffers",
    /// so the driver looks at its rings on every interrupt.
    backend_signals: AtomicBool,
}

impl Interrupt {
    pub fn new(irqfd: EventFd) -> Self {
        Self {
            status: AtomicU32::new(0),
            irqfd,
            backend_signals: AtomicBool::new(false),
        }
    }

    /// The irqfd, for a backend to signal used buffers on directly.
    pub fn irqfd(&self) -> &EventFd {
        &self.irqfd
    }

    pub fn set_backend_signals(&self, on: bool) {
        self.backend_signals.store(on, Ordering::SeqCst);
    }

    pub fn signal_used_queue(&self) {
        self.raise(INT_VRING);
    }

    pub fn signal_config_change(&self) {
        self.raise(INT_CONFIG);
    }

    fn raise(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        if let Err(e) = self.irqfd.write(1) {
            tracing::warn!("cannot inject virtio interrupt: {e}");
        }
    }

    pub fn status(&self) -> u32 {
        let vring = if self.backend_signals.load(Ordering::SeqCst) {
            INT_VRING
        } else {
            0
        };
        self.status.load(Ordering::SeqCst) | vring
    }

    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// The raised bits the driver has not acked yet, as a snapshot saw them.
    pub fn pending(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// Put back the bits a snapshot saved, without injecting anything: the
    /// irqchip state restored beside them already says what was delivered.
    pub fn restore_pending(&self, bits: u32) {
        self.status
            .store(bits & (INT_VRING | INT_CONFIG), Ordering::SeqCst);
    }
}

/// A queue the driver has set up, with the eventfd KVM signals when the
/// driver kicks it.
pub struct ActiveQueue {
    pub queue: Queue,
    pub kick: EventFd,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("queue {0} is not ready or its rings lie outside guest memory")]
    BadQueue(usize),
    #[error("device expects {want} queues, driver set up {got}")]
    QueueCount { want: usize, got: usize },
    #[error("cannot start the device worker: {0}")]
    Worker(std::io::Error),
}

/// Why a device could not hand its queues over for a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum QuiesceError {
    #[error("the device was never activated by the guest")]
    NotActive,
    #[error("the device worker died")]
    WorkerLost,
    #[error("the device cannot be saved: {0}")]
    Unsupported(&'static str),
    #[error("the device is busy: {0}")]
    Busy(String),
}

pub trait VirtioDevice: Send {
    fn device_type(&self) -> u32;
    fn queue_max_sizes(&self) -> &[u16];
    fn features(&self) -> u64;
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Devices here have read-only config spaces; writes are ignored.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Start serving the queues (called on DRIVER_OK).
    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: std::sync::Arc<Interrupt>,
        queues: Vec<ActiveQueue>,
        acked_features: u64,
    ) -> Result<(), ActivateError>;
    /// Stop serving (driver wrote 0 to status); the device may be activated again.
    fn reset(&mut self);
    /// Stop serving for good and hand back the live queues (their ring
    /// positions), for a snapshot of a paused VM.
    fn quiesce(&mut self) -> Result<Vec<Queue>, QuiesceError> {
        Err(QuiesceError::Unsupported("no snapshot support"))
    }
}

/// Copy `src` (a device's config space) into `data` at `offset`, reading
/// zeros past its end, whatever offset and width the guest picked.
pub fn read_config_bytes(src: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|o| src.get(o))
            .copied()
            .unwrap_or(0);
    }
}
