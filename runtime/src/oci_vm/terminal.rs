//! A vm-level container's terminal as an OCI runtime caller sees it: a host
//! pty whose master goes to the caller's `--console-socket` (as runc sends
//! its container's), and whose slave this side copies to and from the
//! guest's terminal stream. The guest's own pty does the line discipline,
//! so the host slave is raw.

use std::fs::File;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use rustix::fs::{open, Mode, OFlags};
use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, OptionalActions};

use crate::error::{Error, Result};

pub struct HostTerminal {
    slave: OwnedFd,
}

impl HostTerminal {
    /// Makes the pty and hands its master to the caller.
    pub fn open_and_send(console_socket: &Path) -> Result<HostTerminal> {
        let io = |what: &str| Error::io(format!("{} ({what})", console_socket.display()));
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).map_err(|e| io("openpt")(e.into()))?;
        grantpt(&master).map_err(|e| io("grantpt")(e.into()))?;
        unlockpt(&master).map_err(|e| io("unlockpt")(e.into()))?;
        let name = ptsname(&master, Vec::new()).map_err(|e| io("ptsname")(e.into()))?;
        let slave = open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("open the pty")(e.into()))?;
        let mut termios = tcgetattr(&slave).map_err(|e| io("tcgetattr")(e.into()))?;
        termios.make_raw();
        tcsetattr(&slave, OptionalActions::Now, &termios).map_err(|e| io("tcsetattr")(e.into()))?;

        let socket = UnixStream::connect(console_socket).map_err(io("connect"))?;
        let fds = [master.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        sendmsg(
            &socket,
            &[IoSlice::new(name.as_bytes())],
            &mut control,
            SendFlags::empty(),
        )
        .map_err(|e| io("send the master")(e.into()))?;
        Ok(HostTerminal { slave })
    }

    /// Makes the pty this process's controlling terminal, so the caller's
    /// resizes of the master reach it as SIGWINCH. Needs a new session.
    pub fn make_controlling(&self) -> Result<()> {
        rustix::process::ioctl_tiocsctty(&self.slave).map_err(|e| Error::io("TIOCSCTTY")(e.into()))
    }

    /// The size the caller last gave the master, if it gave one.
    pub fn size(&self) -> Option<(u16, u16)> {
        tcgetwinsize(&self.slave)
            .ok()
            .filter(|w| w.ws_row > 0 && w.ws_col > 0)
            .map(|w| (w.ws_row, w.ws_col))
    }

    /// A handle to the slave, to copy through.
    pub fn file(&self) -> Result<File> {
        self.slave
            .try_clone()
            .map(File::from)
            .map_err(Error::io("the pty"))
    }
}
