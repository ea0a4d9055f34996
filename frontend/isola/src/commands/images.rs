//! Image commands: `pull, load, save, images, rmi, tag` at the top level (as
//! docker has them) and `image {inspect, prune, check, ls, rm, erofs}`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use isola_image::archive::{Format, LoadOptions};
use isola_image::pull::{PlatformWanted, ProgressMode, PullOptions};
use isola_image::{reference, Image, Limits, Store};

use crate::commands::registry::RegistryArgs;
use crate::global::{block_on, GlobalOpts};

#[derive(Subcommand)]
pub enum Top {
    /// Pull an image from a registry
    Pull(Pull),
    /// Load images from a docker-archive or oci-archive tarball
    Load(Load),
    /// Save images to a docker-archive or oci-archive tarball
    Save(Save),
    /// List images
    Images(List),
    /// Remove images
    Rmi(Remove),
    /// Give an image another name
    Tag { source: String, target: String },
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Show an image's details as JSON
    Inspect { images: Vec<String> },
    /// Remove untagged images and everything no image uses
    Prune,
    /// Verify every blob and layer of the store
    Check,
    /// List images
    Ls(List),
    /// Remove images
    Rm(Remove),
    /// Build (once) and print the image's EROFS root disk for the vm level
    Erofs { image: String },
}

#[derive(Args)]
pub struct LimitArgs {
    /// Largest uncompressed size one layer may unpack to, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_bytes)]
    max_layer_size: u64,
}

impl LimitArgs {
    fn store(&self, g: &GlobalOpts) -> anyhow::Result<Store> {
        let mut store = g.store()?;
        store.set_limits(Limits {
            max_bytes: self.max_layer_size,
            ..Limits::default()
        });
        Ok(store)
    }
}

#[derive(Args)]
pub struct Pull {
    reference: String,
    #[command(flatten)]
    registry: RegistryArgs,
    /// os/arch[/variant] to pick from a multi-platform image
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
    /// user:password for this pull (instead of `isola login`)
    #[arg(long)]
    creds: Option<String>,
    /// No progress output
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
pub struct Load {
    /// The tarball ("-" or absent: stdin)
    #[arg(short, long)]
    input: Option<PathBuf>,
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
pub struct Save {
    #[arg(required = true)]
    images: Vec<String>,
    /// Output file (absent: stdout)
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// docker-archive or oci-archive
    #[arg(long, default_value = "docker-archive")]
    format: String,
}

#[derive(Args)]
pub struct List {
    /// Only IDs
    #[arg(short, long)]
    quiet: bool,
    /// Full IDs
    #[arg(long)]
    no_trunc: bool,
    /// json for machine use
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct Remove {
    #[arg(required = true)]
    images: Vec<String>,
    /// Remove an image by ID even when it has several names
    #[arg(short, long)]
    force: bool,
}

pub fn run_top(g: &GlobalOpts, c: Top) -> anyhow::Result<i32> {
    match c {
        Top::Pull(p) => pull(g, p),
        Top::Load(l) => load(g, l),
        Top::Save(s) => save(g, s),
        Top::Images(l) => list(g, l),
        Top::Rmi(r) => remove(g, r),
        Top::Tag { source, target } => {
            g.store()?
                .tag(&source, &target)
                .with_context(|| format!("tagging {source} as {target}"))?;
            Ok(0)
        }
    }
}

pub fn run_image(g: &GlobalOpts, c: ImageCommand) -> anyhow::Result<i32> {
    match c {
        ImageCommand::Inspect { images } => inspect(g, images),
        ImageCommand::Prune => {
            let r = g.store()?.prune().context("pruning")?;
            for i in &r.images_removed {
                println!("Deleted: {i}");
            }
            println!(
                "Removed {} blobs, {} layers, {} EROFS images, {} temp entries; {} bytes freed",
                r.blobs_removed, r.layers_removed, r.erofs_removed, r.tmp_removed, r.bytes_freed
            );
            Ok(0)
        }
        ImageCommand::Check => {
            let r = g.store()?.check().context("checking the store")?;
            for p in &r.problems {
                println!("problem: {p}");
            }
            for p in &r.garbage {
                println!("garbage: {p}");
            }
            println!(
                "{} images, {} blobs checked, {} problems",
                r.images,
                r.blobs_checked,
                r.problems.len()
            );
            Ok(if r.ok() { 0 } else { 1 })
        }
        ImageCommand::Ls(l) => list(g, l),
        ImageCommand::Rm(r) => remove(g, r),
        ImageCommand::Erofs { image } => {
            let store = g.store()?;
            let image = store.resolve(&image)?;
            println!(
                "{}",
                store
                    .erofs_image(&image)
                    .context("building the EROFS image")?
                    .display()
            );
            Ok(0)
        }
    }
}

fn pull(g: &GlobalOpts, p: Pull) -> anyhow::Result<i32> {
    let store = p.limits.store(g)?;
    let credentials = match p.creds {
        Some(c) => {
            let (u, pw) = c.split_once(':').context("--creds takes user:password")?;
            Some((u.to_string(), pw.to_string()))
        }
        None => None,
    };
    let opts = PullOptions {
        tls: p.registry.tls(),
        platform: p.platform.parse::<PlatformWanted>()?,
        progress: if p.quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::Auto
        },
        credentials,
        ..PullOptions::default()
    };
    let image = block_on(store.pull(&p.reference, &opts))?
        .with_context(|| format!("pulling {}", p.reference))?;
    println!("{}", image.id);
    Ok(0)
}

fn load(g: &GlobalOpts, l: Load) -> anyhow::Result<i32> {
    let store = l.limits.store(g)?;
    let images = match l.input.as_deref() {
        None => {
            if io::stdin().is_terminal() {
                bail!("no input: give -i FILE or pipe an archive in");
            }
            store.load(BufReader::new(io::stdin().lock()), &LoadOptions::default())
        }
        Some(p) if p.as_os_str() == "-" => {
            store.load(BufReader::new(io::stdin().lock()), &LoadOptions::default())
        }
        Some(p) => {
            let f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
            store.load(BufReader::new(f), &LoadOptions::default())
        }
    }
    .context("loading")?;
    if !l.quiet {
        for i in images {
            if i.names.is_empty() {
                println!("Loaded image: {}", i.id);
            }
            for n in &i.names {
                println!("Loaded image: {n}");
            }
        }
    }
    Ok(0)
}

fn save(g: &GlobalOpts, s: Save) -> anyhow::Result<i32> {
    let store = g.store()?;
    let format: Format = s.format.parse()?;
    match s.output {
        Some(path) => {
            // Written beside, renamed when complete: no half archive left.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            store.save(&s.images, format, BufWriter::new(tmp.as_file()))?;
            tmp.persist(&path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or a pipe");
            }
            store.save(&s.images, format, BufWriter::new(io::stdout().lock()))?;
        }
    }
    Ok(0)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.3} {}", UNITS[u])
    }
}

