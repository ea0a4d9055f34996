//! The virtio-mmio transport (virtio 1.2 §4.2, version 2 registers).
//!
//! It owns the queue configuration and the device status state machine; the
//! device behind it only sees activated queues. Everything the driver writes
//! is checked before it reaches the device: feature negotiation against what
//! was offered, queue sizes against the maximum, ring addresses against guest
//! memory at activation.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::device::{ActiveQueue, Interrupt, QuiesceError, VirtioDevice};
use super::{VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX};
use crate::devices::bus::BusDevice;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x4c4f_5349; // "ISOL"

const REG_MAGIC: u64 = 0x000;
const REG_VERSION: u64 = 0x004;
const REG_DEVICE_ID: u64 = 0x008;
const REG_VENDOR_ID: u64 = 0x00c;
const REG_DEVICE_FEATURES: u64 = 0x010;
const REG_DEVICE_FEATURES_SEL: u64 = 0x014;
const REG_DRIVER_FEATURES: u64 = 0x020;
const REG_DRIVER_FEATURES_SEL: u64 = 0x024;
const REG_QUEUE_SEL: u64 = 0x030;
const REG_QUEUE_NUM_MAX: u64 = 0x034;
const REG_QUEUE_NUM: u64 = 0x038;
const REG_QUEUE_READY: u64 = 0x044;
pub const REG_QUEUE_NOTIFY: u64 = 0x050;
const REG_INTERRUPT_STATUS: u64 = 0x060;
const REG_INTERRUPT_ACK: u64 = 0x064;
const REG_STATUS: u64 = 0x070;
const REG_QUEUE_DESC_LOW: u64 = 0x080;
const REG_QUEUE_DESC_HIGH: u64 = 0x084;
const REG_QUEUE_DRIVER_LOW: u64 = 0x090;
const REG_QUEUE_DRIVER_HIGH: u64 = 0x094;
const REG_QUEUE_DEVICE_LOW: u64 = 0x0a0;
const REG_QUEUE_DEVICE_HIGH: u64 = 0x0a4;
const REG_CONFIG_GENERATION: u64 = 0x0fc;
const CONFIG_SPACE: u64 = 0x100;

pub const STATUS_ACKNOWLEDGE: u32 = 1;
pub const STATUS_DRIVER: u32 = 2;
pub const STATUS_DRIVER_OK: u32 = 4;
pub const STATUS_FEATURES_OK: u32 = 8;
pub const STATUS_NEEDS_RESET: u32 = 0x40;
pub const STATUS_FAILED: u32 = 0x80;

pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    interrupt: Arc<Interrupt>,
    kicks: Vec<EventFd>,
    queues: Vec<Queue>,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    status: u32,
    activated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot create a queue eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("device offers an invalid queue size {0}")]
    QueueSize(u16),
    #[error("virtio device {device_type}: {source}")]
    Quiesce {
        device_type: u32,
        source: QuiesceError,
    },
    #[error("saved state does not fit this device: {0}")]
    StateMismatch(String),
}

/// One queue as the driver configured it and as far as the device got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRegs {
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
    pub next_avail: u16,
    pub next_used: u16,
}

/// What a snapshot keeps of a transport: the driver's side of the
/// registers and the device's ring positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportState {
    pub device_type: u32,
    pub status: u32,
    pub driver_features: u64,
    pub interrupt_pending: u32,
    pub queues: Vec<QueueRegs>,
}

