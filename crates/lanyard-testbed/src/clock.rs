//! The testbed's notion of "now": real wall-clock time plus a settable offset.
//!
//! Every `iat`, `exp`, `auth_time` and expiry check in the testbed reads this clock, so a test can
//! jump the whole fake world forward (sleep/wake, skew, token expiry) together with the client's own
//! clock. It never sleeps and never touches tokio timers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time plus an offset that tests can move. Cheap to clone; clones share the offset.
#[derive(Clone, Debug, Default)]
pub struct TestClock {
    offset_ms: Arc<AtomicI64>,
}

impl TestClock {
    /// A clock that reads real time (offset zero).
    pub fn new() -> Self {
        Self::default()
    }

    /// The current (shifted) time.
    pub fn now(&self) -> SystemTime {
        let offset = self.offset_ms.load(Ordering::SeqCst);
        let real = SystemTime::now();
        if offset >= 0 {
            real + Duration::from_millis(offset.unsigned_abs())
        } else {
            real - Duration::from_millis(offset.unsigned_abs())
        }
    }

    /// The current (shifted) time in whole seconds since the Unix epoch.
    pub fn unix(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the offset from real time in milliseconds (negative = in the past).
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::SeqCst);
    }

    /// Sets a forward offset from real time.
    pub fn set_offset(&self, offset: Duration) {
        self.set_offset_ms(i64::try_from(offset.as_millis()).unwrap_or(i64::MAX));
    }

    /// The current offset from real time in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_unix_time_and_clones_share_it() {
        let clock = TestClock::new();
        let twin = clock.clone();
        let before = twin.unix();
        clock.advance(Duration::from_secs(3600));
        assert!(twin.unix() >= before + 3600);
        clock.set_offset_ms(-10_000);
        assert!(twin.unix() < before);
    }
}
