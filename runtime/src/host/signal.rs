//! `kill` and `stop`.

use std::time::{Duration, Instant};

use super::Host;
use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::state::{ContainerRecord, ContainerStatus};
use crate::vm::agent::agent_error;
use crate::vm::connect_agent;
use isola_protocol::Request;

impl Host {
    /// Sends `signal` (a name like `TERM`/`SIGTERM` or a number) to the
    /// container's init.
    pub fn kill(&self, id: &ContainerId, signal: &str) -> Result<()> {
        let record = self.record(id)?;
        if record.status != ContainerStatus::Running {
            return Err(Error::Invalid(format!(
                "container {} is not running",
                record.name
            )));
        }
        self.signal(&record, signal, false)
    }

    /// Delivers a signal through the runner that runs the container: ours
    /// on the host, or the guest's, through its agent.
    pub(crate) fn signal(&self, record: &ContainerRecord, signal: &str, all: bool) -> Result<()> {
        if record.isolation != "vm" {
            self.runner.kill(record.id.as_str(), signal, all)?;
            return Ok(());
        }
        let mut agent = connect_agent(&self.paths(&record.id).dir)?;
        agent
            .stream()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(Error::io("agent connection"))?;
        agent
            .expect_ok(Request::SignalContainer {
                id: record.id.as_str().to_owned(),
                signal: signal.trim_start_matches("SIG").to_owned(),
                all,
            })
            .map_err(agent_error)
    }

    /// docker's stop: SIGTERM, then after `timeout` SIGKILL to every process
    /// of the container; returns once the supervisor has recorded the exit.
    pub fn stop(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        let record = self.record(id)?;
        if record.status != ContainerStatus::Running {
            return Ok(());
        }
        if let Err(e) = self.signal(&record, "TERM", false) {
            tracing::debug!("SIGTERM: {e}");
        }
        if self.wait_stopped(id, timeout)? {
            return Ok(());
        }
        tracing::info!("{id} ignored SIGTERM for {timeout:?}; sending SIGKILL");
        if let Err(e) = self.signal(&record, "KILL", true) {
            tracing::debug!("SIGKILL: {e}");
        }
        if self.wait_stopped(id, Duration::from_secs(10))? {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "container {id} did not stop after SIGKILL"
            )))
        }
    }

    /// Polls until the container is recorded stopped (or gone, for `--rm`);
    /// false on timeout.
    pub(crate) fn wait_stopped(&self, id: &ContainerId, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.record(id) {
                Ok(r) if r.status == ContainerStatus::Stopped => return Ok(true),
                Err(Error::NotFound(_)) => return Ok(true),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
