//! `rm`: the last step of the lifecycle.

use std::time::Duration;

use super::Host;
use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::state::ContainerStatus;
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
            if let Err(e) = self.runner.kill(id.as_str(), "KILL", true) {
                tracing::debug!("SIGKILL before removal: {e}");
            }
            self.wait_stopped(id, Duration::from_secs(10))?;
        }
        teardown::teardown(&self.root, &self.store, &self.runner, id)
    }
}
