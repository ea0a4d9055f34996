//! What the host runtime remembers about each container, and where.

mod record;
mod store;

pub use record::{ContainerRecord, ContainerStatus};
pub use store::StateStore;
