//! `exec`: an extra process in a running container, started from a process
//! JSON derived from the container's own (same capabilities, rlimits and
//! environment), with the caller's overrides. Without a terminal the process
//! inherits the caller's stdio; with one, the caller gets the master.

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use isola_container::ExecOptions;
use rustix::process::{waitpid, Pid};
use serde_json::Value;

use super::Host;
use crate::bundle::resolve_user;
use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::paths::SocketDir;
use crate::state::ContainerStatus;
use crate::supervisor;

/// What `isola exec` asks for.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub args: Vec<String>,
    /// `KEY=VAL`, overriding the container's.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    /// The caller's terminal size (rows, cols), for a process with a tty.
    pub size: Option<(u16, u16)>,
}

/// A started exec process (the caller's child, or a process in the
/// container's VM).
#[derive(Debug)]
pub struct ExecProcess {
    pub pid: i32,
    pub terminal: Option<OwnedFd>,
    pub(crate) vm: Option<crate::vm::process::VmExec>,
}

impl Host {
    /// Starts the process; the caller waits for it with [`Host::wait_exec`].
    pub fn exec(&self, id: &ContainerId, request: &ExecRequest) -> Result<ExecProcess> {
        let record = self.record(id)?;
        if record.status != ContainerStatus::Running {
            return Err(Error::Invalid(format!(
                "container {} is not running",
                record.name
            )));
        }
        if request.args.is_empty() {
            return Err(Error::Invalid("exec needs a command".into()));
        }
        let paths = self.paths(id);
        let spec: Value = std::fs::read(paths.config())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "container {} has no readable config.json",
                    record.name
                ))
            })?;
        let mut process = spec["process"].clone();
        process["args"] = serde_json::json!(request.args);
        process["terminal"] = Value::Bool(request.tty);
        if let Some(cwd) = &request.workdir {
            process["cwd"] = Value::String(cwd.clone());
        }
        if let Some(user) = &request.user {
            let u = resolve_user(&paths.rootfs(), user).map_err(Error::Invalid)?;
            process["user"] = serde_json::json!({"uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids});
        }
        let mut env: Vec<String> =
            serde_json::from_value(process["env"].clone()).unwrap_or_default();
        for var in &request.env {
            let key = var.split('=').next().unwrap_or_default();
            env.retain(|v| v.split('=').next() != Some(key));
            env.push(var.clone());
        }
        process["env"] = serde_json::json!(env);

        if record.isolation == "vm" {
            let (terminal, vm) = crate::vm::process::exec(
                &paths.dir,
                id.as_str(),
                &process,
                request.tty,
                request.size,
            )?;
            return Ok(ExecProcess {
                pid: 0,
                terminal,
                vm: Some(vm),
            });
        }
        let tag = format!("exec-{}", std::process::id());
        let process_path = paths.dir.join(format!("{tag}.json"));
        std::fs::write(
            &process_path,
            serde_json::to_vec(&process).unwrap_or_default(),
        )
        .map_err(Error::io(&process_path))?;
        let console_path = paths.dir.join(format!("{tag}.sock"));
        let mut options = ExecOptions {
            process: Some(process_path.clone()),
            detach: true,
            env: HashMap::new(),
            ..Default::default()
        };
        let result = if request.tty {
            let listener = SocketDir::open(&paths.dir)
                .and_then(|dir| supervisor::console_listener(&dir.path(&format!("{tag}.sock"))))
                .map_err(Error::io(&console_path));
            listener.and_then(|listener| {
                options.console_socket = Some(console_path.clone());
                let receiver = std::thread::spawn(move || supervisor::receive_master(&listener));
                let pid = self.runner.exec(id.as_str(), &options)?;
                let master = receiver
                    .join()
                    .map_err(|_| Error::Invalid("console receiver panicked".into()))?
                    .map_err(Error::io(&console_path))?;
                Ok(ExecProcess {
                    pid,
                    terminal: Some(master),
                    vm: None,
                })
            })
        } else {
            self.runner
                .exec(id.as_str(), &options)
                .map(|pid| ExecProcess {
                    pid,
                    terminal: None,
                    vm: None,
                })
                .map_err(Error::from)
        };
        let _ = std::fs::remove_file(&process_path);
        let _ = std::fs::remove_file(&console_path);
        result
    }

    /// For a process in a VM with a terminal: how to resize that terminal
    /// (the local `terminal` end is only a socket). `None` elsewhere: there
    /// the caller resizes the master it holds.
    pub fn exec_resizer(
        &self,
        process: &mut ExecProcess,
    ) -> Option<Box<dyn FnMut(u16, u16) + Send>> {
        process.vm.as_mut().and_then(|vm| vm.resizer())
    }

    /// Waits for an exec process; its status in docker's numbers.
    pub fn wait_exec(&self, process: &mut ExecProcess) -> Result<i32> {
        if let Some(vm) = process.vm.take() {
            return vm.wait();
        }
        let pid = Pid::from_raw(process.pid)
            .ok_or_else(|| Error::Invalid(format!("bad exec pid {}", process.pid)))?;
        loop {
            match waitpid(Some(pid), crate::supervisor::wait_all()) {
                Ok(Some((_, status))) => {
                    return Ok(status
                        .exit_status()
                        .or_else(|| status.terminating_signal().map(|s| 128 + s))
                        .unwrap_or(255))
                }
                Ok(None) => continue,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(Error::io("waitpid")(e.into())),
            }
        }
    }
}
