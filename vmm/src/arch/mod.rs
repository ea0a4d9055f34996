//! The x86_64 boot path: where things live in guest memory ([`layout`]),
//! building guest memory ([`memory`]), loading the kernel and initramfs
//! ([`loader`]), the PVH start-of-day structure ([`pvh`]), the MP table that
//! tells a guest without ACPI about its CPUs and interrupt routing
//! ([`mptable`]), and the initial vCPU state ([`cpu`]).

pub mod cpu;
pub mod layout;
pub mod loader;
pub mod memory;
pub mod mptable;
pub mod pvh;
