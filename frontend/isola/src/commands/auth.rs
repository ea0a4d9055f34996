//! `isola login` / `isola logout`.

use std::io::Read;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::commands::registry::RegistryArgs;
use crate::global::{block_on, GlobalOpts};

#[derive(Subcommand)]
pub enum Command {
    /// Log in to a registry (credentials stored 0600 under --root)
    Login(Login),
    /// Forget a registry's credentials
    Logout { registry: String },
}

#[derive(Args)]
pub struct Login {
    registry: String,
    #[arg(short, long)]
    username: Option<String>,
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from stdin
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    registry_args: RegistryArgs,
}

pub fn run(g: &GlobalOpts, c: Command) -> anyhow::Result<i32> {
    let store = g.store()?;
    match c {
        Command::Login(l) => {
            let user = l.username.context("--username is required")?;
            let password = match (l.password, l.password_stdin) {
                (Some(p), false) => p,
                (None, true) => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading the password from stdin")?;
                    s.trim_end_matches(['\n', '\r']).to_string()
                }
                _ => bail!("give exactly one of --password and --password-stdin"),
            };
            block_on(store.login(&l.registry, &user, &password, &l.registry_args.tls()))?
                .with_context(|| format!("logging in to {}", l.registry))?;
            println!("Login Succeeded!");
        }
        Command::Logout { registry } => {
            if store.logout(&registry)? {
                println!("Removed login credentials for {registry}");
            } else {
                bail!("not logged in to {registry}");
            }
        }
    }
    Ok(0)
}
