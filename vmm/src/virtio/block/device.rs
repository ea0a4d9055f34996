//! The virtio-blk device model and its worker thread.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::request::{execute, parse_header, Disk};
use super::{ID_LEN, SECTOR_SIZE};
use crate::virtio::device::{read_config_bytes, ActivateError, ActiveQueue, Interrupt};
use crate::virtio::{VirtioDevice, DEVICE_ID_BLOCK, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX};

const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
const QUEUE_SIZE: u16 = 256;

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("cannot open disk image {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("disk image {path} is {len} bytes, not a whole number of 512-byte sectors")]
    Size { path: String, len: u64 },
}

pub struct Block {
    file: Arc<File>,
    read_only: bool,
    capacity_sectors: u64,
    id: [u8; ID_LEN],
    config: [u8; 8],
    worker: Option<(EventFd, JoinHandle<()>)>,
}

impl Block {
    pub fn open(path: &Path, read_only: bool, index: usize) -> Result<Self, BlockError> {
        let shown = path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|source| BlockError::Open {
                path: shown.clone(),
                source,
            })?;
        let len = file
            .metadata()
            .map_err(|source| BlockError::Open {
                path: shown.clone(),
                source,
            })?
            .len();
        if len % SECTOR_SIZE != 0 {
            return Err(BlockError::Size { path: shown, len });
        }
        let capacity_sectors = len / SECTOR_SIZE;
        let mut id = [0u8; ID_LEN];
        let name = format!("isola-disk{index}");
        id[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Self {
            file: Arc::new(file),
            read_only,
            capacity_sectors,
            id,
            config: capacity_sectors.to_le_bytes(),
            worker: None,
        })
    }

    /// The backing file, so the VMM can fsync it before exiting.
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        DEVICE_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        let mut f = VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX | VIRTIO_BLK_F_FLUSH;
        if self.read_only {
            f |= VIRTIO_BLK_F_RO;
        }
        f
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<Interrupt>,
        mut queues: Vec<ActiveQueue>,
        _acked_features: u64,
    ) -> Result<(), ActivateError> {
        if queues.len() != 1 {
            return Err(ActivateError::QueueCount {
                want: 1,
                got: queues.len(),
            });
        }
        let ActiveQueue { queue, kick } = queues.remove(0);
        let stop = EventFd::new(libc::EFD_NONBLOCK).map_err(ActivateError::Worker)?;
        let stop_worker = stop.try_clone().map_err(ActivateError::Worker)?;
        let worker = BlockWorker {
            mem,
            queue,
            kick,
            stop: stop_worker,
            interrupt,
            file: self.file.clone(),
            capacity_sectors: self.capacity_sectors,
            read_only: self.read_only,
            id: self.id,
        };
        let handle = std::thread::Builder::new()
            .name("virtio-blk".into())
            .spawn(move || worker.run())
            .map_err(ActivateError::Worker)?;
        self.worker = Some((stop, handle));
        Ok(())
    }

    fn reset(&mut self) {
        if let Some((stop, handle)) = self.worker.take() {
            let _ = stop.write(1);
            let _ = handle.join();
        }
    }
}

struct BlockWorker {
    mem: GuestMemoryMmap,
    queue: Queue,
    kick: EventFd,
    stop: EventFd,
    interrupt: Arc<Interrupt>,
    file: Arc<File>,
    capacity_sectors: u64,
    read_only: bool,
    id: [u8; ID_LEN],
}

const TOKEN_KICK: u64 = 1;
const TOKEN_STOP: u64 = 2;

impl BlockWorker {
    fn run(mut self) {
        let epoll = match Epoll::new() {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("virtio-blk: epoll: {e}");
                return;
            }
        };
        for (fd, token) in [(&self.kick, TOKEN_KICK), (&self.stop, TOKEN_STOP)] {
            use std::os::fd::AsRawFd;
            if let Err(e) = epoll.ctl(
                ControlOperation::Add,
                fd.as_raw_fd(),
                EpollEvent::new(EventSet::IN, token),
            ) {
                tracing::error!("virtio-blk: epoll add: {e}");
                return;
            }
        }
        // Requests may already be queued before the first kick we see.
        self.process_queue();
        let mut events = vec![EpollEvent::default(); 4];
        loop {
            let n = match epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::error!("virtio-blk: epoll wait: {e}");
                    return;
                }
            };
            for ev in &events[..n] {
                match ev.data() {
                    TOKEN_STOP => return,
                    TOKEN_KICK => {
                        let _ = self.kick.read();
                        self.process_queue();
                    }
                    _ => {}
                }
            }
        }
    }

    fn process_queue(&mut self) {
        let disk = Disk {
            file: &self.file,
            capacity_sectors: self.capacity_sectors,
            read_only: self.read_only,
            id: &self.id,
        };
        let mem = &self.mem;
        loop {
            if let Err(e) = self.queue.disable_notification(mem) {
                tracing::warn!("virtio-blk: queue: {e}");
                return;
            }
            while let Some(chain) = self.queue.pop_descriptor_chain(mem) {
                let head = chain.head_index();
                let used = process_chain(&disk, mem, chain);
                if let Err(e) = self.queue.add_used(mem, head, used) {
                    tracing::warn!("virtio-blk: add_used: {e}");
                }
            }
            match self.queue.enable_notification(mem) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!("virtio-blk: queue: {e}");
                    break;
                }
            }
        }
        if self.queue.needs_notification(mem).unwrap_or(true) {
            self.interrupt.signal_used_queue();
        }
    }
}

/// Process one chain; a malformed chain fails only itself (used length 0).
pub fn process_chain(
    disk: &Disk<'_>,
    mem: &GuestMemoryMmap,
    chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>,
) -> u32 {
    let mut reader = match chain.clone().reader(mem) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("virtio-blk: bad chain: {e}");
            return 0;
        }
    };
    let writer = match chain.writer(mem) {
        Ok(w) => w,
        Err(e) => {
            tracing::debug!("virtio-blk: bad chain: {e}");
            return 0;
        }
    };
    let result = parse_header(&mut reader).and_then(|hdr| execute(disk, hdr, &mut reader, writer));
    match result {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!("virtio-blk: request rejected: {e}");
            0
        }
    }
}
