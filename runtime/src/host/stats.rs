//! `stats`: a running container's cgroup figures, read by the runner that
//! runs it: ours on the host, or the guest's (cgroup v2 there) through its
//! agent. Both give libcgroups' statistics, times in nanoseconds.

use serde_json::Value;

use super::Host;
use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::state::ContainerStatus;

impl Host {
    /// One sample of the container's cgroup statistics: `cpu`, `memory`,
    /// `pids`, `blkio` and `hugetlb`, as the runner's `events --stats`
    /// prints them under `data`.
    pub fn stats(&self, id: &ContainerId) -> Result<Value> {
        let record = self.record(id)?;
        if record.status != ContainerStatus::Running {
            return Err(Error::Invalid(format!(
                "container {} is not running",
                record.name
            )));
        }
        if record.isolation != "vm" {
            let stats = self.runner.stats(record.id.as_str())?;
            return serde_json::to_value(stats)
                .map_err(|e| Error::Invalid(format!("statistics of {}: {e}", record.name)));
        }
        let json =
            crate::vm::agent::container_stats(&self.paths(&record.id).dir, record.id.as_str())?;
        // The guest runner's `events --stats` line: {"type","id","data"}.
        let line: Value = serde_json::from_str(json.trim())
            .map_err(|e| Error::Vm(format!("the guest runner's statistics: {e}")))?;
        match line.get("data") {
            Some(data) if data.is_object() => Ok(data.clone()),
            _ => Err(Error::Vm(format!(
                "the guest runner's statistics have no data: {json}"
            ))),
        }
    }
}
