//! What comes back from the outer guest, apart from the command's own output:
//!
//! - the control channel (a virtio-serial port): heartbeat lines and the markers
//!   `ISOLA-TESTHOST-READY`, `ISOLA-TESTHOST-EXIT <status>`, `ISOLA-TESTHOST-ERROR <msg>`,
//!   parsed by [`ControlParser`];
//! - the serial console (kernel and init messages), of which [`ConsoleTail`] keeps the last
//!   lines to show when something goes wrong.
//!
//! Both are guest output: bounded, and never trusted to be well formed.

use std::collections::VecDeque;

pub const READY_MARKER: &str = "ISOLA-TESTHOST-READY";
pub const EXIT_MARKER: &str = "ISOLA-TESTHOST-EXIT";
pub const ERROR_MARKER: &str = "ISOLA-TESTHOST-ERROR";
pub const HEARTBEAT: &str = "hb";

/// Longest control line kept; the rest of a longer line is dropped.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    Heartbeat,
    /// The guest is set up and starts the command.
    Ready,
    /// The command exited with this status (0..=255).
    Exit(u8),
    /// The guest could not run the command.
    Error(String),
    /// A line that is none of the above (kept for diagnostics).
    Unknown(String),
}

/// Incremental line parser for the control channel.
#[derive(Debug, Default)]
pub struct ControlParser {
    line: Vec<u8>,
}

impl ControlParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes as they arrive; returns the events of every line completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<ControlEvent> {
        let mut events = Vec::new();
        for &b in bytes {
            match b {
                b'\n' => {
                    events.push(parse_line(&self.line));
                    self.line.clear();
                }
                _ if self.line.len() < MAX_LINE => self.line.push(b),
                _ => {}
            }
        }
        events
    }
}

/// One control line (without its newline) → event.
pub fn parse_line(raw: &[u8]) -> ControlEvent {
    let text = String::from_utf8_lossy(raw);
    let line = text.trim_end_matches('\r').trim();
    if line == HEARTBEAT {
        return ControlEvent::Heartbeat;
    }
    if line == READY_MARKER {
        return ControlEvent::Ready;
    }
    if let Some(rest) = marker_arg(line, EXIT_MARKER) {
        return match rest.parse::<u8>() {
            Ok(status) => ControlEvent::Exit(status),
            Err(_) => ControlEvent::Unknown(line.to_owned()),
        };
    }
    if let Some(rest) = marker_arg(line, ERROR_MARKER) {
        return ControlEvent::Error(rest.to_owned());
    }
    ControlEvent::Unknown(line.to_owned())
}

/// `"MARKER arg"` → `Some("arg")`; the marker alone or glued to more text → `None`.
fn marker_arg<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(marker)?;
    if rest.is_empty() {
        return Some("");
    }
    rest.strip_prefix(' ').map(str::trim)
}

/// The last `capacity` lines of the console, with the partial line at the end.
#[derive(Debug)]
pub struct ConsoleTail {
    lines: VecDeque<String>,
    partial: Vec<u8>,
    capacity: usize,
}

impl ConsoleTail {
    pub fn new(capacity: usize) -> Self {
        Self {
            lines: VecDeque::with_capacity(capacity.min(1024)),
            partial: Vec::new(),
            capacity: capacity.max(1),
        }
    }

    /// Feeds console bytes; returns the lines completed by them (for live logging).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut done = Vec::new();
        for &b in bytes {
            match b {
                b'\n' => {
                    let line = clean(&self.partial);
                    self.partial.clear();
                    self.store(line.clone());
                    done.push(line);
                }
                b'\r' => {}
                _ if self.partial.len() < MAX_LINE => self.partial.push(b),
                _ => {}
            }
        }
        done
    }

    /// Adds a whole line that did not come from the console stream (e.g. QEMU's stderr).
    pub fn note(&mut self, line: &str) {
        self.store(line.to_owned());
    }

    fn store(&mut self, line: String) {
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The kept lines, oldest first, plus the unfinished last line if any.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.lines.iter().cloned().collect();
        if !self.partial.is_empty() {
            out.push(clean(&self.partial));
        }
        out
    }
}