impl MmioTransport {
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        irqfd: EventFd,
    ) -> Result<Self, TransportError> {
        let mut kicks = Vec::new();
        let mut queues = Vec::new();
        for &max in device.queue_max_sizes() {
            kicks.push(EventFd::new(libc::EFD_NONBLOCK).map_err(TransportError::EventFd)?);
            queues.push(Queue::new(max).map_err(|_| TransportError::QueueSize(max))?);
        }
        Ok(Self {
            device,
            mem,
            interrupt: Arc::new(Interrupt::new(irqfd)),
            kicks,
            queues,
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            status: 0,
            activated: false,
        })
    }

    /// The eventfds to register as KVM ioeventfds on QueueNotify, by queue.
    pub fn kick_fds(&self) -> &[EventFd] {
        &self.kicks
    }

    pub fn device_type(&self) -> u32 {
        self.device.device_type()
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// Queue registers may only change between FEATURES_OK and DRIVER_OK.
    fn queue_config_allowed(&self) -> bool {
        self.status & STATUS_FEATURES_OK != 0 && self.status & STATUS_DRIVER_OK == 0
    }

    fn reset(&mut self) {
        if self.activated {
            self.device.reset();
            self.activated = false;
        }
        for q in &mut self.queues {
            q.reset();
        }
        self.queue_sel = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.status = 0;
        self.interrupt.ack(u32::MAX);
    }

    fn set_status(&mut self, new: u32) {
        if new == 0 {
            self.reset();
            return;
        }
        // Bits may only be added, in the order the spec gives.
        if new & self.status != self.status {
            tracing::debug!(
                old = self.status,
                new,
                "virtio driver cleared status bits; ignored"
            );
            return;
        }
        let added = new & !self.status;
        if added & STATUS_FEATURES_OK != 0 {
            let offered = self.device.features();
            if self.driver_features & !offered != 0
                || self.driver_features & VIRTIO_F_VERSION_1 == 0
            {
                tracing::debug!(
                    driver = self.driver_features,
                    offered,
                    "driver accepted features we did not offer (or not VERSION_1)"
                );
                // Leave FEATURES_OK unset: the driver sees that and gives up.
                self.status = new & !STATUS_FEATURES_OK;
                return;
            }
        }
        if added & STATUS_DRIVER_OK != 0 && self.status & STATUS_FEATURES_OK != 0 {
            self.status = new;
            self.activate();
            return;
        }
        self.status = new;
    }

    fn activate(&mut self) {
        let mut active = Vec::new();
        let event_idx = self.driver_features & VIRTIO_RING_F_EVENT_IDX != 0;
        for (i, q) in self.queues.iter_mut().enumerate() {
            if !q.ready() || !q.is_valid(&self.mem) {
                tracing::debug!(queue = i, "queue not ready or invalid at DRIVER_OK");
                self.status |= STATUS_NEEDS_RESET;
                self.interrupt.signal_config_change();
                return;
            }
            q.set_event_idx(event_idx);
            let kick = match self.kicks[i].try_clone() {
                Ok(k) => k,
                Err(e) => {
                    tracing::error!("cannot clone queue eventfd: {e}");
                    self.status |= STATUS_NEEDS_RESET;
                    return;
                }
            };
            let queue = match Queue::try_from(q.state()) {
                Ok(q) => q,
                Err(e) => {
                    tracing::debug!(queue = i, "queue state rejected: {e}");
                    self.status |= STATUS_NEEDS_RESET;
                    self.interrupt.signal_config_change();
                    return;
                }
            };
            active.push(ActiveQueue { queue, kick });
        }
        match self.device.activate(
            self.mem.clone(),
            self.interrupt.clone(),
            active,
            self.driver_features,
        ) {
            Ok(()) => {
                tracing::debug!(
                    device = self.device.device_type(),
                    "virtio device activated"
                );
                self.activated = true;
            }
            Err(e) => {
                tracing::error!(device = self.device.device_type(), "activation failed: {e}");
                self.status |= STATUS_NEEDS_RESET;
                self.interrupt.signal_config_change();
            }
        }
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        match offset {
            REG_MAGIC => MAGIC,
            REG_VERSION => VERSION,
            REG_DEVICE_ID => self.device.device_type(),
            REG_VENDOR_ID => VENDOR_ID,
            REG_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device.features() as u32,
                1 => (self.device.features() >> 32) as u32,
                _ => 0,
            },
            REG_QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| q.max_size() as u32),
            REG_QUEUE_READY => self.selected_queue().map_or(0, |q| q.ready() as u32),
            REG_INTERRUPT_STATUS => self.interrupt.status(),
            REG_STATUS => self.status,
            REG_CONFIG_GENERATION => 0,
            _ => {
                tracing::debug!(offset, "read of unknown virtio-mmio register");
                0
            }
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        let queue_reg = matches!(
            offset,
            REG_QUEUE_NUM
                | REG_QUEUE_READY
                | REG_QUEUE_DESC_LOW
                | REG_QUEUE_DESC_HIGH
                | REG_QUEUE_DRIVER_LOW
                | REG_QUEUE_DRIVER_HIGH
                | REG_QUEUE_DEVICE_LOW
                | REG_QUEUE_DEVICE_HIGH
        );
        if queue_reg && !self.queue_config_allowed() {
            tracing::debug!(
                offset,
                status = self.status,
                "queue register written out of order"
            );
            return;
        }
        match offset {
            REG_DEVICE_FEATURES_SEL => self.device_features_sel = v,
            REG_DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            REG_DRIVER_FEATURES => {
                if self.status & (STATUS_FEATURES_OK | STATUS_DRIVER_OK) != 0 {
                    return;
                }
                match self.driver_features_sel {
                    0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v as u64,
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | ((v as u64) << 32)
                    }
                    _ => {}
                }
            }
            REG_QUEUE_SEL => self.queue_sel = v,
            REG_QUEUE_NUM => {
                if let Some(q) = self.selected_queue() {
                    // The queue crate rejects sizes that are zero, too big or
                    // not a power of two; it then keeps the previous size.
                    q.set_size(v.min(u16::MAX as u32) as u16);
                }
            }
            REG_QUEUE_READY => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(v == 1);
                }
            }
            REG_QUEUE_DESC_LOW => self.with_queue(|q| q.set_desc_table_address(Some(v), None)),
            REG_QUEUE_DESC_HIGH => self.with_queue(|q| q.set_desc_table_address(None, Some(v))),
            REG_QUEUE_DRIVER_LOW => self.with_queue(|q| q.set_avail_ring_address(Some(v), None)),
            REG_QUEUE_DRIVER_HIGH => self.with_queue(|q| q.set_avail_ring_address(None, Some(v))),
            REG_QUEUE_DEVICE_LOW => self.with_queue(|q| q.set_used_ring_address(Some(v), None)),
            REG_QUEUE_DEVICE_HIGH => self.with_queue(|q| q.set_used_ring_address(None, Some(v))),
            REG_QUEUE_NOTIFY => {
                // Normally KVM's ioeventfd catches this write before it
                // reaches us; this path covers hosts where it could not be
                // registered.
                if let Some(k) = self.kicks.get(v as usize) {
                    let _ = k.write(1);
                }
            }
            REG_INTERRUPT_ACK => self.interrupt.ack(v),
            REG_STATUS => self.set_status(v),
            _ => tracing::debug!(offset, "write to unknown virtio-mmio register"),
        }
    }

    /// Stops the device for good and says where it stood: the VM's vCPUs
    /// must be paused, so the driver changes nothing meanwhile.
    pub fn save(&mut self) -> Result<TransportState, TransportError> {
        let live = if self.activated {
            self.activated = false;
            Some(
                self.device
                    .quiesce()
                    .map_err(|source| TransportError::Quiesce {
                        device_type: self.device.device_type(),
                        source,
                    })?,
            )
        } else {
            None
        };
        let queues = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| {
                // The device's copy has moved on; the transport's has the
                // driver's configuration.
                let pos = live.as_ref().and_then(|l| l.get(i)).unwrap_or(q);
                QueueRegs {
                    size: q.size(),
                    ready: q.ready(),
                    desc_table: q.desc_table(),
                    avail_ring: q.avail_ring(),
                    used_ring: q.used_ring(),
                    next_avail: pos.next_avail(),
                    next_used: pos.next_used(),
                }
            })
            .collect();
        Ok(TransportState {
            device_type: self.device.device_type(),
            status: self.status,
            driver_features: self.driver_features,
            interrupt_pending: self.interrupt.pending(),
            queues,
        })
    }

    /// Puts a fresh transport where a saved one stood, activating the
    /// device on the saved rings if the driver had. Everything is checked
    /// as a driver's writes would be: the state file is input too.
    pub fn restore(&mut self, s: &TransportState) -> Result<(), TransportError> {
        let mismatch = |what: String| Err(TransportError::StateMismatch(what));
        if s.device_type != self.device.device_type() {
            return mismatch(format!(
                "device type {} saved, {} here",
                s.device_type,
                self.device.device_type()
            ));
        }
        if s.queues.len() != self.queues.len() {
            return mismatch(format!(
                "{} queues saved, {} here",
                s.queues.len(),
                self.queues.len()
            ));
        }
        if s.driver_features & !self.device.features() != 0 {
            return mismatch("features the device does not offer".into());
        }
        for (q, r) in self.queues.iter_mut().zip(&s.queues) {
            q.set_size(r.size);
            if q.size() != r.size {
                return mismatch(format!("queue size {}", r.size));
            }
            q.set_desc_table_address(Some(r.desc_table as u32), Some((r.desc_table >> 32) as u32));
            q.set_avail_ring_address(Some(r.avail_ring as u32), Some((r.avail_ring >> 32) as u32));
            q.set_used_ring_address(Some(r.used_ring as u32), Some((r.used_ring >> 32) as u32));
            q.set_next_avail(r.next_avail);
            q.set_next_used(r.next_used);
            q.set_ready(r.ready);
        }
        self.driver_features = s.driver_features;
        self.interrupt.restore_pending(s.interrupt_pending);
        if s.status & STATUS_DRIVER_OK != 0 && s.status & STATUS_NEEDS_RESET == 0 {
            self.status = s.status;
            self.activate();
            if !self.activated {
                return mismatch("the device did not activate on the saved rings".into());
            }
        } else {
            self.status = s.status;
        }
        Ok(())
    }

    fn with_queue(&mut self, f: impl FnOnce(&mut Queue)) {
        if let Some(q) = self.selected_queue() {
            f(q);
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_SPACE {
            self.device.read_config(offset - CONFIG_SPACE, data);
            return;
        }
        // Registers are 32 bits wide and must be accessed as such.
        if data.len() != 4 || offset % 4 != 0 {
            data.fill(0);
            return;
        }
        data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_SPACE {
            self.device.write_config(offset - CONFIG_SPACE, data);
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            tracing::debug!(
                offset,
                len = data.len(),
                "non-32-bit register write ignored"
            );
            return;
        };
        if offset % 4 == 0 {
            self.write_reg(offset, u32::from_le_bytes(bytes));
        }
    }
}
