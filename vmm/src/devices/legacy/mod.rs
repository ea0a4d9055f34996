//! Legacy ISA devices on the port-I/O bus.

pub mod i8042;
pub mod power;
pub mod serial;
