//! The virtio-vsock device model and its worker thread.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::muxer::Muxer;
use super::packet::read_tx_packet;
use crate::virtio::device::{
    read_config_bytes, ActivateError, ActiveQueue, Interrupt, QuiesceError,
};
use crate::virtio::worker::Worker;
use crate::virtio::{VirtioDevice, DEVICE_ID_VSOCK, VIRTIO_F_VERSION_1};

const QUEUE_SIZE: u16 = 256;
const RXQ: usize = 0;
const TXQ: usize = 1;
const EVQ: usize = 2;
const MAX_PUMP_ROUNDS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    #[error("cannot listen on vsock socket {path}: {source}")]
    Bind {
        path: String,
        source: std::io::Error,
    },
    #[error("guest CID {0} is reserved (use 3 or above)")]
    BadCid(u64),
}

pub struct Vsock {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: Option<UnixListener>,
    config: [u8; 8],
    /// Handed back when stopped: the listener for a later activation, the
    /// queues for a snapshot.
    worker: Option<Worker<VsockWorker>>,
    /// Connections and control packets in flight, as the worker last saw.
    in_flight: Arc<AtomicUsize>,
}

impl Vsock {
    /// Binds the host socket now, so that host clients can connect (and
    /// queue) before the guest has booted.
    pub fn new(guest_cid: u64, uds_path: &Path) -> Result<Self, VsockError> {
        if guest_cid < 3 || guest_cid > u32::MAX as u64 {
            return Err(VsockError::BadCid(guest_cid));
        }
        let listener = UnixListener::bind(uds_path).map_err(|source| VsockError::Bind {
            path: uds_path.display().to_string(),
            source,
        })?;
        Ok(Self {
            guest_cid,
            uds_path: uds_path.to_path_buf(),
            listener: Some(listener),
            config: guest_cid.to_le_bytes(),
            worker: None,
            in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// How many connections (and control packets) the bridge has in flight;
    /// a snapshot waits for none.
    pub fn in_flight(&self) -> Arc<AtomicUsize> {
        self.in_flight.clone()
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        DEVICE_ID_VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; 3]
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<Interrupt>,
        queues: Vec<ActiveQueue>,
        _acked_features: u64,
    ) -> Result<(), ActivateError> {
        if queues.len() != 3 {
            return Err(ActivateError::QueueCount {
                want: 3,
                got: queues.len(),
            });
        }
        let listener = self.listener.take().ok_or_else(|| {
            ActivateError::Worker(std::io::Error::other("vsock listener already in use"))
        })?;
        let muxer = Muxer::new(self.guest_cid, self.uds_path.clone(), listener)
            .map_err(ActivateError::Worker)?;
        let mut qs = Vec::new();
        let mut kicks = Vec::new();
        for q in queues {
            qs.push(q.queue);
            kicks.push(q.kick);
        }
        let in_flight = self.in_flight.clone();
        self.worker = Some(Worker::spawn("virtio-vsock", move |stop| {
            let mut worker = VsockWorker {
                mem,
                queues: qs,
                kicks,
                stop,
                interrupt,
                muxer,
                in_flight,
            };
            worker.run();
            worker
        })?);
        Ok(())
    }

    fn reset(&mut self) {
        if let Some(w) = self.worker.take() {
            self.listener = w.stop().map(|w| w.muxer.into_listener());
        }
    }

    fn quiesce(&mut self) -> Result<Vec<Queue>, QuiesceError> {
        let worker = self.worker.take().ok_or(QuiesceError::NotActive)?;
        let worker = worker.stop().ok_or(QuiesceError::WorkerLost)?;
        // A connection's state lives on both sides; a restored guest would
        // hold streams no host socket answers.
        match worker.muxer.in_flight() {
            0 => Ok(worker.queues),
            n => Err(QuiesceError::Busy(format!(
                "{n} vsock connections or control packets in flight"
            ))),
        }
    }
}

struct VsockWorker {
    mem: GuestMemoryMmap,
    queues: Vec<Queue>,
    kicks: Vec<EventFd>,
    stop: EventFd,
    interrupt: Arc<Interrupt>,
    muxer: Muxer,
    in_flight: Arc<AtomicUsize>,
}

impl VsockWorker {
    /// Runs until stopped (or epoll fails).
    fn run(&mut self) {
        let epoll_ok = [&self.stop].into_iter().chain(self.kicks.iter()).all(|fd| {
            self.muxer
                .epoll()
                .ctl(
                    ControlOperation::Add,
                    fd.as_raw_fd(),
                    EpollEvent::new(EventSet::IN, fd.as_raw_fd() as u64),
                )
                .is_ok()
        });
        if !epoll_ok {
            tracing::error!("virtio-vsock: cannot set up epoll");
            return;
        }
        let mut events = vec![EpollEvent::default(); 64];
        loop {
            self.pump();
            self.in_flight
                .store(self.muxer.in_flight(), Ordering::Relaxed);
            let timeout = self
                .muxer
                .next_timeout(std::time::Instant::now())
                .map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32 + 1);
            let n = match self.muxer.epoll().wait(timeout, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::error!("virtio-vsock: epoll wait: {e}");
                    return;
                }
            };
            self.muxer.expire_stale(std::time::Instant::now());
            for ev in &events[..n] {
                let fd = ev.fd();
                if fd == self.stop.as_raw_fd() {
                    return;
                }
                if let Some(k) = self.kicks.iter().find(|k| k.as_raw_fd() == fd) {
                    let _ = k.read();
                    continue;
                }
                self.muxer.handle_event(fd, ev.event_set());
            }
        }
    }

