//! `inspect`: docker's most used fields, plus the isolation level.

use serde_json::{json, Value};

use super::Host;
use crate::error::Result;
use crate::id::ContainerId;
use crate::state::ContainerStatus;

impl Host {
    /// The container as JSON in the shape of `docker inspect`.
    pub fn inspect(&self, id: &ContainerId) -> Result<Value> {
        let r = self.record(id)?;
        let paths = self.paths(id);
        let spec: Value = std::fs::read(paths.config())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let status = match r.status {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Stopped => "exited",
        };
        Ok(json!({
            "Id": r.id,
            "Name": format!("/{}", r.name),
            "Created": r.created_at,
            "Path": r.command.first(),
            "Args": r.command.get(1..).unwrap_or_default(),
            "State": {
                "Status": status,
                "Running": r.status == ContainerStatus::Running,
                "Pid": r.pid.unwrap_or(0),
                "ExitCode": r.exit_code.unwrap_or(0),
                "OOMKilled": r.oom_killed,
                "Error": r.error.clone().unwrap_or_default(),
                "StartedAt": r.started_at,
                "FinishedAt": r.finished_at,
            },
            "Image": r.image_digest,
            "ImageName": r.image,
            "LogPath": paths.log(),
            "Isolation": r.isolation,
            "Config": {
                "Hostname": spec["hostname"],
                "User": format!("{}:{}", spec["process"]["user"]["uid"], spec["process"]["user"]["gid"]),
                "Env": spec["process"]["env"],
                "Cmd": r.command,
                "WorkingDir": spec["process"]["cwd"],
                "Tty": r.tty,
                "OpenStdin": r.stdin_open,
                "Labels": {},
            },
            "HostConfig": {
                "Isolation": r.isolation,
                "AutoRemove": r.auto_remove,
                "ReadonlyRootfs": spec["root"]["readonly"],
                "Memory": spec["linux"]["resources"]["memory"]["limit"],
                "NanoCpus": nano_cpus(&spec),
                "PidsLimit": spec["linux"]["resources"]["pids"]["limit"],
            },
            "Mounts": spec["mounts"],
        }))
    }
}

/// docker's NanoCpus: CPUs × 10⁹, from the CFS quota and period.
fn nano_cpus(spec: &Value) -> u64 {
    let cpu = &spec["linux"]["resources"]["cpu"];
    match (cpu["quota"].as_f64(), cpu["period"].as_f64()) {
        (Some(q), Some(p)) if p > 0.0 => (q / p * 1e9) as u64,
        _ => 0,
    }
}
