//! `exec`: a new process in a running container.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use isola_container::{ExecOptions, Runner};

use super::wait::Forwarder;
use crate::cli::Exec;

pub fn exec(runner: &Runner, args: Exec) -> Result<i32> {
    if args.process_label.is_some() || args.apparmor.is_some() {
        bail!("--process-label and --apparmor are not supported (no SELinux or AppArmor)");
    }
    if args.tty && args.process.is_none() {
        bail!("--tty needs --process with \"terminal\": true (and --console-socket)");
    }
    if args.process.is_none() && args.command.is_empty() {
        bail!("exec needs a command or --process");
    }
    let (user, group) = match &args.user {
        Some(u) => parse_user(u)?,
        None => (None, None),
    };
    let env = args
        .env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => bail!("--env {kv:?} is not KEY=VALUE"),
        })
        .collect::<Result<HashMap<_, _>>>()?;
    let opts = ExecOptions {
        process: args.process,
        args: args.command,
        env,
        cwd: args.cwd,
        user,
        group,
        additional_gids: args.additional_gids,
        capabilities: args.cap,
        no_new_privs: args.no_new_privs,
        console_socket: args.console_socket,
        pid_file: args.pid_file,
        preserve_fds: args.preserve_fds,
        detach: args.detach,
        cgroup: args.cgroup,
        ignore_paused: args.ignore_paused,
    };
    let pid = runner
        .exec(&args.id, &opts)
        .with_context(|| format!("cannot exec in container {}", args.id))?;
    if args.detach {
        return Ok(0);
    }
    // Blocked only now: the new process must not inherit a blocked mask. A
    // signal arriving in the moment between ends this process instead.
    Forwarder::block()?.wait(pid)
}

/// `UID[:GID]`, numeric as in runc.
pub fn parse_user(s: &str) -> Result<(Option<u32>, Option<u32>)> {
    let (uid, gid) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let num = |v: &str| {
        v.parse::<u32>()
            .with_context(|| format!("--user {s:?}: not UID[:GID]"))
    };
    Ok((Some(num(uid)?), gid.map(num).transpose()?))
}
