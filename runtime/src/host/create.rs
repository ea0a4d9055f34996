//! `create`: image + flags → a container in state `created`, with its
//! rootfs mounted and its config.json written. Nothing runs yet.

use std::fs;

use isola_image::Image;

use super::Host;
use crate::atomic;
use crate::bundle::{
    build_spec, check_executable, command_line, write_etc_files, ImageDefaults, RunOptions,
    Unrunnable,
};
use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::name;
use crate::paths::ContainerPaths;
use crate::state::ContainerRecord;
use crate::teardown;

/// What `isola create`/`run` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub image: String,
    pub name: Option<String>,
    pub run: RunOptions,
    /// `--rm`
    pub auto_remove: bool,
    /// `-i`
    pub stdin_open: bool,
}

impl Host {
    /// Creates a container; on any failure nothing of it is left.
    pub fn create(&self, request: &CreateRequest) -> Result<ContainerRecord> {
        match request.run.isolation.as_str() {
            "process" | "vm" => {}
            other => {
                return Err(Error::Invalid(format!(
                    "invalid --isolation {other:?}: use process or vm"
                )))
            }
        }
        if let Some(name) = &request.name {
            name::validate(name)?;
        }
        let image = self.images.resolve(&request.image)?;
        let defaults = image_defaults(&image);
        let command = command_line(&defaults, &request.run).ok_or_else(|| {
            Error::Invalid("no command specified: the image has no Entrypoint or Cmd".into())
        })?;

        let id = ContainerId::generate()?;
        let name = match &request.name {
            Some(n) => n.clone(),
            None => format!("{}_{}", name::generate(id.as_str()), &id.as_str()[..4]),
        };
        let paths = ContainerPaths::new(&self.root, &id);
        let mut record = ContainerRecord::new(id.clone(), name, paths.bundle());
        record.image = request.image.clone();
        record.image_digest = image.manifest_digest.to_string();
        record.isolation = request.run.isolation.clone();
        record.command = command;
        record.auto_remove = request.auto_remove;
        record.stdin_open = request.stdin_open;
        record.tty = request.run.tty;
        if record.isolation == "vm" {
            // Made once per image and shared by all its VMs; made here, so
            // a first run's wait for it is part of create, not of boot.
            record.vm_disk = Some(self.images.erofs_image(&image)?);
            if !request.auto_remove {
                record.vm_scratch = Some(paths.dir.join("scratch.ext4"));
            }
        }
        self.store.create(&record)?;

        if let Err(e) = self.prepare(&paths, &id, &image, &defaults, &request.run) {
            if let Err(cleanup) = teardown::teardown(&self.root, &self.store, &self.runner, &id) {
                tracing::warn!("cleaning up after a failed create: {cleanup}");
            }
            return Err(e);
        }
        Ok(record)
    }

    fn prepare(
        &self,
        paths: &ContainerPaths,
        id: &ContainerId,
        image: &Image,
        defaults: &ImageDefaults,
        run: &RunOptions,
    ) -> Result<()> {
        for dir in [paths.upper(), paths.work(), paths.rootfs(), paths.etc()] {
            fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        }
        self.images
            .mount_rootfs(image, &paths.upper(), &paths.work(), &paths.rootfs())?;
        let spec = build_spec(id.as_str(), &paths.rootfs(), &paths.etc(), defaults, run)?;

        check_program(&paths.rootfs(), &spec)?;
        let hostname = spec.hostname().clone().unwrap_or_default();
        write_etc_files(&paths.etc(), &hostname, run.network).map_err(Error::io(paths.etc()))?;
        if run.isolation == "vm" {
            // What a VM cannot have is refused before any VM boots.
            crate::vm::shipped_files(&spec, &crate::vm::files::under(&paths.etc()))?;
            if !crate::vm::volumes(&spec, &crate::vm::files::under(&paths.etc()))?.is_empty() {
                crate::vm::volumes::daemon_binary()?;
            }
        }
        let scratch = self
            .store
            .load(id)?
            .vm_scratch
            .filter(|_| run.isolation == "vm");
        if let Some(scratch) = scratch {
            crate::vm::scratch::make_scratch(&scratch)?;
        }
        let json = serde_json::to_vec_pretty(&spec).map_err(|source| Error::CorruptState {
            path: paths.config(),
            source,
        })?;
        atomic::write(&paths.config(), &json)
    }
}

/// docker's 127/126 before anything starts.
fn check_program(rootfs: &std::path::Path, spec: &oci_spec::runtime::Spec) -> Result<()> {
    let Some(process) = spec.process() else {
        return Ok(());
    };
    let program = process
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_default();
    let path = process
        .env()
        .as_ref()
        .and_then(|env| {
            env.iter()
                .find_map(|v| v.strip_prefix("PATH=").map(str::to_string))
        })
        .unwrap_or_default();
    let cwd = process.cwd().to_string_lossy().into_owned();
    check_executable(rootfs, &program, &path, &cwd).map_err(|e| match e {
        Unrunnable::NotFound(m) => Error::CommandNotFound(m),
        Unrunnable::NotExecutable(m) => Error::NotExecutable(m),
    })
}

/// The parts of the image's config the bundle needs.
pub(crate) fn image_defaults(image: &Image) -> ImageDefaults {
    let Some(config) = image.config.config() else {
        return ImageDefaults::default();
    };
    ImageDefaults {
        entrypoint: config.entrypoint().clone().unwrap_or_default(),
        cmd: config.cmd().clone().unwrap_or_default(),
        env: config.env().clone().unwrap_or_default(),
        working_dir: config.working_dir().clone(),
        user: config.user().clone().filter(|u| !u.is_empty()),
    }
}
