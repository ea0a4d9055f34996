//! The user's terminal: raw mode for `-t` sessions (restored on drop, so a
//! failing command never leaves the shell unusable) and its size.

use std::io::IsTerminal;

use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, OptionalActions, Termios};

/// Raw mode on stdin while alive.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Switches stdin to raw mode if it is a terminal.
    pub fn enable() -> Option<RawMode> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(&stdin, OptionalActions::Now, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// The terminal's size as (rows, cols), from stdout or stdin.
pub fn size() -> Option<(u16, u16)> {
    let ws = tcgetwinsize(std::io::stdout())
        .or_else(|_| tcgetwinsize(std::io::stdin()))
        .ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}
