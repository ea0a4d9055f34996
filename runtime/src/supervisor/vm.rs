//! The supervisor at the vm level: the same job as at the process level
//! (stdio, logs, attach, exit status), but the container runs in a microVM
//! this process boots and runs itself. The guest's agent creates the
//! container from the same config.json with the same runner; the
//! container's stdout, stderr and stdin are separate vsock streams, which
//! the pump treats exactly like the process level's pipes.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::time::Duration;

use chrono::Utc;
use isola_container::Runner;
use isola_protocol::{ProcessKey, Request, Response, StdioStream};

use super::pump::{self, Ended};
use super::stdio::HostEnds;
use super::{
    bind_attach_and_record, finish, tell_clients, wait_for_attach, Session, SupervisorOptions,
};
use crate::error::{Error, Result};
use crate::paths::ContainerPaths;
use crate::state::{ContainerRecord, ContainerStatus, StateStore};
use crate::teardown;
use crate::vm::agent::{agent_error, open_stdio};
use crate::vm::{
    connect_agent, shipped_files, volumes, AgentConn, Sandbox, VmSize, Volume, IMAGE_DEVICE,
    SCRATCH_DEVICE,
};

/// Control requests (create, start, resize) get this long to be answered.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn run(
    opts: &SupervisorOptions,
    report: File,
    store: &StateStore,
    runner: &Runner,
    paths: &ContainerPaths,
    record: &ContainerRecord,
) -> Result<i32> {
    // The connection that created the container carries its start and
    // resizes too: one vsock handshake fewer on the start path.
    let (mut session, listener, sandbox, mut control) = match prepare(opts, store, paths, record) {
        Ok(p) => p,
        Err(e) => {
            let mut report = report;
            let _ = writeln!(report, "error: {e}");
            let _ = teardown::teardown(&opts.root, store, runner, &opts.id);
            return Err(e);
        }
    };
    let key = ProcessKey {
        id: opts.id.as_str().to_owned(),
        exec_id: None,
    };
    // An attaching CLI needs the attach socket as soon as the container
    // exists; a detached `run` returns only once it runs, as docker's does.
    let mut report = Some(report);
    let first_client = if opts.wait_attach {
        if let Some(mut r) = report.take() {
            let _ = writeln!(r, "created");
        }
        let mut resize = resizer(&mut control, &key, record.tty);
        match wait_for_attach(&listener, &mut resize) {
            Ok(client) => Some(client),
            Err(e) => {
                tracing::error!("no CLI attached: {e}");
                sandbox.stop();
                let _ = teardown::teardown(&opts.root, store, runner, &opts.id);
                return Err(Error::io(paths.attach_socket())(e));
            }
        }
    } else {
        None
    };

    // The wait is asked for before the start, on its own connection, so no
    // exit can be missed.
    let waiter = connect_agent(&paths.dir)?;
    if let Err(e) = control
        .expect_ok(Request::StartProcess { key: key.clone() })
        .map_err(agent_error)
    {
        tracing::error!("starting the container: {e}");
        sandbox.stop();
        if let Some(mut r) = report.take() {
            let _ = writeln!(r, "error: {e}");
            let _ = teardown::teardown(&opts.root, store, runner, &opts.id);
            return Err(e);
        }
        let ended = Ended {
            code: 125,
            oom_killed: Some(false),
            error: Some(e.to_string()),
        };
        return finish(opts, store, runner, &ended);
    }
    let me = std::process::id() as i32;
    if let Err(e) = store.update(&opts.id, |r| {
        r.status = ContainerStatus::Running;
        r.started_at = Some(Utc::now());
        r.pid = Some(me);
    }) {
        tracing::error!("recording the start: {e}");
    }
    tracing::info!("container started in its VM");
    if let Some(mut r) = report.take() {
        let _ = writeln!(r, "created");
    }

    let exit = exit_watch(waiter, key.clone(), &sandbox);
    let tty = record.tty;
    let resize_key = key.clone();
    let resize: pump::Resize = Box::new(move |rows, cols| {
        if tty {
            let _ = control.call(Request::ResizeTerminal {
                key: resize_key.clone(),
                rows,
                cols,
            });
        }
    });
    let outcome = pump::run(&mut session, listener, first_client, paths, exit, resize)?;
    sandbox.stop();
    let code = finish(opts, store, runner, &outcome.ended)?;
    tell_clients(outcome.clients, code, &outcome.ended);
    Ok(code)
}

fn control_connection(paths: &ContainerPaths) -> Result<AgentConn> {
    let mut control = connect_agent(&paths.dir)?;
    control
        .stream()
        .set_read_timeout(Some(CONTROL_TIMEOUT))
        .map_err(Error::io(&paths.dir))?;
    Ok(control)
}

fn resizer<'a>(
    control: &'a mut AgentConn,
    key: &'a ProcessKey,
    tty: bool,
) -> impl FnMut(u16, u16) + 'a {
    move |rows, cols| {
        if tty {
            let _ = control.call(Request::ResizeTerminal {
                key: key.clone(),
                rows,
                cols,
            });
        }
    }
}

