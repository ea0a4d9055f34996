//! isola's guest agent. As PID 1 in the microVM it mounts the basics
//! ([`init`]), reaps orphans ([`reaper`]) and serves the host over vsock
//! ([`server`] → [`serve`] → [`service`]); [`exec`] runs programs,
//! [`power`] ends the VM.

pub mod container;
pub mod exec;
pub mod init;
pub mod logging;
pub mod power;
pub mod reaper;
pub mod restored;
pub mod serve;
pub mod server;
pub mod service;
pub mod sys;
pub mod vsock;
