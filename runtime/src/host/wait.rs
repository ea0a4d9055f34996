//! `wait`: block until a container stops, then give its exit status.

use std::time::Duration;

use super::Host;
use crate::error::{Error, Result};
use crate::id::ContainerId;

impl Host {
    /// The container's exit status once it has stopped. A `--rm` container
    /// that is removed meanwhile reports `NotFound`.
    pub fn wait(&self, id: &ContainerId) -> Result<i32> {
        while !self.wait_stopped(id, Duration::from_secs(3600))? {}
        let record = self.record(id)?;
        record.exit_code.ok_or_else(|| {
            Error::Invalid(format!(
                "container {} stopped without a status",
                record.name
            ))
        })
    }
}
