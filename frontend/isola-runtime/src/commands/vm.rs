//! The verbs at the vm level: a container whose level (annotation,
//! `--isolation`, config default) is `vm` runs in a microVM of its own, by
//! the host runtime's `oci_vm` (the same sandbox, agent and in-guest runner
//! as `isola run --isolation=vm`). Verbs naming such a container come here.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::{bail, Context, Result};
use isola_container::{Isolation, Runner};
use isola_host::oci_vm;
use serde_json::{json, Value};

use super::create::level;
use super::wait::Forwarder;
use crate::cli::{Cli, Command, CreateArgs, Exec, VmExecShim, VmShim};

/// Runs the command if it concerns the vm level; `None` leaves it to the
/// runner (the process level).
pub fn dispatch(cli: &Cli, runner: &Runner) -> Result<Option<i32>> {
    let root = runner.root();
    let is_vm = |id: &str| oci_vm::is_vm(root, id);
    let shim = |verb: &str| shim_command(cli, root, verb);
    let code = match &cli.command {
        Command::Create(c) if level(&c.id, &c.args, &cli.config)? == Isolation::Vm => {
            create(root, &c.id, &c.args, shim("__vm-shim")?)?;
            0
        }
        Command::Run(r) if level(&r.id, &r.args, &cli.config)? == Isolation::Vm => {
            let child = create(root, &r.id, &r.args, shim("__vm-shim")?)?;
            let forwarder = (!r.detach).then(Forwarder::block).transpose()?;
            if let Err(e) = oci_vm::start(root, &r.id) {
                let _ = oci_vm::delete(root, &r.id, true);
                return Err(e).with_context(|| format!("cannot start container {}", r.id));
            }
            let Some(forwarder) = forwarder else {
                return Ok(Some(0));
            };
            // The shim is our child; it ends with the container's status
            // and passes on the signals we forward to it.
            let code = forwarder.wait(child.id() as i32)?;
            if !r.keep {
                oci_vm::delete(root, &r.id, true)
                    .with_context(|| format!("cannot delete container {} after it exited", r.id))?;
            }
            code
        }
        Command::Start(a) if is_vm(&a.id) => {
            oci_vm::start(root, &a.id)
                .with_context(|| format!("cannot start container {}", a.id))?;
            0
        }
        Command::State(a) if is_vm(&a.id) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&oci_vm::state(root, &a.id)?)?
            );
            0
        }
        Command::Kill(k) if is_vm(&k.id) => {
            oci_vm::kill(root, &k.id, &k.signal, k.all)
                .with_context(|| format!("cannot signal container {}", k.id))?;
            0
        }
        Command::Delete(d) if is_vm(&d.id) => {
            oci_vm::delete(root, &d.id, d.force)
                .with_context(|| format!("cannot delete container {}", d.id))?;
            0
        }
        Command::Exec(e) if is_vm(&e.id) => exec(cli, root, e)?,
        Command::Ps(a) if is_vm(&a.id) => bail!(oci_vm::unsupported(&a.id, "ps")),
        Command::Pause(a) if is_vm(&a.id) => {
            oci_vm::freeze(root, &a.id, true)
                .with_context(|| format!("cannot pause container {}", a.id))?;
            0
        }
        Command::Resume(a) if is_vm(&a.id) => {
            oci_vm::freeze(root, &a.id, false)
                .with_context(|| format!("cannot resume container {}", a.id))?;
            0
        }
        Command::Update(u) if is_vm(&u.id) => {
            let resources = serde_json::to_value(super::update::resources(u)?)?;
            oci_vm::update(root, &u.id, &resources)
                .with_context(|| format!("cannot update container {}", u.id))?;
            0
        }
        Command::Events(e) if is_vm(&e.id) => super::events::events_vm(root, e)?,
        Command::List(l) => {
            let mut states = runner.list()?;
            states.extend(oci_vm::list(root));
            states.sort_by(|a, b| a.id.cmp(&b.id));
            super::list::print(&states, l)?;
            0
        }
        Command::VmShim(s) => shim_main(root, s)?,
        Command::VmExecShim(s) => exec_shim_main(root, s)?,
        _ => return Ok(None),
    };
    Ok(Some(code))
}

