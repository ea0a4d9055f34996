//! The vhost-user-fs frontend device.

use std::path::Path;
use std::sync::Arc;

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::QueueT;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::TAG_LEN;
use crate::virtio::device::{read_config_bytes, ActivateError, ActiveQueue, Interrupt};
use crate::virtio::{VirtioDevice, DEVICE_ID_FS, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX};

/// One high-priority queue (FORGET, INTERRUPT) and one request queue.
const NUM_QUEUES: usize = 2;
const QUEUE_SIZE: u16 = 1024;
const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// The virtio features we pass through from the backend to the guest.
const PASSED_FEATURES: u64 =
    VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX | VIRTIO_RING_F_INDIRECT_DESC;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("virtio-fs tag {0:?} must be 1..=36 bytes")]
    Tag(String),
    #[error("cannot reach the virtio-fs backend at {path}: {source}")]
    Connect { path: String, source: vhost::Error },
    #[error("virtio-fs backend refused {what}: {source}")]
    Backend {
        what: &'static str,
        source: vhost::Error,
    },
    #[error("virtio-fs backend does not offer VIRTIO_F_VERSION_1")]
    NotModern,
    #[error("guest memory region has no shared file behind it: {0}")]
    Memory(vhost::Error),
    #[error("virtio-fs ring at {0:#x} is outside guest memory")]
    RingAddress(u64),
}

fn backend(what: &'static str) -> impl FnOnce(vhost::Error) -> FsError {
    move |source| FsError::Backend { what, source }
}

pub struct VhostUserFs {
    frontend: Frontend,
    /// Virtio features the guest may accept.
    offered: u64,
    /// Whether the backend speaks vhost-user protocol features (rings then
    /// start disabled and must be enabled).
    protocol_features: bool,
    config: [u8; TAG_LEN + 4],
}

impl VhostUserFs {
    /// Connect to the backend and hand it guest memory; the rings follow
    /// when the guest driver activates the device.
    pub fn connect(socket: &Path, tag: &str, mem: &GuestMemoryMmap) -> Result<Self, FsError> {
        if tag.is_empty() || tag.len() > TAG_LEN {
            return Err(FsError::Tag(tag.into()));
        }
        let mut frontend =
            Frontend::connect(socket, NUM_QUEUES as u64).map_err(|source| FsError::Connect {
                path: socket.display().to_string(),
                source,
            })?;
        frontend.set_owner().map_err(backend("SET_OWNER"))?;
        let features = frontend.get_features().map_err(backend("GET_FEATURES"))?;
        if features & VIRTIO_F_VERSION_1 == 0 {
            return Err(FsError::NotModern);
        }
        let protocol_features = features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;
        if protocol_features {
            let theirs = frontend
                .get_protocol_features()
                .map_err(backend("GET_PROTOCOL_FEATURES"))?;
            // Nothing optional: no config space from the backend (the tag is
            // ours), no backend-initiated requests, no DAX window.
            let wanted = theirs & VhostUserProtocolFeatures::REPLY_ACK;
            frontend
                .set_protocol_features(wanted)
                .map_err(backend("SET_PROTOCOL_FEATURES"))?;
        }
        let mut regions = Vec::new();
        for region in mem.iter() {
            regions.push(
                VhostUserMemoryRegionInfo::from_guest_region(region).map_err(FsError::Memory)?,
            );
        }
        frontend
            .set_mem_table(&regions)
            .map_err(backend("SET_MEM_TABLE"))?;

        let mut config = [0u8; TAG_LEN + 4];
        config[..tag.len()].copy_from_slice(tag.as_bytes());
        config[TAG_LEN..].copy_from_slice(&1u32.to_le_bytes());
        Ok(Self {
            frontend,
            offered: features & PASSED_FEATURES,
            protocol_features,
            config,
        })
    }