/// Boots the VM, has the agent create the container, opens its stdio
/// streams and binds the attach socket.
fn prepare(
    opts: &SupervisorOptions,
    store: &StateStore,
    paths: &ContainerPaths,
    record: &ContainerRecord,
) -> Result<(Session, UnixListener, Sandbox, AgentConn)> {
    let (_sockets, listener) = bind_attach_and_record(opts, store, paths)?;

    let text = std::fs::read_to_string(paths.config()).map_err(Error::io(paths.config()))?;
    let spec: oci_spec::runtime::Spec =
        serde_json::from_str(&text).map_err(|source| Error::CorruptState {
            path: paths.config(),
            source,
        })?;
    let files = shipped_files(&spec, &crate::vm::files::under(&paths.etc()))?;
    let volumes = volumes(&spec, &crate::vm::files::under(&paths.etc()))?;
    let disk = record
        .vm_disk
        .clone()
        .ok_or_else(|| Error::Vm("the container has no image disk recorded".into()))?;
    let console = std::env::var_os("ISOLA_VM_CONSOLE").map(|_| paths.dir.join("console.log"));
    let size = VmSize::for_spec(&spec);
    tracing::debug!(?size, "booting the VM");
    let sandbox = Sandbox::boot(
        &paths.dir,
        Some(&disk),
        record.vm_scratch.as_deref(),
        &volumes,
        size,
        console,
        Some(&crate::vm::template::dir(&opts.root)),
    )?;
    tracing::debug!("guest agent ready");

    let created = (|| {
        let mut control = control_connection(paths)?;
        control.handshake().map_err(agent_error)?;
        control
            .expect_ok(Request::CreateContainer {
                id: opts.id.as_str().to_owned(),
                spec: text,
                image_device: Some(IMAGE_DEVICE.into()),
                root_share: None,
                scratch_device: record.vm_scratch.as_ref().map(|_| SCRATCH_DEVICE.into()),
                files,
                volumes: volumes.iter().map(Volume::to_guest).collect(),
                terminal: record.tty,
                stdin: record.stdin_open,
            })
            .map_err(agent_error)?;
        tracing::debug!("container created in the guest");
        let key = ProcessKey {
            id: opts.id.as_str().to_owned(),
            exec_id: None,
        };
        let open = |s| open_stdio(&paths.dir, &key, s).map(OwnedFd::from);
        let stdout = open(StdioStream::Stdout)?;
        let stderr = if record.tty {
            None
        } else {
            Some(open(StdioStream::Stderr)?)
        };
        let stdin = if record.stdin_open {
            Some(open(StdioStream::Stdin)?)
        } else {
            None
        };
        Ok::<_, Error>((
            HostEnds::Pipes {
                stdin,
                stdout,
                stderr,
            },
            control,
        ))
    })();
    let (host_ends, control) = match created {
        Ok(h) => h,
        Err(e) => {
            sandbox.stop();
            return Err(e);
        }
    };
    Ok((
        Session {
            pid: 0,
            host_ends,
            master: None,
            cgroups_path: String::new(),
        },
        listener,
        sandbox,
        control,
    ))
}

/// Learns how the container ended: from the agent's answer to the wait,
/// or, if the VM itself ends first (a guest kernel panic, a killed agent),
/// from that.
pub(crate) fn exit_watch(
    mut waiter: AgentConn,
    key: ProcessKey,
    sandbox: &Sandbox,
) -> pump::ExitWatch {
    // (from the VM's end, how it ended)
    let (tx, rx) = mpsc::channel::<(bool, Ended)>();
    let from_agent = tx.clone();
    std::thread::spawn(move || {
        let ended = match waiter.call(Request::WaitProcess { key }) {
            Ok(Response::Exited { code, oom_killed }) => Ended {
                code,
                oom_killed: Some(oom_killed),
                error: None,
            },
            Ok(other) => Ended {
                code: 137,
                oom_killed: Some(false),
                error: Some(format!("unexpected answer from the guest agent: {other:?}")),
            },
            Err(e) => Ended {
                code: 137,
                oom_killed: Some(false),
                error: Some(format!("lost the guest agent: {e}")),
            },
        };
        let _ = from_agent.send((false, ended));
    });
    let vm_ended = sandbox.end_watch();
    std::thread::spawn(move || {
        if let Ok(reason) = vm_ended.recv() {
            let _ = tx.send((
                true,
                Ended {
                    code: 137,
                    oom_killed: Some(false),
                    error: Some(format!("the container's VM stopped: {reason}")),
                },
            ));
        }
    });
    Box::new(move || {
        let vanished = || Ended {
            code: 137,
            oom_killed: Some(false),
            error: Some("the container's watchers vanished".into()),
        };
        match rx.recv() {
            // A guest that dies (a kernel panic) drops the agent's
            // connection a moment before the VM's end is known; the VM's
            // reason is the one worth reporting.
            Ok((false, lost)) if lost.error.is_some() => {
                match rx.recv_timeout(Duration::from_secs(2)) {
                    Ok((true, vm)) => vm,
                    _ => lost,
                }
            }
            Ok((_, ended)) => ended,
            Err(_) => vanished(),
        }
    })
}
