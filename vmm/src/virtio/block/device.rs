//! The virtio-blk device model and its worker thread.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::request::{execute, parse_header, Disk};
use super::{ID_LEN, SECTOR_SIZE};
use crate::virtio::device::{
    read_config_bytes, ActivateError, ActiveQueue, Interrupt, QuiesceError,
};
use crate::virtio::worker::Worker;
use crate::virtio::{VirtioDevice, DEVICE_ID_BLOCK, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX};

const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
const QUEUE_SIZE: u16 = 256;
/// Chains served before the worker yields to its event loop.
const MAX_CHAINS_PER_PASS: usize = 4 * QUEUE_SIZE as usize;

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
    /// Hands its queue back when stopped (for a snapshot).
    worker: Option<Worker<Queue>>,
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
        let (file, capacity_sectors, read_only, id) = (
            self.file.clone(),
            self.capacity_sectors,
            self.read_only,
            self.id,
        );
        self.worker = Some(Worker::spawn("virtio-blk", move |stop| {
            let mut worker = BlockWorker {
                mem,
                queue,
                kick,
                stop,
                interrupt,
                file,
                capacity_sectors,
                read_only,
                id,
            };
            worker.run();
            worker.queue
        })?);
        Ok(())
    }

    fn reset(&mut self) {
        if let Some(w) = self.worker.take() {
            w.stop();
        }
    }

    fn quiesce(&mut self) -> Result<Vec<Queue>, QuiesceError> {
        let worker = self.worker.take().ok_or(QuiesceError::NotActive)?;
        worker
            .stop()
            .map(|q| vec![q])
            .ok_or(QuiesceError::WorkerLost)
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
    fn run(&mut self) {
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
        // A guest refilling the ring from another vCPU could keep us here
        // for ever; after a batch we kick ourselves and go back to epoll,
        // where a stop request is seen too.
        let mut budget = MAX_CHAINS_PER_PASS;
        loop {
            if let Err(e) = self.queue.disable_notification(mem) {
                tracing::debug!("virtio-blk: queue: {e}");
                return;
            }
            let mut popped = false;
            while let Some(chain) = self.queue.pop_descriptor_chain(mem) {
                popped = true;
                let head = chain.head_index();
                let used = process_chain(&disk, mem, chain);
                if let Err(e) = self.queue.add_used(mem, head, used) {
                    tracing::debug!("virtio-blk: add_used: {e}");
                }
                budget -= 1;
                if budget == 0 {
                    let _ = self.kick.write(1);
                    break;
                }
            }
            if budget == 0 {
                break;
            }
            match self.queue.enable_notification(mem) {
                // More arrived while notifications were off. If nothing
                // could be popped, the avail index is bogus (more entries
                // than the ring holds): stop instead of spinning on it.
                Ok(true) if popped => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!("virtio-blk: queue: {e}");
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

#[cfg(test)]
mod tests {
    //! Malformed descriptor chains, as a hostile driver would build them:
    //! each fails alone (used length 0, or an IOERR status), never panics,
    //! never touches memory outside the chain's writable buffers.

    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::virtio::block::request::{
        VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
    };
    use crate::virtio::test_chains::{desc, guest_memory, DATA, HDR, MEM_SIZE, NEXT, WRITE};

    const STATUS: u64 = 0x3_0000;
    const SECTORS: u64 = 8;
    const UNTOUCHED: u8 = 0xee;

    struct Fixture {
        mem: GuestMemoryMmap,
        file: File,
        id: [u8; ID_LEN],
    }

    /// 1 MiB of guest memory and an 8-sector disk whose sector n is filled
    /// with the byte n + 1.
    fn fixture() -> Fixture {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "isola-vmm-blk-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        for s in 0..SECTORS {
            file.write_all(&[s as u8 + 1; SECTOR_SIZE as usize])
                .unwrap();
        }
        let mem = guest_memory();
        mem.write_slice(&[UNTOUCHED; 0x3_0000], GuestAddress(HDR))
            .unwrap();
        Fixture {
            mem,
            file,
            id: *b"isola-disk-under-tst",
        }
    }

    impl Fixture {
        fn header(&self, type_: u32, sector: u64) {
            self.mem.write_obj(type_, GuestAddress(HDR)).unwrap();
            self.mem.write_obj(0u32, GuestAddress(HDR + 4)).unwrap();
            self.mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
        }

        fn status(&self) -> u8 {
            self.mem.read_obj(GuestAddress(STATUS)).unwrap()
        }

        /// Run `descs` as one chain. With `linked`, `next` fields are used
        /// as given (for loops); otherwise they are chained in order.
        fn run(&self, descs: &[RawDescriptor], read_only: bool, linked: bool) -> u32 {
            let q = MockSplitQueue::new(&self.mem, 16);
            let chain = if linked {
                q.build_multiple_desc_chains(descs)
            } else {
                q.build_desc_chain(descs)
            }
            .unwrap();
            let disk = Disk {
                file: &self.file,
                capacity_sectors: SECTORS,
                read_only,
                id: &self.id,
            };
            process_chain(&disk, &self.mem, chain)
        }

        fn read_request(&self, sector: u64) -> u32 {
            self.header(VIRTIO_BLK_T_IN, sector);
            self.run(
                &[
                    desc(HDR, 16, 0, 0),
                    desc(DATA, 512, WRITE, 0),
                    desc(STATUS, 1, WRITE, 0),
                ],
                false,
                false,
            )
        }
    }

    #[test]
    fn a_valid_read_works() {
        let fx = fixture();
        assert_eq!(fx.read_request(2), 513);
        assert_eq!(fx.status(), VIRTIO_BLK_S_OK);
        let mut data = [0u8; 512];
        fx.mem.read_slice(&mut data, GuestAddress(DATA)).unwrap();
        assert_eq!(data, [3u8; 512]);
    }

    #[test]
    fn header_outside_guest_memory() {
        let fx = fixture();
        let used = fx.run(
            &[
                desc(0x7000_0000_0000, 16, 0, 0),
                desc(DATA, 512, WRITE, 0),
                desc(STATUS, 1, WRITE, 0),
            ],
            false,
            false,
        );
        assert_eq!(used, 0);
        assert_eq!(fx.status(), UNTOUCHED);
    }

    #[test]
    fn buffer_running_past_the_end_of_memory() {
        let fx = fixture();
        fx.header(VIRTIO_BLK_T_IN, 0);
        for (addr, len) in [(MEM_SIZE - 256, 512), (DATA, u32::MAX), (u64::MAX - 8, 512)] {
            let used = fx.run(
                &[
                    desc(HDR, 16, 0, 0),
                    desc(addr, len, WRITE, 0),
                    desc(STATUS, 1, WRITE, 0),
                ],
                false,
                false,
            );
            assert_eq!(used, 0, "buffer {addr:#x}+{len:#x}");
            assert_eq!(fx.status(), UNTOUCHED);
        }
    }

    #[test]
    fn descriptors_that_loop() {
        let fx = fixture();
        fx.header(VIRTIO_BLK_T_IN, 0);
        // 0 -> 1 -> 0 -> ...: the queue size bounds the walk.
        let used = fx.run(
            &[desc(HDR, 16, NEXT, 1), desc(DATA, 512, NEXT | WRITE, 0)],
            false,
            true,
        );
        assert!(used <= 16 * 512, "used {used}");
        // A descriptor that names itself.
        let used = fx.run(&[desc(DATA, 512, NEXT | WRITE, 0)], false, true);
        assert_eq!(
            used, 0,
            "no readable header in a self-loop of writable descriptors"
        );
    }

    #[test]
    fn status_descriptor_in_the_wrong_direction() {
        let fx = fixture();
        fx.header(VIRTIO_BLK_T_IN, 0);
        let used = fx.run(
            &[
                desc(HDR, 16, 0, 0),
                desc(DATA, 512, WRITE, 0),
                desc(STATUS, 1, 0, 0),
            ],
            false,
            false,
        );
        // The last writable byte takes the status; the data is then
        // unaligned, so the request fails. The read-only byte is not touched.
        assert_eq!(used, 1);
        assert_eq!(fx.status(), UNTOUCHED);
        let last: u8 = fx.mem.read_obj(GuestAddress(DATA + 511)).unwrap();
        assert_eq!(last, VIRTIO_BLK_S_IOERR);
        // Nothing writable at all: no status can be given.
        let used = fx.run(
            &[
                desc(HDR, 16, 0, 0),
                desc(DATA, 512, 0, 0),
                desc(STATUS, 1, 0, 0),
            ],
            false,
            false,
        );
        assert_eq!(used, 0);
    }

    #[test]
    fn header_only_and_short_header() {
        let fx = fixture();
        fx.header(VIRTIO_BLK_T_IN, 0);
        assert_eq!(fx.run(&[desc(HDR, 16, 0, 0)], false, false), 0);
        assert_eq!(
            fx.run(
                &[desc(HDR, 8, 0, 0), desc(STATUS, 1, WRITE, 0)],
                false,
                false
            ),
            0
        );
        assert_eq!(fx.run(&[desc(HDR, 0, 0, 0)], false, false), 0);
        assert_eq!(fx.status(), UNTOUCHED);
    }

    #[test]
    fn sectors_past_the_end_of_the_disk() {
        let fx = fixture();
        for sector in [SECTORS, SECTORS + 1, u64::MAX, u64::MAX / 512] {
            assert_eq!(fx.read_request(sector), 1, "sector {sector}");
            assert_eq!(fx.status(), VIRTIO_BLK_S_IOERR);
        }
    }

    #[test]
    fn unaligned_data_and_read_only_writes_fail_with_ioerr() {
        let fx = fixture();
        fx.header(VIRTIO_BLK_T_IN, 0);
        let used = fx.run(
            &[
                desc(HDR, 16, 0, 0),
                desc(DATA, 100, WRITE, 0),
                desc(STATUS, 1, WRITE, 0),
            ],
            false,
            false,
        );
        assert_eq!(used, 1);
        assert_eq!(fx.status(), VIRTIO_BLK_S_IOERR);

        fx.header(VIRTIO_BLK_T_OUT, 0);
        let used = fx.run(
            &[
                desc(HDR, 16, 0, 0),
                desc(DATA, 512, 0, 0),
                desc(STATUS, 1, WRITE, 0),
            ],
            true,
            false,
        );
        assert_eq!(used, 1);
        assert_eq!(fx.status(), VIRTIO_BLK_S_IOERR);
        let mut first = [0u8; 512];
        use std::os::unix::fs::FileExt;
        fx.file.read_exact_at(&mut first, 0).unwrap();
        assert_eq!(first, [1u8; 512], "read-only disk was written");
    }

    #[test]
    fn bogus_avail_index_does_not_spin_the_worker() {
        // The driver claims 0x8000 new entries in a 16-entry ring: the
        // worker must give up on this pass, not loop for ever.
        let fx = fixture();
        let q = MockSplitQueue::new(&fx.mem, 16);
        let queue: Queue = q.create_queue().unwrap();
        q.avail().idx().store(0x8000);
        let mut worker = BlockWorker {
            mem: fx.mem.clone(),
            queue,
            kick: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
            stop: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
            interrupt: Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap())),
            file: Arc::new(fx.file.try_clone().unwrap()),
            capacity_sectors: SECTORS,
            read_only: false,
            id: fx.id,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            worker.process_queue();
            let _ = tx.send(());
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok(),
            "process_queue spun on a bogus avail index"
        );
    }
}
