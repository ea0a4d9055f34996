//! `attach`: a connection to a running container's supervisor.

use std::os::unix::net::UnixStream;

use super::Host;
use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::paths::{SocketDir, ATTACH_SOCKET};

impl Host {
    /// Connects to the container's attach socket. The caller speaks
    /// [`crate::supervisor::Frame`]s; a container started with
    /// `wait_attach` begins when the first caller sends `Ready`.
    pub fn attach(&self, id: &ContainerId) -> Result<UnixStream> {
        let paths = self.paths(id);
        let dir = SocketDir::open(&paths.dir).map_err(Error::io(&paths.dir))?;
        UnixStream::connect(dir.path(ATTACH_SOCKET)).map_err(Error::io(paths.attach_socket()))
    }
}
