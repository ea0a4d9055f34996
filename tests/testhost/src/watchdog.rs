//! Liveness of the outer guest, judged by its heartbeat.
//!
//! The guest's init writes a heartbeat line every second on the control channel, also while
//! the command is silent. No heartbeat for the stall timeout means the guest (or QEMU) hangs.
//! Before the first heartbeat the guest is still booting under TCG, which on a loaded
//! two-core machine can take a while: the limit then is at least [`MIN_BOOT_TIMEOUT`].

use std::time::{Duration, Instant};

/// Interval of the guest's heartbeat, in seconds.
pub const HEARTBEAT_SECS: u32 = 1;

/// The shortest time a boot may take before it counts as stalled.
pub const MIN_BOOT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// Whether a heartbeat was ever seen (false: the boot stalled).
    pub booted: bool,
    /// Time since the last sign of life (or since the start).
    pub silent_for: Duration,
}

#[derive(Debug)]
pub struct Watchdog {
    stall_timeout: Duration,
    started: Instant,
    last_beat: Option<Instant>,
}

impl Watchdog {
    pub fn new(stall_timeout: Duration, now: Instant) -> Self {
        Self {
            stall_timeout,
            started: now,
            last_beat: None,
        }
    }

    /// Records a sign of life.
    pub fn beat(&mut self, now: Instant) {
        self.last_beat = Some(now);
    }

    pub fn booted(&self) -> bool {
        self.last_beat.is_some()
    }

    /// The limit in force now.
    pub fn timeout(&self) -> Duration {
        if self.booted() {
            self.stall_timeout
        } else {
            self.stall_timeout.max(MIN_BOOT_TIMEOUT)
        }
    }

    /// `Some` once the guest has been silent for longer than the limit.
    pub fn check(&self, now: Instant) -> Option<Stall> {
        let since = self.last_beat.unwrap_or(self.started);
        let silent_for = now.saturating_duration_since(since);
        (silent_for > self.timeout()).then(|| Stall {
            booted: self.booted(),
            silent_for,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn heartbeats_keep_it_quiet() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(S(5), t0);
        for i in 1..=30 {
            w.beat(t0 + S(i));
            assert_eq!(w.check(t0 + S(i) + Duration::from_millis(900)), None);
        }
    }

    #[test]
    fn silence_after_boot_trips_after_the_stall_timeout() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(S(5), t0);
        w.beat(t0 + S(10));
        assert_eq!(w.check(t0 + S(15)), None);
        assert_eq!(
            w.check(t0 + S(16)),
            Some(Stall {
                booted: true,
                silent_for: S(6)
            })
        );
    }

    #[test]
    fn boot_gets_at_least_the_minimum() {
        let t0 = Instant::now();
        let w = Watchdog::new(S(5), t0);
        assert_eq!(w.check(t0 + S(29)), None);
        assert_eq!(w.check(t0 + S(31)).map(|s| s.booted), Some(false));
        let long = Watchdog::new(S(90), t0);
        assert_eq!(long.check(t0 + S(60)), None);
        assert!(long.check(t0 + S(91)).is_some());
    }
}