    fn start_rings(
        &mut self,
        mem: &GuestMemoryMmap,
        queues: &[ActiveQueue],
        acked: u64,
        call: &EventFd,
    ) -> Result<(), FsError> {
        let mut features = acked & self.offered;
        if self.protocol_features {
            features |= VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        }
        self.frontend
            .set_features(features)
            .map_err(backend("SET_FEATURES"))?;
        for (i, q) in queues.iter().enumerate() {
            let q_ = &q.queue;
            // vhost-user ring addresses are the frontend's virtual addresses.
            let hva = |gpa: u64| -> Result<u64, FsError> {
                mem.get_host_address(GuestAddress(gpa))
                    .map(|p| p as u64)
                    .map_err(|_| FsError::RingAddress(gpa))
            };
            let ring = VringConfigData {
                queue_max_size: q_.max_size(),
                queue_size: q_.size(),
                flags: 0,
                desc_table_addr: hva(q_.desc_table())?,
                used_ring_addr: hva(q_.used_ring())?,
                avail_ring_addr: hva(q_.avail_ring())?,
                log_addr: None,
            };
            self.frontend
                .set_vring_num(i, q_.size())
                .map_err(backend("SET_VRING_NUM"))?;
            self.frontend
                .set_vring_addr(i, &ring)
                .map_err(backend("SET_VRING_ADDR"))?;
            self.frontend
                .set_vring_base(i, 0)
                .map_err(backend("SET_VRING_BASE"))?;
            self.frontend
                .set_vring_call(i, call)
                .map_err(backend("SET_VRING_CALL"))?;
            self.frontend
                .set_vring_kick(i, &q.kick)
                .map_err(backend("SET_VRING_KICK"))?;
            if self.protocol_features {
                self.frontend
                    .set_vring_enable(i, true)
                    .map_err(backend("SET_VRING_ENABLE"))?;
            }
        }
        Ok(())
    }
}

impl VirtioDevice for VhostUserFs {
    fn device_type(&self) -> u32 {
        DEVICE_ID_FS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; NUM_QUEUES]
    }

    fn features(&self) -> u64 {
        self.offered
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<Interrupt>,
        queues: Vec<ActiveQueue>,
        acked_features: u64,
    ) -> Result<(), ActivateError> {
        if queues.len() != NUM_QUEUES {
            return Err(ActivateError::QueueCount {
                want: NUM_QUEUES,
                got: queues.len(),
            });
        }
        // virtiofsd signals the guest through KVM's irqfd itself: no
        // thread of ours between a finished request and the interrupt.
        interrupt.set_backend_signals(true);
        self.start_rings(&mem, &queues, acked_features, interrupt.irqfd())
            .map_err(|e| ActivateError::Worker(std::io::Error::other(e.to_string())))?;
        Ok(())
    }

    fn reset(&mut self) {
        for i in 0..NUM_QUEUES {
            // GET_VRING_BASE stops the ring in the backend.
            if let Err(e) = self.frontend.get_vring_base(i) {
                tracing::debug!(queue = i, "virtio-fs backend did not stop the ring: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::memory::{create_guest_memory, Backing};

    #[test]
    fn bad_tags_and_absent_backends_are_clear_errors() {
        let mem = create_guest_memory(16, Backing::SharedMemfd).unwrap();
        let sock =
            std::env::temp_dir().join(format!("isola-fs-absent-{}.sock", std::process::id()));
        let long = "x".repeat(TAG_LEN + 1);
        assert!(matches!(
            VhostUserFs::connect(&sock, &long, &mem),
            Err(FsError::Tag(_))
        ));
        assert!(matches!(
            VhostUserFs::connect(&sock, "", &mem),
            Err(FsError::Tag(_))
        ));
        match VhostUserFs::connect(&sock, "data", &mem) {
            Err(e @ FsError::Connect { .. }) => assert!(e.to_string().contains("isola-fs-absent")),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("connected to nothing"),
        }
    }

    #[test]
    fn a_backend_that_hangs_up_is_an_error_not_a_panic() {
        let mem = create_guest_memory(16, Backing::SharedMemfd).unwrap();
        let sock =
            std::env::temp_dir().join(format!("isola-fs-hangup-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            drop(s);
        });
        let r = VhostUserFs::connect(&sock, "data", &mem);
        t.join().unwrap();
        let _ = std::fs::remove_file(&sock);
        assert!(
            matches!(r, Err(FsError::Backend { .. })),
            "got {:?}",
            r.err()
        );
    }
}
