//! A supervisor killed with -9 records nothing. Every command that reads a
//! record checks that its supervisor is still the process that was started
//! (PID + start time); if not, the container is stopped for good: its init,
//! which nobody reaps or serves any more, is killed, and the record says why.

use chrono::Utc;

use super::Host;
use crate::liveness;
use crate::state::{ContainerRecord, ContainerStatus};

impl Host {
    pub(crate) fn reconcile(&self, record: ContainerRecord) -> ContainerRecord {
        if record.status == ContainerStatus::Stopped {
            return record;
        }
        let (Some(pid), Some(started)) = (record.supervisor_pid, record.supervisor_start_time)
        else {
            return record; // not started yet
        };
        if liveness::is_same_process(pid, started) {
            return record;
        }
        let why = if record.isolation == "vm" {
            // The supervisor was the VMM: the VM, and so the container,
            // ended with it.
            format!("the supervisor (pid {pid}) died, and the container's VM with it")
        } else {
            if let Err(e) = self.runner.kill(record.id.as_str(), "KILL", true) {
                tracing::debug!("killing the orphaned container {}: {e}", record.id);
            }
            format!("the supervisor (pid {pid}) died; the container was killed")
        };
        tracing::warn!("{}: {why}", record.id);
        match self.store.update(&record.id, |r| {
            r.status = ContainerStatus::Stopped;
            r.exit_code.get_or_insert(137);
            r.finished_at.get_or_insert_with(Utc::now);
            r.error = Some(why.clone());
        }) {
            Ok((updated, _)) => updated,
            Err(_) => record,
        }
    }
}
