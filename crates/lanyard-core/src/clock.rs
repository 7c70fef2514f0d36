//! Time as a port: the core never reads `SystemTime::now()` itself.
//!
//! [`Clock::now`] is wall-clock time (what token expiry is measured in). Production uses
//! [`SystemClock`]; tests use [`ManualClock`], which only moves when told, so that expiry, refresh
//! ahead of expiry, an 8-hour sleep or a backwards clock jump can be staged exactly. Timers that wait
//! are the engine's business; it re-reads this clock after every wake-up, and hears from
//! [`Clock::notices`] when the clock moved unlike its timers (a real one: the OS's notices; a
//! manual one: each move it is told to make).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wake::{self, Jumps, Notice, WakeNotices};

/// Source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;

    /// Notices that this clock moved unlike the monotonic timers (set, or resumed from sleep). The
    /// default is the operating system's; needs a tokio runtime.
    fn notices(&self) -> WakeNotices {
        wake::os_notices()
    }

    /// Seconds since the Unix epoch (0 for times before it).
    fn unix_now(&self) -> u64 {
        unix_seconds(self.now())
    }
}

/// Seconds since the Unix epoch of `t` (0 for times before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until a test moves it.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
    jumps: Jumps,
}

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
            jumps: Jumps::default(),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
        drop(now);
        self.jumps.signal(Notice::ClockChanged);
    }

    /// Moves the clock backwards (a user or NTP correcting the time).
    pub fn rewind(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now -= by;
        drop(now);
        self.jumps.signal(Notice::ClockChanged);
    }

    pub fn set(&self, to: SystemTime) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = to;
        self.jumps.signal(Notice::ClockChanged);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every move of this clock (`advance`, `rewind`, `set`), as a clock change.
    fn notices(&self) -> WakeNotices {
        self.jumps.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = ManualClock::new(start);
        assert_eq!(clock.unix_now(), 1_000);
        clock.advance(Duration::from_secs(8 * 3600));
        assert_eq!(clock.unix_now(), 1_000 + 8 * 3600);
        clock.rewind(Duration::from_secs(3600));
        assert_eq!(clock.unix_now(), 1_000 + 7 * 3600);
    }
}
