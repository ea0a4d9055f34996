//! One module per command group.

pub mod auth;
pub mod containers;
pub mod images;
pub mod registry;
