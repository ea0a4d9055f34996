//! The accept loop: a thread per connection, a bound on how many, and no
//! error that takes the agent down (as PID 1 it must never exit).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::io::Write;

use isola_protocol::{AGENT_READY_PORT, READY_LINE};

use crate::power::Power;
use crate::serve::serve;
use crate::vsock::{VsockListener, VsockStream, HOST_CID};

/// More simultaneous connections than the host ever needs (its tests open
/// 100); past this, new ones are closed at once instead of exhausting
/// threads and memory.
pub const MAX_CONNECTIONS: usize = 1024;

/// Listen on vsock `port` and serve forever. Binding is retried (with
/// back-off) rather than given up: a guest without a vsock device is broken,
/// but a live agent logging why is more useful than a kernel panic.
/// `announce`: once listening, tell the host (see [`announce_ready`]).
pub fn run_vsock(port: u32, power: Arc<dyn Power>, announce: bool) -> ! {
    let mut delay = Duration::from_millis(100);
    let listener = loop {
        match VsockListener::bind(port) {
            Ok(l) => break l,
            Err(e) => {
                tracing::error!("cannot listen on vsock port {port}: {e}; retrying in {delay:?}");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    };
    tracing::info!("listening on vsock port {port}");
    if announce {
        announce_ready();
    }

    let active = Arc::new(AtomicUsize::new(0));
    let mut next_id: u64 = 0;
    loop {
        let (stream, cid, peer_port) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                // EMFILE, ENOMEM, ...: back off briefly and keep serving.
                tracing::warn!("accept on vsock port {port}: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        next_id += 1;
        if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            tracing::warn!("{MAX_CONNECTIONS} connections open; refusing {cid}:{peer_port}");
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (active2, power2) = (Arc::clone(&active), Arc::clone(&power));
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{next_id}"))
            .spawn(move || {
                tracing::debug!("connection {next_id} from {cid}:{peer_port}");
                match serve(stream, power2.as_ref()) {
                    Ok(()) => tracing::debug!("connection {next_id} closed"),
                    Err(e) => tracing::warn!("connection {next_id} ended: {e}"),
                }
                active2.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("cannot start a thread for connection {next_id}: {e}");
        }
    }
}

/// How long a timed-out readiness announcement is retried.
const READY_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Connect to the host's [`AGENT_READY_PORT`] and write [`READY_LINE`], so a
/// host waiting for the agent learns it is up without polling the booting
/// guest. From a thread of its own: the connect can take up to the vsock
/// connect timeout, and serving must not wait for it. No listener there is
/// normal (a host that does not care), hence only a debug line.
fn announce_ready() {
    let spawned = std::thread::Builder::new().name("ready".into()).spawn(|| {
        // The guest kernel gives up on a connect after 2 s. A host busy
        // booting ten guests on two cores can take longer than that to
        // answer, and a lost announcement would leave it waiting for a
        // guest that is up; so a timed-out connect is tried again, for
        // about as long as a host waits.
        let deadline = std::time::Instant::now() + READY_RETRY_FOR;
        let sent = loop {
            match VsockStream::connect(HOST_CID, AGENT_READY_PORT) {
                Err(e)
                    if e.kind() == std::io::ErrorKind::TimedOut
                        && std::time::Instant::now() < deadline =>
                {
                    tracing::debug!("announcing readiness: {e}; trying again");
                }
                other => break other.and_then(|mut conn| conn.write_all(READY_LINE)),
            }
        };
        match sent {
            Ok(()) => tracing::debug!("announced readiness on host port {AGENT_READY_PORT}"),
            Err(e) => {
                tracing::debug!("no readiness listener on host port {AGENT_READY_PORT}: {e}")
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the readiness thread: {e}");
    }
}
