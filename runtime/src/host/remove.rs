//! `rm`: the last step of the lifecycle.

use std::time::{Duration, Instant};

use super::Host;
use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::liveness;
use crate::state::{ContainerRecord, ContainerStatus};
use crate::teardown;

impl Host {
    /// Removes a stopped or created container; a running one only with
    /// `force` (killed first, as docker's `rm -f`).
    pub fn remove(&self, id: &ContainerId, force: bool) -> Result<()> {
        let record = self.record(id)?;
        if record.status == ContainerStatus::Running {
            if !force {
                return Err(Error::Invalid(format!(
                    "cannot remove container {}: it is running; stop it first or use --force",
                    record.name
                )));
            }
            if let Err(e) = self.signal(&record, "KILL", true) {
                tracing::debug!("SIGKILL before removal: {e}");
            }
            self.wait_stopped(id, Duration::from_secs(10))?;
        }
        // The supervisor records the exit before it finishes; `rm` returns
        // only once it is gone, so nothing of the container outlives `rm`.
        self.wait_supervisor_gone(&record, Duration::from_secs(5));
        teardown::teardown(&self.root, &self.store, &self.runner, id)
    }

    fn wait_supervisor_gone(&self, record: &ContainerRecord, timeout: Duration) {
        let (Some(pid), Some(started)) = (record.supervisor_pid, record.supervisor_start_time)
        else {
            return;
        };
        let deadline = Instant::now() + timeout;
        while liveness::is_same_process(pid, started) {
            if Instant::now() >= deadline {
                tracing::warn!("supervisor {pid} still running after the container stopped");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