/// This binary, with the global flags a shim needs, running `verb`.
fn shim_command(cli: &Cli, root: &Path, verb: &str) -> Result<Process> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut cmd = Process::new(exe);
    let mut args: Vec<OsString> = vec!["--root".into(), root.into()];
    if let Some(log) = &cli.log {
        args.extend(["--log".into(), log.into()]);
        let format = match cli.log_format {
            crate::log::LogFormat::Json => "json",
            crate::log::LogFormat::Text => "text",
        };
        args.extend(["--log-format".into(), format.into()]);
    }
    let level = if cli.debug {
        tracing::Level::DEBUG
    } else {
        cli.log_level
    };
    args.extend([
        "--log-level".into(),
        level.to_string().to_lowercase().into(),
    ]);
    cmd.args(args).arg(verb);
    Ok(cmd)
}

fn create(root: &Path, id: &str, args: &CreateArgs, shim: Process) -> Result<std::process::Child> {
    if args.preserve_fds > 0 {
        bail!("cannot create container {id}: --preserve-fds is not available at the vm level");
    }
    let request = oci_vm::CreateRequest {
        root,
        id,
        bundle: &args.bundle,
        console_socket: args.console_socket.as_deref(),
        pid_file: args.pid_file.as_deref(),
    };
    oci_vm::create(&request, shim).with_context(|| format!("cannot create container {id}"))
}

fn shim_main(root: &Path, s: &VmShim) -> Result<i32> {
    let report = oci_vm::spawn::report_pipe(s.report_fd)?;
    let args = oci_vm::shim::ShimArgs {
        dir: oci_vm::container_dir(root, &s.id)?,
        id: s.id.clone(),
        bundle: s.bundle.clone(),
        console_socket: s.console_socket.clone(),
    };
    Ok(oci_vm::shim::run(&args, report))
}

fn exec_shim_main(root: &Path, s: &VmExecShim) -> Result<i32> {
    let report = oci_vm::spawn::report_pipe(s.report_fd)?;
    let process: Value =
        serde_json::from_str(&s.process_json).context("--process-json is not JSON")?;
    let dir = oci_vm::container_dir(root, &s.id)?;
    Ok(oci_vm::exec::run_shim(
        &dir,
        &s.id,
        &process,
        s.console_socket.as_deref(),
        report,
    ))
}

fn exec(cli: &Cli, root: &Path, e: &Exec) -> Result<i32> {
    if e.process_label.is_some() || e.apparmor.is_some() {
        bail!("--process-label and --apparmor are not supported (no SELinux or AppArmor)");
    }
    if e.preserve_fds > 0 {
        bail!("--preserve-fds is not available at the vm level");
    }
    let process = exec_process(root, e)?;
    let detach = if e.detach {
        Some((
            shim_command(cli, root, "__vm-exec-shim")?,
            e.pid_file.as_deref(),
        ))
    } else {
        None
    };
    oci_vm::exec(root, &e.id, &process, e.console_socket.as_deref(), detach)
        .with_context(|| format!("cannot exec in container {}", e.id))
}

/// The process to start: `--process`, or runc's way, the container's own
/// process with the command, env, cwd and user given on the command line.
fn exec_process(root: &Path, e: &Exec) -> Result<Value> {
    if let Some(path) = &e.process {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --process {}", path.display()))?;
        return serde_json::from_str(&text)
            .with_context(|| format!("--process {} is not JSON", path.display()));
    }
    if e.command.is_empty() {
        bail!("exec needs a command or --process");
    }
    if e.tty {
        bail!("--tty needs --process with \"terminal\": true (and --console-socket)");
    }
    let bundle: PathBuf = oci_vm::state(root, &e.id)?.bundle;
    let config = bundle.join("config.json");
    let spec: Value = serde_json::from_slice(
        &std::fs::read(&config).with_context(|| format!("cannot read {}", config.display()))?,
    )
    .with_context(|| format!("{} is not JSON", config.display()))?;
    let mut process = spec.get("process").cloned().unwrap_or_else(|| json!({}));
    process["args"] = json!(e.command);
    process["terminal"] = json!(false);
    let mut env: Vec<String> = process
        .get("env")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    for kv in &e.env {
        let Some((key, _)) = kv.split_once('=') else {
            bail!("--env {kv:?} is not KEY=VALUE");
        };
        env.retain(|v| v.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    process["env"] = json!(env);
    if let Some(cwd) = &e.cwd {
        process["cwd"] = json!(cwd);
    }
    if let Some(user) = &e.user {
        let (uid, gid) = super::exec::parse_user(user)?;
        process["user"]["uid"] = json!(uid);
        if let Some(gid) = gid {
            process["user"]["gid"] = json!(gid);
        }
    }
    if !e.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(e.additional_gids);
    }
    Ok(process)
}
