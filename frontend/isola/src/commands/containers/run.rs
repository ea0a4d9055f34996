//! `isola run` and `isola create`.

use anyhow::{bail, Result};
use clap::Args;
use isola_host::bundle::{Network, RunOptions, Tmpfs, Volume};
use isola_host::config::Config;
use isola_host::host::CreateRequest;
use isola_host::Host;

use super::{attach, fail, flags};

/// The flags `run` and `create` share (docker's spelling).
#[derive(Args, Debug)]
pub struct ContainerFlags {
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Set environment variables (KEY=VAL, or KEY to copy isola's own)
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long = "env-file")]
    env_file: Vec<String>,
    /// Bind mount a host path: HOST:CONTAINER[:ro|rw]
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Mount a tmpfs: PATH[:OPTIONS]
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// User: name|uid[:group|gid]
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Overwrite the image's entrypoint ("" clears it)
    #[arg(long)]
    entrypoint: Option<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    read_only: bool,
    /// Every capability, no seccomp filter, no masked paths, all devices
    /// (at --isolation=vm this power ends at the guest kernel)
    #[arg(long)]
    privileged: bool,
    /// Memory limit (e.g. 64m, 1g)
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Number of CPUs (e.g. 0.5)
    #[arg(long)]
    cpus: Option<f64>,
    /// Limit on the number of processes (-1 or 0: unlimited)
    #[arg(long)]
    pids_limit: Option<i64>,
    /// none (only loopback) or host
    #[arg(long, default_value = "none")]
    network: String,
    /// Container host name
    #[arg(long, short = 'h')]
    hostname: Option<String>,
    /// process or vm (default: /etc/isola/config.toml, else process)
    #[arg(long)]
    isolation: Option<String>,
    /// The image to run
    image: String,
    /// The command and its arguments (replace the image's Cmd)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args, Debug)]
#[command(disable_help_flag = false)]
pub struct RunArgs {
    /// Run in the background and print the container ID
    #[arg(short = 'd', long)]
    detach: bool,
    #[command(flatten)]
    flags: ContainerFlags,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    flags: ContainerFlags,
}

impl ContainerFlags {
    fn request(&self) -> Result<CreateRequest> {
        let mut env = Vec::new();
        for file in &self.env_file {
            env.extend(flags::read_env_file(file)?);
        }
        env.extend(flags::expand_env(&self.env));
        let network = match self.network.as_str() {
            "none" => Network::None,
            "host" => Network::Host,
            other => bail!("invalid --network {other:?}: use none or host"),
        };
        let isolation = match &self.isolation {
            Some(level) => level.clone(),
            None => Config::load(&Config::path())?
                .isolation
                .map_or("process".into(), |i| i.to_string()),
        };
        let run = RunOptions {
            args: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env,
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            read_only: self.read_only,
            tty: self.tty,
            memory: self
                .memory
                .as_deref()
                .map(flags::parse_memory)
                .transpose()?,
            cpus: self.cpus,
            pids_limit: self.pids_limit,
            network,
            volumes: self
                .volume
                .iter()
                .map(|v| Volume::parse(v))
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?,
            tmpfs: self
                .tmpfs
                .iter()
                .map(|t| Tmpfs::parse(t))
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?,
            privileged: self.privileged,
            isolation,
        };
        Ok(CreateRequest {
            image: self.image.clone(),
            name: self.name.clone(),
            run,
            auto_remove: self.rm,
            stdin_open: self.interactive,
        })
    }
}

/// `isola create`: prints the new container's ID.
pub fn create(host: &Host, args: CreateArgs) -> Result<i32> {
    let record = match args.flags.request().and_then(|r| Ok(host.create(&r)?)) {
        Ok(r) => r,
        Err(e) => return Ok(fail(&e)),
    };
    println!("{}", record.id);
    Ok(0)
}

/// `isola run`: create, start, and unless `-d`, attach until it exits.
pub fn run(host: &Host, args: RunArgs) -> Result<i32> {
    let record = match args.flags.request().and_then(|r| Ok(host.create(&r)?)) {
        Ok(r) => r,
        Err(e) => return Ok(fail(&e)),
    };
    let mut supervisor = match host.start(&record.id, !args.detach) {
        Ok(s) => s,
        Err(e) => return Ok(fail(&e.into())),
    };
    if args.detach {
        println!("{}", record.id);
        return Ok(0);
    }
    let code = attach::attach(host, &record.id, args.flags.interactive, args.flags.tty);
    let _ = supervisor.child.wait();
    match code {
        Ok(code) => Ok(code),
        Err(e) => Ok(fail(&e)),
    }
}
