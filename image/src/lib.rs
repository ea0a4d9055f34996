//! isola's image store: content-addressed OCI images, pulled, loaded and
//! saved with every blob verified, layers unpacked once and safely, an
//! overlay rootfs for the process level and one EROFS disk per image for the
//! vm level.
//!
//! ```no_run
//! # fn main() -> isola_image::Result<()> {
//! let store = isola_image::Store::open("/var/lib/isola")?;
//! let image = store.resolve("busybox")?;
//! let lowers = store.layer_dirs(&image)?;
//! # Ok(()) }
//! ```

pub mod archive;
pub mod digest;
pub mod erofs;
pub mod error;
pub mod pull;
pub mod reference;
pub mod rootfs;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use error::{Error, Result};
pub use store::check::CheckReport;
pub use store::gc::PruneReport;
pub use store::{Image, Store, DEFAULT_ROOT};
pub use unpack::Limits;
