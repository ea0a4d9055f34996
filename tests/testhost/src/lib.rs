//! isola-testhost: run a command inside a nested test host, an outer Linux under QEMU TCG
//! with emulated AMD SVM, whose `/dev/kvm` can run a Linux guest where the machine's own KVM
//! cannot (e.g. `kvm_pvm`, no VT-x/AMD-V).
//!
//! The outer guest boots Debian's bookworm kernel (unpacked by `tests/testhost/prepare.sh`)
//! with a small cached initramfs; its root is the host's own `/` over 9p (read-only), the
//! work tree is shared read-write at the same path, and the command runs in a chroot of it.
//! Output comes back on virtio-serial ports, the exit status and a heartbeat on a control
//! port that a watchdog on the host side watches.
//!
//! One module per concern: [`assets`] (kernel, modules, busybox), [`kmod`] (module
//! dependencies), [`cpio`] and [`initramfs`] (the outer initramfs), [`spec`] (what to run),
//! [`layout`] (shares and PATH), [`qemu`] (the command line), [`console`] (the control
//! protocol and console log), [`watchdog`] (liveness), [`session`] (one run).

pub mod assets;
pub mod console;
pub mod cpio;
pub mod initramfs;
pub mod kmod;
pub mod layout;
pub mod qemu;
pub mod session;
pub mod signals;
pub mod spec;
pub mod watchdog;

pub use session::{run, Finished, Options, EXIT_FAILURE, EXIT_STALL};