/// Lossy UTF-8 with control characters (escape sequences) made visible.
fn clean(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .map(|c| if c.is_control() && c != '\t' { '.' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_markers_and_heartbeats() {
        let mut p = ControlParser::new();
        let events = p.feed(
            b"hb\nISOLA-TESTHOST-READY\nhb\r\nISOLA-TESTHOST-EXIT 7\nISOLA-TESTHOST-ERROR /dev/kvm is missing\n",
        );
        assert_eq!(
            events,
            [
                ControlEvent::Heartbeat,
                ControlEvent::Ready,
                ControlEvent::Heartbeat,
                ControlEvent::Exit(7),
                ControlEvent::Error("/dev/kvm is missing".into()),
            ]
        );
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let mut p = ControlParser::new();
        assert!(p.feed(b"ISOLA-TESTHOST-EX").is_empty());
        assert!(p.feed(b"IT 1").is_empty());
        assert_eq!(p.feed(b"23\nh"), [ControlEvent::Exit(123)]);
        assert_eq!(p.feed(b"b\n"), [ControlEvent::Heartbeat]);
    }

    #[test]
    fn exit_statuses_are_bounded_and_exact() {
        assert_eq!(parse_line(b"ISOLA-TESTHOST-EXIT 0"), ControlEvent::Exit(0));
        assert_eq!(
            parse_line(b"ISOLA-TESTHOST-EXIT 255"),
            ControlEvent::Exit(255)
        );
        for bad in [
            &b"ISOLA-TESTHOST-EXIT 256"[..],
            b"ISOLA-TESTHOST-EXIT -1",
            b"ISOLA-TESTHOST-EXIT",
            b"ISOLA-TESTHOST-EXIT seven",
            b"ISOLA-TESTHOST-EXIT 1 2",
            b"ISOLA-TESTHOST-EXIT7",
            b"ISOLA-TESTHOST-EXITED 7",
            b"xISOLA-TESTHOST-EXIT 7",
        ] {
            assert!(
                matches!(parse_line(bad), ControlEvent::Unknown(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn garbage_and_overlong_lines_are_harmless() {
        let mut p = ControlParser::new();
        let mut long = vec![b'x'; 3 * MAX_LINE];
        long.extend_from_slice(b"\n\xff\xfe\nhb\n");
        let events = p.feed(&long);
        assert_eq!(events.len(), 3);
        assert!(matches!(&events[0], ControlEvent::Unknown(l) if l.len() == MAX_LINE));
        assert!(matches!(&events[1], ControlEvent::Unknown(_)));
        assert_eq!(events[2], ControlEvent::Heartbeat);
        // An overlong line must not smuggle a marker in through its tail.
        let mut sneaky = vec![b'x'; MAX_LINE];
        sneaky.extend_from_slice(b"\nISOLA-TESTHOST-EXIT 0");
        let mut p = ControlParser::new();
        let events = p.feed(&sneaky);
        assert!(matches!(&events[..], [ControlEvent::Unknown(_)]));
        let mut glued = vec![b'x'; MAX_LINE + 5];
        glued.extend_from_slice(b"ISOLA-TESTHOST-EXIT 0\n");
        assert!(matches!(&p.feed(&glued)[..], [ControlEvent::Unknown(_)]));
    }

    #[test]
    fn console_tail_keeps_the_last_lines() {
        let mut t = ConsoleTail::new(3);
        let done = t.push(b"one\r\ntwo\nthree\nfour\nfi");
        assert_eq!(done, ["one", "two", "three", "four"]);
        t.note("qemu: something");
        assert_eq!(t.lines(), ["three", "four", "qemu: something", "fi"]);
        t.push(b"ve\x1b[0m\n");
        assert_eq!(t.lines(), ["four", "qemu: something", "five.[0m"]);
    }
}
