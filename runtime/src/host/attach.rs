//! `attach`: a connection to a running container's supervisor.

use std::os::unix::net::UnixStream;

use super::Host;
use crate::error::{Error, Result};
use crate::id::ContainerId;

impl Host {
    /// Connects to the container's attach socket. The caller speaks
    /// [`crate::supervisor::Frame`]s; a container started with
    /// `wait_attach` begins when the first caller sends `Ready`.
    pub fn attach(&self, id: &ContainerId) -> Result<UnixStream> {
        let path = self.paths(id).attach_socket();
        UnixStream::connect(&path).map_err(Error::io(path))
    }
}
