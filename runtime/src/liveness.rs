//! Is a recorded process still the one we started? A PID alone can be
//! reused; the PID plus its start time (field 22 of /proc/<pid>/stat) cannot.

/// The start time of `pid` in clock ticks since boot, if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; the
    // fields after its last ')' are plain.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is alive, is not a zombie, and started at `started`.
pub fn is_same_process(pid: i32, started: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let zombie = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        == Some("Z");
    !zombie && start_time(pid) == Some(started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_itself_and_not_a_stranger() {
        let me = std::process::id() as i32;
        let t = start_time(me).unwrap();
        assert!(is_same_process(me, t));
        assert!(!is_same_process(me, t + 1));
        assert!(!is_same_process(i32::MAX, t));
    }
}