    /// Move packets both ways until neither direction makes progress, or
    /// for a bounded number of rounds: a guest refilling its rings from
    /// another vCPU must not keep host sockets and stop requests waiting.
    /// When the budget runs out, a self-kick brings us straight back.
    fn pump(&mut self) {
        for _ in 0..MAX_PUMP_ROUNDS {
            let tx = self.process_tx();
            let rx = self.process_rx();
            if !tx && !rx {
                return;
            }
        }
        let _ = self.kicks[TXQ].write(1);
    }

    fn process_tx(&mut self) -> bool {
        let mem = &self.mem;
        let mut used_any = false;
        while !self.muxer.tx_backpressure() {
            let Some(chain) = self.queues[TXQ].pop_descriptor_chain(mem) else {
                break;
            };
            let head = chain.head_index();
            match chain.reader(mem) {
                Ok(mut reader) => match read_tx_packet(&mut reader) {
                    Ok((hdr, data)) => self.muxer.process_tx(hdr, data),
                    Err(e) => tracing::debug!("virtio-vsock: bad tx packet: {e}"),
                },
                Err(e) => tracing::debug!("virtio-vsock: bad tx chain: {e}"),
            }
            if let Err(e) = self.queues[TXQ].add_used(mem, head, 0) {
                tracing::debug!("virtio-vsock: tx add_used: {e}");
            }
            used_any = true;
        }
        if used_any && self.queues[TXQ].needs_notification(mem).unwrap_or(true) {
            self.interrupt.signal_used_queue();
        }
        used_any
    }

    fn process_rx(&mut self) -> bool {
        let mem = &self.mem;
        let mut used_any = false;
        while self.muxer.has_rx_work() {
            let Some(chain) = self.queues[RXQ].pop_descriptor_chain(mem) else {
                break;
            };
            let head = chain.head_index();
            let used = match chain.writer(mem) {
                Ok(mut writer) => match self.muxer.fill_rx(&mut writer) {
                    Ok(Some(n)) => n,
                    Ok(None) => {
                        self.queues[RXQ].go_to_previous_position();
                        break;
                    }
                    Err(e) => {
                        tracing::debug!("virtio-vsock: unusable rx buffer: {e}");
                        0
                    }
                },
                Err(e) => {
                    tracing::debug!("virtio-vsock: bad rx chain: {e}");
                    0
                }
            };
            if let Err(e) = self.queues[RXQ].add_used(mem, head, used) {
                tracing::debug!("virtio-vsock: rx add_used: {e}");
            }
            used_any = true;
        }
        if used_any && self.queues[RXQ].needs_notification(mem).unwrap_or(true) {
            self.interrupt.signal_used_queue();
        }
        // The event queue is never used: we send no transport events.
        let _ = EVQ;
        used_any
    }
}