fn list(g: &GlobalOpts, l: List) -> anyhow::Result<i32> {
    let images: Vec<Image> = g.store()?.images()?;
    if l.format.as_deref() == Some("json") {
        let v: Vec<_> = images.iter().map(|i| i.inspect()).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let mut out = io::stdout().lock();
    let id = |i: &Image| {
        if l.no_trunc {
            i.id.to_string()
        } else {
            i.id.short().to_string()
        }
    };
    if l.quiet {
        for i in &images {
            writeln!(out, "{}", id(i))?;
        }
        return Ok(0);
    }
    writeln!(
        out,
        "{:<50} {:<16} {:<14} {:<22} {:>12}",
        "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"
    )?;
    for i in &images {
        let names: Vec<(String, String)> = if i.names.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            i.names
                .iter()
                .map(|n| {
                    let (r, t) = reference::split_name(n);
                    (r.to_string(), t.to_string())
                })
                .collect()
        };
        for (repo, tag) in names {
            let created = i
                .created()
                .map(|c| c.chars().take(19).collect::<String>())
                .unwrap_or_default();
            writeln!(
                out,
                "{repo:<50} {tag:<16} {:<14} {created:<22} {:>12}",
                id(i),
                human(i.size())
            )?;
        }
    }
    Ok(0)
}

fn remove(g: &GlobalOpts, r: Remove) -> anyhow::Result<i32> {
    // Through the host runtime: it knows which images containers still use.
    let exe = std::env::current_exe().context("finding the isola binary")?;
    let host = isola_host::Host::open(&g.root, exe)?;
    let mut failed = false;
    for image in &r.images {
        match host.remove_image(image, r.force) {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(e) => {
                eprintln!("isola: error: removing {image}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn inspect(g: &GlobalOpts, images: Vec<String>) -> anyhow::Result<i32> {
    let store = g.store()?;
    let v = images
        .iter()
        .map(|i| {
            store
                .resolve(i)
                .map(|i| i.inspect())
                .with_context(|| format!("inspecting {i}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}
