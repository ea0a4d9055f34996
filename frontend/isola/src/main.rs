//! `isola`: the daemonless docker-like CLI. Parsing and printing only; the
//! work is done by the libraries. Each command group lives in its own module
//! under `commands/` and is flattened into the top level here, so new groups
//! (`run`, `ps`, …) are added without touching the existing ones.

mod commands;
mod global;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "isola",
    version,
    about = "Run OCI images as containers or microVMs"
)]
struct Cli {
    #[command(flatten)]
    global: global::GlobalOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Images(commands::images::Top),
    /// Manage images
    Image {
        #[command(subcommand)]
        command: commands::images::ImageCommand,
    },
    #[command(flatten)]
    Auth(commands::auth::Command),
    #[command(flatten)]
    Containers(Box<commands::containers::Command>),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // docker: a usage error of `isola` itself is 125.
            std::process::exit(if e.use_stderr() { 125 } else { 0 });
        }
    };
    // The supervisor logs to its container's file, not to a terminal.
    let supervising = matches!(&cli.command, Command::Containers(c)
        if matches!(**c, commands::containers::Command::Supervise(_)));
    if !supervising {
        global::init_logging(&cli.global.log_level);
    }
    let result = match cli.command {
        Command::Images(c) => commands::images::run_top(&cli.global, c),
        Command::Image { command } => commands::images::run_image(&cli.global, command),
        Command::Auth(c) => commands::auth::run(&cli.global, c),
        Command::Containers(c) => commands::containers::run(&cli.global, *c),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("isola: error: {e:#}");
            std::process::exit(1);
        }
    }
}
