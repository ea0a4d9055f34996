//! `start`: hands a created container to its own supervisor process and
//! waits for the supervisor's verdict on the runner's `create`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::Host;
use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::state::ContainerStatus;
use crate::teardown;

/// The spawned supervisor (the CLI's child until the CLI exits).
#[derive(Debug)]
pub struct Supervisor {
    pub child: Child,
}

impl Host {
    /// Makes a stopped container startable again (docker's `start` of an
    /// exited container): the runner forgets the old init, the record goes
    /// back to `created`. Its rootfs, upper layer and logs are kept. A
    /// created container is left as it is.
    pub fn prepare_restart(&self, id: &ContainerId) -> Result<()> {
        if self.record(id)?.status != ContainerStatus::Stopped {
            return Ok(());
        }
        match self.runner.delete(id.as_str(), true) {
            Ok(()) | Err(isola_container::Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.store.update(id, |r| {
            r.status = ContainerStatus::Created;
            r.exit_code = None;
            r.finished_at = None;
            r.pid = None;
            r.supervisor_pid = None;
            r.supervisor_start_time = None;
            r.error = None;
            r.oom_killed = false;
        })?;
        Ok(())
    }

    /// Starts a created container under a new supervisor. With
    /// `wait_attach`, the container's program starts only once a CLI has
    /// attached (see [`Host::attach`]).
    pub fn start(&self, id: &ContainerId, wait_attach: bool) -> Result<Supervisor> {
        let record = self.record(id)?;
        if record.status != ContainerStatus::Created {
            return Err(Error::Invalid(format!(
                "container {} is {:?}, not created; use restart",
                record.name, record.status
            )));
        }
        let mut command = Command::new(&self.supervisor_exe);
        command.arg("--root").arg(&self.root);
        if let Some(level) = &self.supervisor_log_level {
            command.arg("--log-level").arg(level);
        }
        command
            .arg("__supervise")
            .arg(id.as_str())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if wait_attach {
            command.arg("--wait-attach");
        }
        let mut child = command.spawn().map_err(Error::io(&self.supervisor_exe))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        match line.trim_end() {
            "created" => Ok(Supervisor { child }),
            other => {
                let _ = child.wait();
                let why = other
                    .strip_prefix("error: ")
                    .unwrap_or("the supervisor died before the container was created")
                    .to_string();
                let _ = teardown::teardown(&self.root, &self.store, &self.runner, id);
                Err(Error::Start(why))
            }
        }
    }
}
