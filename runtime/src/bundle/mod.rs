//! The bundle builder: an image's config plus the user's flags become one
//! OCI runtime `config.json`, the very file either isolation level runs.

mod command;
mod etc_files;
mod executable;
mod options;
mod privileged;
mod seccomp;
mod spec;
mod user;

pub use command::command_line;
pub use etc_files::write_etc_files;
pub use executable::{check_executable, Unrunnable};
pub use options::{ImageDefaults, Network, RunOptions, Tmpfs, Volume};
pub use spec::build_spec;
pub use user::{resolve_user, ResolvedUser};
